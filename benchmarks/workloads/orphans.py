"""Makes orphans for the PID 1 it runs under, then times how soon all are reaped.

Usage: orphans.py N TIMEOUT

In batches of 50: fork a parent that forks 50 children and exits without
waiting for them; the children exit at once too and, their parent gone, are
re-parented to PID 1, which must reap them. Then looks at /proc until no
zombie is left (or TIMEOUT seconds pass) and prints one JSON line:
``{"n", "started_ns", "created_ns", "reaped_ns", "zombies_left"}``
(``reaped_ns`` is null if zombies were still there). It prints
``orphans-ready`` and waits for a line on stdin before it starts, and for
another before it exits, so PID 1's CPU time can be read around it.
"""

from __future__ import annotations

import json
import os
import sys
import time

BATCH = 50


def zombies() -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        count += state == b"Z"
    return count


def main() -> int:
    n, timeout = int(sys.argv[1]), float(sys.argv[2])
    print("orphans-ready", flush=True)
    sys.stdin.buffer.readline()  # the harness reads PID 1's CPU time first
    started = time.monotonic_ns()
    for batch in range(0, n, BATCH):
        pid = os.fork()
        if pid == 0:  # a parent of BATCH children that exit at once; it never waits
            for _ in range(min(BATCH, n - batch)):
                if os.fork() == 0:
                    os._exit(0)
            os._exit(0)
        os.waitpid(pid, 0)
    created = time.monotonic_ns()
    deadline = time.monotonic() + timeout
    left = zombies()
    while left and time.monotonic() < deadline:
        time.sleep(0.001)
        left = zombies()
    reaped = time.monotonic_ns() if not left else None
    result = {
        "n": n,
        "started_ns": started,
        "created_ns": created,
        "reaped_ns": reaped,
        "zombies_left": left,
    }
    print("result", json.dumps(result, separators=(",", ":")), flush=True)
    sys.stdin.buffer.readline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
