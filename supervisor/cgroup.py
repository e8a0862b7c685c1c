"""Was that SIGKILL the OOM killer? Ask the memory cgroup's counters.

The kernel keeps a count of OOM kills per memory cgroup: ``oom_kill`` in
``memory.oom_control`` (cgroup v1) or ``memory.events`` (v2), counted for the
cgroup and its descendants. The supervisor reads the count of its own
container's cgroup when it starts the child and again when the child dies by
SIGKILL; a higher count means the OOM killer struck in the container, and the
child's death is reported with reason ``OOMKilled`` (the same word Kubernetes
uses). Where the counters cannot be read, nothing is claimed.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.process import Child

CGROUP_ROOT = Path("/sys/fs/cgroup")


def counter_file(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT
) -> Path | None:
    """The file holding this process's memory cgroup OOM-kill count, if any."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        relative = path.lstrip("/")
        if "memory" in controllers.split(","):
            base = root / "memory"
            candidates += [base / relative / "memory.oom_control", base / "memory.oom_control"]
        elif controllers == "" and path:
            candidates += [root / relative / "memory.events", root / "memory.events"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def oom_kills(path: Path | None) -> int | None:
    """The ``oom_kill`` count in ``path``, or None if it cannot be read."""
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


class OomWatch:
    """Remembers the count when a child starts; says whether it grew since."""

    def __init__(self) -> None:
        self.path = counter_file()
        self.before: int | None = None

    def child_started(self) -> None:
        self.before = oom_kills(self.path)

    def struck(self) -> bool:
        after = oom_kills(self.path)
        return self.before is not None and after is not None and after > self.before

    def reason(self, child: Child) -> str:
        """The child's exit reason, ``OOMKilled`` for a SIGKILL the OOM killer sent."""
        if child.signal == signal.SIGKILL and self.struck():
            return "OOMKilled"
        return child.reason
