"""PID 1 of a pod whose containers share one PID namespace (what /pause is).

Usage: pod.py SPEC_JSON_FILE

The file holds a list of argv lists (kept out of this command line so that
``--watch-process`` patterns never match PID 1). Starts each, reaps every
process that ends, and exits when all it started have exited; SIGTERM ends
them all.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def main() -> int:
    with open(sys.argv[1]) as spec:
        commands = json.load(spec)
    started = {os.posix_spawnp(argv[0], argv, os.environ) for argv in commands}

    def stop(_signum: int, _frame: object) -> None:
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue

    signal.signal(signal.SIGTERM, stop)
    while started:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        started.discard(pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
