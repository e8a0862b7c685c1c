"""A stand-in workload: says it is ready, then prints every signal it receives.

Usage: print_signals.py [--ignore SIG]... [--exit-on SIG]... [--grandchildren N]
                        [--append-file PATH] [--exit-after S] [--exit-code N]

Prints ``ready (pid: N)`` once its handlers are in place, then one line per
signal with the signal's number. By default SIGTERM and SIGINT end it with
the default action (death by that signal); ``--ignore`` keeps it alive,
``--exit-on SIG`` makes it exit 0 on that signal. ``--grandchildren N`` starts
N ``sleep`` processes in its own process group first (they die only with the
group); their pids are printed as ``grandchild (pid: N)``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ignore", action="append", default=[])
    parser.add_argument("--exit-on", action="append", default=[])
    parser.add_argument("--grandchildren", type=int, default=0)
    parser.add_argument("--exit-after", type=float, default=None)
    parser.add_argument("--exit-code", type=int, default=0)
    args = parser.parse_args()

    ignored = {signal.Signals["SIG" + name].value for name in args.ignore}
    exit_on = {signal.Signals["SIG" + name].value for name in args.exit_on}

    def handler(signum: int, _frame: object) -> None:
        print(signum, flush=True)
        if signum in exit_on:
            sys.exit(0)
        if signum in ignored:
            return
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            continue
        try:
            signal.signal(signum, handler)
        except (OSError, ValueError):
            continue

    for _ in range(args.grandchildren):
        # The shell ignores SIGTERM before it becomes sleep; only SIGKILL ends it.
        proc = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 600"])
        print(f"grandchild (pid: {proc.pid})", flush=True)

    print(f"ready (pid: {os.getpid()})", flush=True)
    deadline = None if args.exit_after is None else time.monotonic() + args.exit_after
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.05 if deadline else 3600)
    return int(args.exit_code)


if __name__ == "__main__":
    sys.exit(main())
