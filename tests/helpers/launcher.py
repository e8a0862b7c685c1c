"""Start a command the way an unusual parent would: some signals ignored, no core dumps.

Usage: launcher.py [--ignore SIG,...] [--no-core] -- ARGV...

``--ignore`` sets each named signal (``TERM``, ``SEGV``, ...) to SIG_IGN, a
disposition that survives ``exec``: the command starts with them ignored, as it
would under a parent shell that ran ``trap '' SIG`` or ``nohup``. ``--no-core``
sets RLIMIT_CORE to 0, so a command that dies of SIGSEGV leaves no core file.
Then it ``exec``s ARGV in its own place (same pid).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ignore", default="")
    parser.add_argument("--no-core", action="store_true")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        parser.error("no command")
    for name in filter(None, args.ignore.split(",")):
        signal.signal(signal.Signals["SIG" + name], signal.SIG_IGN)
    if args.no_core:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.execvp(argv[0], argv)  # noqa: S606 - the test's own command line


if __name__ == "__main__":
    sys.exit(main())
