"""A ``--marker`` path: its appearance is completion (docs/PROTOCOL.md, "--marker paths")."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.markers import read_marker
from supervisor.sources import Completion, from_record

if TYPE_CHECKING:
    from supervisor.loop import Loop


class MarkerSource:
    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self.path = path
        self._warned: set[object] = set()  # versions reported as invalid

    def start(self, loop: Loop) -> None:
        """Nothing runs in the background: the file watcher and the rescan wake us."""

    def check(self) -> Completion | None:
        snapshot = read_marker(self.path)
        if not snapshot.exists:
            return None
        return from_record(self.label, self.path, snapshot, self._warned)

    def watched_file(self) -> Path | None:
        return self.path

    def needs_rescan(self) -> bool:
        return True  # some volumes drop file events

    def close(self) -> None:
        """Nothing to stop."""
