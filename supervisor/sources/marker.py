"""A ``--marker`` path: its appearance is completion (docs/PROTOCOL.md, "Markers")."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import log
from supervisor.markers import parse_done, read_marker
from supervisor.sources import Completion
from supervisor.sources import written_at as _written_at

if TYPE_CHECKING:
    from supervisor.loop import Loop


class MarkerSource:
    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self.path = path
        self._warned: object = None

    def start(self, loop: Loop) -> None:
        """Nothing runs in the background: the file watcher and the rescan wake us."""

    def check(self) -> Completion | None:
        snapshot = read_marker(self.path)
        if not snapshot.exists:
            return None
        record = parse_done(snapshot)
        if record.problem is not None and snapshot.identity != self._warned:
            self._warned = snapshot.identity
            log.warning(
                "marker_invalid",
                path=self.label,
                problem=record.problem,
                treated_as="completion with unknown exit code",
            )
        return Completion(
            self.label,
            "marker",
            record.exit_code,
            record.failed,
            record.reason,
            record.signal,
            identity=("done", snapshot.identity),
            found=self.label,
            written_at=_written_at(snapshot.identity),
        )

    def watched_file(self) -> Path | None:
        return self.path

    def close(self) -> None:
        """Nothing to stop."""
