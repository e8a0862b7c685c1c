"""A main workload's stand-in: waits for a go on stdin, then exits at once.

Usage: main_exit.py [EXIT_CODE]

Prints ``main-ready PID``, blocks reading one line from stdin, then prints
``exit MONOTONIC_NS`` and leaves with ``os._exit`` (no interpreter teardown):
the time printed is the moment COMMAND ends, as close as a process can say it.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    code = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    os.write(1, f"main-ready {os.getpid()}\n".encode())
    sys.stdin.buffer.readline()
    os.write(1, f"exit {time.monotonic_ns()}\n".encode())
    os._exit(code)


if __name__ == "__main__":
    main()
