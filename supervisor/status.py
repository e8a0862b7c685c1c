"""The two commands for scripts and people: ``done`` writes a marker, ``status`` reads them all."""

from __future__ import annotations

import json
import sys
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


def describe(directory: Path, name: str) -> dict[str, Any]:
    """Everything the markers say about one container."""
    started = read_json(marker_path(directory, name, "started"))
    ready = read_json(marker_path(directory, name, "ready"))
    snapshot = read_marker(marker_path(directory, name, "done"))
    running = lock_is_held(marker_path(directory, name, "lock"))
    entry: dict[str, Any] = {
        "name": name,
        "state": "waiting",
        "attempt": started.get("attempt") if started else None,
        "started_at": started.get("started_at") if started else None,
        "ready_at": ready.get("ready_at") if ready else None,
        "exit_code": None,
        "reason": None,
    }
    if running:
        entry["state"] = "ready" if ready else "running"
    elif snapshot.exists:
        record = parse_done(snapshot)
        entry.update(
            state="failed" if record.failed else "done",
            exit_code=record.exit_code,
            reason=record.reason or record.problem,
        )
    elif started is not None:
        entry.update(state="died", reason="lock released without a .done record")
    return entry


def show_status(config: StatusConfig, out: TextIO = sys.stdout) -> int:
    """``sidecar-supervisor status``: one line per container, or JSON."""
    try:
        entries = [describe(config.dir, name) for name in container_names(config.dir)]
    except OSError as exc:
        raise SupervisorError(f"cannot read {config.dir}: {exc.strerror or exc}") from exc
    if config.json:
        json.dump({"dir": str(config.dir), "containers": entries}, out, indent=2)
        out.write("\n")
        return 0
    if not entries:
        out.write(f"no container has written a marker in {config.dir} yet\n")
        return 0
    columns = ("name", "state", "attempt", "exit_code", "reason", "started_at", "ready_at")
    rows = [[("-" if e[c] is None else str(e[c])) for c in columns] for e in entries]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    for row in [[c.upper() for c in columns], *rows]:
        out.write(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )
    return 0
