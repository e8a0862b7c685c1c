"""A wrapped container: its lock says it runs, its ``.done`` says how it ended.

While the container's wrapper holds ``NAME.lock`` a helper thread blocks in
``flock`` on it; the kernel wakes it the instant the wrapper exits or dies,
however (SIGKILL and OOM included). The same thread waits on every attempt of
the container. Then ``NAME.done`` is read; a wrapper that
was seen running and left no record died without one: a failed completion
with an unknown exit code (docs/PROTOCOL.md, "Detecting completion").

A lock that cannot be used (a symlink, a FIFO, another user's file we cannot
open) is reported once; completion is then seen through ``NAME.done`` alone.
"""

from __future__ import annotations

import os
import queue
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor import log
from supervisor.events import Event, SourceChanged, ThreadFailed
from supervisor.markers import (
    lock_state,
    marker_path,
    read_json,
    read_marker,
    wait_lock_released,
)
from supervisor.process import one_malloc_arena
from supervisor.signals import start_thread
from supervisor.sources import Completion, from_record

if TYPE_CHECKING:
    from supervisor.loop import Loop


# A container that has not started: a warning after this long, then at twice
# the interval each time.
NOT_STARTED_WARNING = 30.0
LISTED_FILES = 20  # at most, in that warning


class ContainerSource:
    def __init__(self, directory: Path, name: str, start_timeout: float = 0.0) -> None:
        self.label = name
        self.directory = directory
        self.start_timeout = start_timeout  # 0: wait for its start forever
        self.since = time.monotonic()
        self.warn_at = self.since + NOT_STARTED_WARNING
        self.warn_every = NOT_STARTED_WARNING
        self.done = marker_path(directory, name, "done")
        self.started = marker_path(directory, name, "started")
        self.lock = marker_path(directory, name, "lock")
        self.loop: Loop | None = None
        self.waiting = False  # a thread is blocked on the lock
        self._waits: queue.SimpleQueue[None] | None = None  # asks that thread to wait again
        self.seen_running = False  # we saw the lock held by its wrapper
        self.wait_failed: str | None = None  # the lock thread's error: rescans only
        self.reported: set[tuple[str, object]] = set()  # problems logged once
        self.invalid: set[object] = set()  # versions of .done reported as invalid

    def start(self, loop: Loop) -> None:
        self.loop = loop

    def check(self) -> Completion | None:
        if self.waiting:
            return None  # the kernel wakes the thread when the lock is released
        state = lock_state(self.lock)
        if state == "held":
            self.seen_running = True
            self._wait_for_release()
            return None
        if state == "unreadable":
            self._report_once(
                "lock_unusable",
                None,
                path=str(self.lock),
                problem=_describe(self.lock),
                consequence=f"completion is seen through {self.done.name} only; "
                "a hard death of that container cannot be seen",
            )
        snapshot = read_marker(self.done)
        if snapshot.exists:
            return from_record(self.label, self.done, snapshot, self.invalid)
        if state == "unreadable":
            return None
        if state in ("absent", "free") and not self.seen_running and not self.started.exists():
            return self._not_started()
        if self.seen_running or (state == "free" and self._started_locked()):
            # Its wrapper ran and is gone, and left no record.
            found = "lock released" if state == "free" else f"{self.lock.name} is gone"
            self.seen_running = False
            return Completion(
                self.label,
                "lock",
                None,
                failed=True,
                reason="DiedWithoutRecord",
                identity=("died", _identity(self.started)),
                found=f"{found}, no {self.done.name}",
            )
        return None

    def _not_started(self) -> Completion | None:
        """Nothing of the container yet: warn now and then; a failure after the timeout."""
        now = time.monotonic()
        waited = round(now - self.since, 1)
        if self.start_timeout and now - self.since >= self.start_timeout:
            return Completion(
                self.label,
                "start",
                None,
                failed=True,
                reason="NeverStarted",
                identity=("never started", self.since),
                found=f"no {self.started.name} after {waited} s (--start-timeout)",
            )
        if now >= self.warn_at:
            log.warning(
                "not_started",
                target=self.label,
                waited_s=waited,
                likely=[
                    f"a typo: no container writes {self.label}.* (check --wait-for and --name)",
                    f"the shared volume is not mounted at {self.directory} in that container",
                    "its image is still being pulled, or it cannot start",
                ],
                dir_holds=_listing(self.directory),
                start_timeout=self.start_timeout or None,
            )
            self.warn_every = max(2 * self.warn_every, 1.0)
            self.warn_at = now + self.warn_every
        return None

    def _started_locked(self) -> bool:
        """A ``.started`` is there and its wrapper says it holds the lock."""
        started = read_json(self.started)
        return started is not None and started.get("locked", True) is not False

    def _wait_for_release(self) -> None:
        loop = self.loop
        if loop is None or self.wait_failed is not None:
            return  # no thread: the rescan looks at the lock
        self.waiting = True
        if self._waits is not None:
            self._waits.put(None)
            return
        one_malloc_arena()  # helper threads come and go with each attempt from now on
        waits: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._waits = waits

        def wait() -> None:
            # One thread for every attempt of the container: each restart of a
            # main waited on by a new thread left the sidecar a little bigger.
            while True:
                waits.get()
                wait_lock_released(self.lock)
                self.waiting = False
                loop.post(SourceChanged(self.label))

        def failed(event: Event) -> None:
            assert isinstance(event, ThreadFailed)
            self.wait_failed = event.error
            self.waiting = False
            loop.post(SourceChanged(self.label))

        waits.put(None)
        start_thread(wait, name=f"lock-{self.label}", report=failed)

    def watched_file(self) -> Path | None:
        if self.wait_failed is not None:
            self._report_once(
                "lock_wait_failed",
                None,
                path=str(self.lock),
                error=self.wait_failed,
                fallback="rescan",
            )
        return None if self.waiting else self.done

    def needs_rescan(self) -> bool:
        return not self.waiting  # the kernel wakes the lock thread

    def close(self) -> None:
        """Nothing to stop: the lock thread is a daemon blocked in the kernel or
        waiting to be asked."""

    def _report_once(self, event: str, about: object, **fields: Any) -> None:
        """Log ``event`` once for each thing it is ``about`` (None: once at all)."""
        key = (event, about)
        if key in self.reported:
            return
        self.reported.add(key)
        log.warning(event, target=self.label, **fields)


def _listing(directory: Path) -> list[str] | str:
    """What the shared dir holds, for a warning (a few names, hidden files left out)."""
    try:
        names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except OSError as exc:
        return f"cannot be listed: {exc.strerror}"
    if len(names) > LISTED_FILES:
        return [*names[:LISTED_FILES], f"... {len(names) - LISTED_FILES} more"]
    return names


def _describe(path: Path) -> str:
    """Why a lock file cannot be used, in a few words."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    mode = info.st_mode & 0o777
    return f"cannot be opened by uid {os.getuid()} (owner uid {info.st_uid}, mode {mode:o})"


def _identity(path: Path) -> Any:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns)
