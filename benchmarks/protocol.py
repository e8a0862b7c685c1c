"""The shared-volume protocol (docs/PROTOCOL.md), written by the harness itself.

A ``FakeMain`` does to the shared folder what a main's wrapper does -- takes
``NAME.lock`` with an exclusive flock, removes a stale ``NAME.done`` and
``NAME.ready``, writes ``NAME.started``, later writes ``NAME.done`` atomically
and drops the lock -- without an interpreter per main. It lets one process
stand for a hundred mains, or for a main restarted a thousand times. A
``FakeSidecar`` is the same wrapper in the sidecar role, which also writes
``NAME.ready`` when its child is ready. Both follow docs/PROTOCOL.md only
("Records", "The lock", "Attempts", "Writing"), never the supervisor's code.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOCK_PATIENCE = 5.0  # peers probe the lock with a shared lock for microseconds


def now_iso() -> str:
    """UTC in ISO 8601 with milliseconds and a Z, as records carry times."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def write_json(path: Path, record: dict[str, Any]) -> int:
    """Write ``record`` atomically ("Writing"); the monotonic ns taken right before the rename.

    The record goes to ``.NAME.KIND.PID.NANOSECONDS.tmp`` in the same folder,
    created exclusively, written whole, mode 0644, closed, then renamed over
    ``NAME.KIND``: the rename is the moment a reader can see it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.time_ns()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o644)
    try:
        os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    stamp = time.monotonic_ns()
    os.rename(tmp, path)
    return stamp


class FakeMain:
    def __init__(self, shared: Path, name: str) -> None:
        self.name = name
        self.lock = shared / f"{name}.lock"
        self.started = shared / f"{name}.started"
        self.ready = shared / f"{name}.ready"
        self.done = shared / f"{name}.done"
        self.attempt = 0
        self._fd: int | None = None

    role = "main"

    def start(self) -> None:
        """Take the lock, remove a stale ``.done`` and ``.ready``, write ``.started``."""
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + LOCK_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise
                time.sleep(0.0005)
        self._fd = fd
        self.attempt += 1
        for stale in (self.done, self.ready):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        record = {"name": self.name, "pid": os.getpid(), "attempt": self.attempt}
        write_json(self.started, {**record, "started_at": now_iso(), "role": self.role})

    def finish(self, exit_code: int = 0) -> None:
        """Write ``.done`` atomically, then drop the lock (peers wake on the release)."""
        write_json(
            self.done,
            {
                "name": self.name,
                "exit_code": exit_code,
                "signal": None,
                "reason": "Completed" if exit_code == 0 else "Error",
                "attempt": self.attempt,
                "started_at": None,
                "finished_at": now_iso(),
            },
        )
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FakeSidecar(FakeMain):
    """A sidecar's wrapper: lock and ``.started`` as a main's, then ``.ready``."""

    role = "sidecar"

    def mark_ready(self, pid: int | None = None) -> int:
        """Write ``NAME.ready``; the monotonic ns right before it became visible."""
        record = {"name": self.name, "pid": pid or os.getpid(), "ready_at": now_iso()}
        return write_json(self.ready, record)
