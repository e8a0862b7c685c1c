"""The waiters people write today, as baselines: start COMMAND, wait for files, SIGTERM it.

Usage: waiter.py poll INTERVAL FILE... -- COMMAND...
       waiter.py watchfiles FILE... -- COMMAND...

``poll``: ``os.path.exists`` on every file every INTERVAL seconds (the stat
polling of Tekton's entrypoint and Argo's emissary, 1 s there).
``watchfiles``: ``watchfiles.watch`` with its default settings on the files'
folders, looking again after each batch of changes.
Both wait for every file, then send SIGTERM to COMMAND and wait for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def main() -> int:
    args = sys.argv[1:]
    at = args.index("--")
    head, command = args[:at], args[at + 1 :]
    mode, rest = head[0], head[1:]
    if mode == "poll":
        interval, files = float(rest[0]), rest[1:]
    else:
        interval, files = 0.0, rest
    child = subprocess.Popen(command)

    def ready() -> bool:
        return all(os.path.exists(f) for f in files)

    if mode == "poll":
        while not ready():
            time.sleep(interval)
    elif not ready():
        import watchfiles  # noqa: PLC0415 - only this mode needs it

        folders = sorted({os.path.dirname(os.path.abspath(f)) for f in files})
        for _changes in watchfiles.watch(*folders):
            if ready():
                break
    child.send_signal(signal.SIGTERM)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
