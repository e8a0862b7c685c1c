"""A sidecar's stand-in child: says it is ready, then when each SIGTERM arrived.

Usage: stamp_child.py [--loop]

SIGTERM is blocked and taken with ``sigwaitinfo``, so the time printed is the
moment the kernel hands the signal over, with no Python handler in between.
Prints ``ready PID`` once, then ``signal SIGNUM MONOTONIC_NS`` for each signal;
exits 0 after the first one unless ``--loop``.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> int:
    loop = "--loop" in sys.argv[1:]
    wanted = {signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    os.write(1, f"ready {os.getpid()}\n".encode())
    while True:
        info = signal.sigwaitinfo(wanted)
        stamp = time.monotonic_ns()
        os.write(1, f"signal {info.si_signo} {stamp}\n".encode())
        if not loop:
            return 0


if __name__ == "__main__":
    sys.exit(main())
