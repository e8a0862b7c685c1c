"""Completion sources: the ways a sidecar learns that what it serves has finished.

A source follows one thing (a wrapped container, a marker path, a process) and
speaks a small protocol:

- ``start(loop)``: begin any waiting in the background (a thread blocked in the
  kernel); such a thread only ever posts ``SourceChanged(label)``; called again
  after a completion was ignored (``--stop-on success``), to wait for the next;
- ``check()``: look now; a ``Completion`` or None while pending;
- ``watched_file()``: the file whose appearance could end it, while no kernel
  wait covers it (the file watcher watches its folder), else None;
- ``close()``: stop the background work.

``build`` is the one registry: adding a source is a module and a line there.
A source's background thread that fails does not die silently: the source
notes the error, wakes the loop, and ``check`` says what it means for it.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from supervisor.loop import Loop
    from supervisor.markers import Snapshot


class Completion(NamedTuple):
    """One awaited container (or marker path, or process) has completed."""

    target: str
    source: str  # "marker": a record was read; "lock": died with no record; "process"
    exit_code: int | None
    failed: bool
    reason: str | None = None
    signal: int | None = None
    identity: Any = None  # what was seen, so an ignored failure is not counted twice
    found: str | None = None  # what was seen: the record's path, or in words
    written_at: float | None = None  # when its record was written (epoch seconds)

    @property
    def code_for_exit(self) -> int:
        """The status Kubernetes would show for it: the exit code, 128+N for a
        death by signal N, 1 for a failure with neither, 0 for an unknown success."""
        if self.exit_code is not None:
            return self.exit_code
        if self.signal is not None:
            return 128 + self.signal
        return 1 if self.failed else 0


def from_record(label: str, path: Path, snapshot: "Snapshot", warned: set[object]) -> Completion:
    """The completion a ``.done`` record (or marker) says, whatever its form; a record
    that is not valid is reported once per version of the file (``warned``)."""
    from supervisor import log  # noqa: PLC0415 - sources/__init__ stays light
    from supervisor.markers import parse_done  # noqa: PLC0415

    record = parse_done(snapshot)
    if record.problem is not None and snapshot.identity not in warned:
        warned.add(snapshot.identity)
        log.warning(
            "marker_invalid",
            target=label,
            path=str(path),
            problem=record.problem,
            treated_as="completion with unknown exit code",
        )
    identity = snapshot.identity
    return Completion(
        label,
        "marker",
        record.exit_code,
        record.failed,
        record.reason,
        record.signal,
        identity=("done", identity),
        found=str(path),
        written_at=None if identity is None else identity[2] / 1e9,
    )


class Source(Protocol):
    label: str  # container name, marker path or process pattern, for the logs

    def start(self, loop: "Loop") -> None: ...

    def check(self) -> Completion | None: ...

    def watched_file(self) -> Path | None: ...

    def needs_rescan(self) -> bool:
        """False while a thread of its own will tell (a lock wait, a process
        watch): a rescan could find nothing, so it is not scheduled for it."""
        ...

    def close(self) -> None: ...


def build(
    directory: Path,
    names: tuple[str, ...],
    *,
    markers: tuple[Path, ...] = (),
    process: str | None = None,
    process_timeout: float = 60.0,
    start_timeout: float = 0.0,
) -> list[Source]:
    """The sources of a sidecar's configuration, in the order they are checked."""
    from supervisor.sources.container import ContainerSource  # noqa: PLC0415
    from supervisor.sources.marker import MarkerSource  # noqa: PLC0415

    sources: list[Source] = [ContainerSource(directory, name, start_timeout) for name in names]
    sources += [MarkerSource(path) for path in markers]
    if process is not None:
        from supervisor.sources.process import ProcessSource  # noqa: PLC0415 - loads psutil

        sources.append(ProcessSource(process, process_timeout, directory))
    return sources
