"""The shared-volume protocol (docs/PROTOCOL.md), written by the harness itself.

A ``FakeMain`` does to the shared folder what a main's wrapper does -- takes
``NAME.lock`` with an exclusive flock, removes a stale ``NAME.done``, writes
``NAME.started``, later writes ``NAME.done`` atomically and drops the lock --
without an interpreter per main. It lets one process stand for a hundred mains,
or for a main restarted a thousand times. It follows docs/PROTOCOL.md only
("The lock", "Attempts", "Writing"), never the supervisor's code.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

LOCK_PATIENCE = 5.0  # peers probe the lock with a shared lock for microseconds


def write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.rename(tmp, path)


class FakeMain:
    def __init__(self, shared: Path, name: str) -> None:
        self.name = name
        self.lock = shared / f"{name}.lock"
        self.started = shared / f"{name}.started"
        self.done = shared / f"{name}.done"
        self.attempt = 0
        self._fd: int | None = None

    def start(self) -> None:
        """Take the lock, remove a stale ``.done``, write ``.started``."""
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.done)
        record = {"name": self.name, "pid": os.getpid(), "attempt": self.attempt}
        write_json(self.started, {**record, "started_at": None})

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
                "finished_at": None,
            },
        )
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
