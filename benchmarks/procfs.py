"""What /proc says about a process: locks waited on, memory, fds, threads, CPU time."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path


def lock_waiters(path: Path) -> int:
    """How many flock() calls are blocked on ``path`` (the sidecars' lock threads)."""
    try:
        info = path.stat()
    except OSError:
        return 0
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    count = 0
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if len(fields) > 6 and fields[1] == "->" and fields[6] == device:
                count += 1
    return count


def locks_waited_on(paths: Sequence[Path]) -> int:
    """How many of ``paths`` have at least one blocked flock() waiter."""
    wanted = {}
    for path in paths:
        with contextlib.suppress(OSError):
            info = path.stat()
            wanted[f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"] = path
    seen = set()
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if len(fields) > 6 and fields[1] == "->" and fields[6] in wanted:
                seen.add(fields[6])
    return len(seen)


def status_field(pid: int, name: str) -> int:
    """An integer field of /proc/PID/status (VmRSS in kB, Threads)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key == name:
                return int(value.split()[0])
    raise KeyError(name)


def rss_mb(pid: int) -> float:
    return status_field(pid, "VmRSS") / 1024


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_ns(pid: int, *, children: bool = False) -> int:
    """CPU time of every live thread of ``pid`` (ns); with its reaped children's (ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as stat:
            total += int(stat.read().split()[0])
    if not children:
        return total
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[13]) + int(fields[14])  # cutime + cstime
    return total + ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def wakeups(pid: int) -> int:
    """Context switches of every live thread of ``pid`` (voluntary + involuntary).

    Each is a time the thread stopped running and was later woken: a sleep
    that ended, a blocking call that returned, or a preemption.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as status:
            for line in status:
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
    return total
