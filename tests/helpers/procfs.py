"""What /proc says about a process, for the reliability tests.

Zombies are looked for from outside: a process in state ``Z`` whose parent is
the supervisor is one it has not reaped. Open descriptors, resident memory and
threads are read the way ``ps`` and ``ls /proc/PID/fd`` would.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def _state_and_parent(pid_dir: Path) -> tuple[str, int] | None:
    try:
        stat = (pid_dir / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    return state, int(ppid)


def zombies_of(parent: int) -> list[int]:
    """Pids of the unreaped (state ``Z``) children of ``parent``."""
    zombies = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        found = _state_and_parent(entry)
        if found is not None and found == ("Z", parent):
            zombies.append(int(entry.name))
    return zombies


def is_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    found = _state_and_parent(PROC / str(pid))
    return found is None or found[0] in ("Z", "X")


def open_fds(pid: int) -> int:
    return len(list((PROC / str(pid) / "fd").iterdir()))


def threads(pid: int) -> int:
    return len(list((PROC / str(pid) / "task").iterdir()))


def rss_kib(pid: int) -> int:
    """Resident memory (``VmRSS``) in KiB."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS line for {pid}")
