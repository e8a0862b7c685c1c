"""The two commands for scripts and people: ``done`` writes a marker, ``status`` reads them all."""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from supervisor.config import DoneConfig, StatusConfig
from supervisor.errors import SupervisorError
from supervisor.markers import (
    KINDS,
    DoneRecord,
    iso,
    lock_is_held,
    marker_path,
    now,
    parse_done,
    read_json,
    read_marker,
    valid_name,
    write_json,
)


def write_done(config: DoneConfig) -> int:
    """``sidecar-supervisor done``: the completion record of a script that is not wrapped."""
    path = marker_path(config.dir, config.name, "done")
    record = DoneRecord(
        config.exit_code, None, config.reason, name=config.name, finished_at=iso(now())
    )
    try:
        config.dir.mkdir(parents=True, exist_ok=True)
        write_json(path, record.to_json())
    except OSError as exc:
        raise SupervisorError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return 0


def container_names(directory: Path) -> list[str]:
    names = set()
    for entry in directory.iterdir():
        stem, _, kind = entry.name.rpartition(".")
        if kind in KINDS and valid_name(stem):
            names.add(stem)
    return sorted(names)


def _strings(value: Any) -> list[str] | None:
    """A list of strings from a record, or None when the field is absent or not one."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _seconds(start: Any, end: Any) -> float | None:
    """From one record time to another (or to now), in seconds; None if either is unknown."""
    try:
        began = datetime.fromisoformat(start).timestamp()
        ended = time.time() if end is None else datetime.fromisoformat(end).timestamp()
    except (TypeError, ValueError):
        return None
    return round(max(0.0, ended - began), 3)


def describe(directory: Path, name: str) -> dict[str, Any]:
    """Everything the markers say about one container.

    ``role``, ``waits_for`` and ``gates`` come from optional fields of
    ``NAME.started`` (docs/PROTOCOL.md): absent from older wrappers, null here.
    """
    started = read_json(marker_path(directory, name, "started")) or {}
    ready = read_json(marker_path(directory, name, "ready"))
    snapshot = read_marker(marker_path(directory, name, "done"))
    running = lock_is_held(marker_path(directory, name, "lock"))
    waits_for = _strings(started.get("waits_for"))
    gates = _strings(started.get("gates"))
    role = started.get("role")
    if role not in ("sidecar", "main"):
        role = "sidecar" if waits_for is not None else "main" if gates is not None else None
    entry: dict[str, Any] = {
        "name": name,
        "role": role,
        "state": "waiting",
        "attempt": started.get("attempt"),
        "started_at": started.get("started_at"),
        "ready_at": ready.get("ready_at") if ready else None,
        "finished_at": None,
        "duration_s": None,
        "exit_code": None,
        "signal": None,
        "reason": None,
        "waits_for": waits_for,
        "gates": None,
    }
    if running:
        if gates and not ready:
            entry.update(state="gated", gates=gates)
        else:
            entry["state"] = "ready" if ready else "running"
        entry["duration_s"] = _seconds(entry["started_at"], None)
    elif snapshot.exists:
        record = parse_done(snapshot)
        entry.update(
            state="failed" if record.failed else "done",
            exit_code=record.exit_code,
            signal=record.signal,
            reason=record.reason or record.problem,
            finished_at=record.finished_at,
            duration_s=_seconds(record.started_at or entry["started_at"], record.finished_at),
        )
    elif started:
        entry.update(state="died", reason="lock released without a .done record")
    return entry


def _duration(seconds: float | None) -> str:
    """``0.4s``, ``12s``, ``3m04s``, ``1h02m``: as long as it needs to be."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole // 60 % 60:02d}m"


def _signal_name(number: int | None) -> str:
    if number is None:
        return "-"
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _waits_for(entry: dict[str, Any], known: set[str]) -> str:
    """What a sidecar waits for (a name with no records at all is flagged: a typo?)."""
    if entry["state"] == "gated":
        return ", ".join(entry["gates"])
    names = entry["waits_for"]
    if not names:
        return "-"
    return ", ".join(name if name in known else f"{name} (no records)" for name in names)


def _note(entry: dict[str, Any]) -> str:
    if entry["state"] == "gated":
        return "waiting at its gates; COMMAND not started"
    return entry["reason"] or "-"


def table(entries: list[dict[str, Any]]) -> list[str]:
    """The text form: one line per container under a header."""
    known = {entry["name"] for entry in entries}
    header = ["NAME", "STATE", "ATTEMPT", "EXIT_CODE", "SIGNAL", "DURATION", "WAITS_FOR", "NOTE"]
    rows = [
        [
            entry["name"],
            entry["state"],
            "-" if entry["attempt"] is None else str(entry["attempt"]),
            "-" if entry["exit_code"] is None else str(entry["exit_code"]),
            _signal_name(entry["signal"]),
            _duration(entry["duration_s"]),
            _waits_for(entry, known),
            _note(entry),
        ]
        for entry in entries
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def unmet(
    entries: list[dict[str, Any]], required: tuple[tuple[str, tuple[str, ...]], ...]
) -> list[str]:
    """One line for each ``--require NAME=STATE`` that the containers do not meet."""
    states = {entry["name"]: entry["state"] for entry in entries}
    lines = []
    for name, wanted in required:
        state = states.get(name)
        if state not in wanted:
            now = "has no records" if state is None else f"is {state}"
            lines.append(f"status: {name} {now}, not {' or '.join(wanted)}")
    return lines


def show_status(config: StatusConfig, out: TextIO = sys.stdout) -> int:
    """``sidecar-supervisor status``: one line per container, or JSON; with
    ``--require``, exit 1 unless each named container is in a named state."""
    try:
        entries = [describe(config.dir, name) for name in container_names(config.dir)]
    except OSError as exc:
        raise SupervisorError(f"cannot read {config.dir}: {exc.strerror or exc}") from exc
    if config.json:
        json.dump({"dir": str(config.dir), "containers": entries}, out, indent=2)
        out.write("\n")
    elif not entries:
        out.write(f"no container has written a marker in {config.dir} yet\n")
    else:
        out.write("\n".join(table(entries)) + "\n")
    out.flush()
    problems = unmet(entries, config.require)
    if problems and sys.stderr is not None:
        sys.stderr.write("".join(line + "\n" for line in problems))
    return 1 if problems else 0
