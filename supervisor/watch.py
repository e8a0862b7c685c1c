"""Detecting that the containers a sidecar waits for have completed.

Three sources, cheapest first:

1. the liveness lock: while a wrapped container runs, a helper thread blocks
   in ``flock`` on its ``NAME.lock``; the kernel wakes it the instant the
   wrapper exits or dies, and we then read ``NAME.done`` (no ``.done`` after a
   ``.started`` means a hard death: failure, unknown exit code);
2. file events (watchfiles, inotify) on the shared dir and on the folders of
   ``--marker`` paths, for containers that have not started yet and for plain
   ``touch``-ed markers; the watcher runs only while something needs it;
3. a slow rescan every ``--poll-interval`` seconds, because some volumes drop
   file events; it also finds markers that were there before we started.

Every source only wakes the loop; ``CompletionWatcher.check`` decides.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from supervisor import log
from supervisor.markers import (
    DoneRecord,
    lock_state,
    marker_path,
    parse_done,
    read_marker,
    wait_lock_released,
)
from supervisor.process import Loop
from supervisor.signals import start_thread

# watchfiles wakes every STEP ms to look for events: 50 ms answers a touched
# marker in about 60 ms for about 2 ms of CPU a second, and it only runs until
# every awaited container holds its lock.
WATCH_STEP_MS = 50
WATCH_DEBOUNCE_MS = 200


class Completion(NamedTuple):
    """One awaited container (or marker path) has completed."""

    target: str
    source: str  # "marker": a record was read; "lock": died with no record
    exit_code: int | None
    failed: bool
    reason: str | None = None

    @property
    def code_for_exit(self) -> int:
        """An exit status that reflects this completion (unknown failure: 1)."""
        if self.exit_code is not None:
            return self.exit_code
        return 1 if self.failed else 0


class _Target:
    """One awaited container, ``--marker`` path or ``--watch-process`` pattern."""

    def __init__(
        self,
        label: str,  # container name, marker path or process pattern, for the logs
        done: Path | None = None,  # None for --watch-process
        started: Path | None = None,  # None for --marker paths
        lock: Path | None = None,
        process: str | None = None,  # the --watch-process pattern
    ) -> None:
        self.label = label
        self.done = done
        self.started = started
        self.lock = lock
        self.process = process
        self.completion: Completion | None = None
        self.lock_thread = False
        self.process_watch: threading.Event | None = None
        # The failure last ignored under --stop-on success (one record or one
        # death), so that it is not reported again; a new one replaces it.
        self.ignored: Any = None


class CompletionWatcher:
    """Tracks every awaited container and marker; ``satisfied`` says when to stop."""

    def __init__(
        self,
        loop: Loop,
        directory: Path,
        names: tuple[str, ...],
        *,
        markers: tuple[Path, ...] = (),
        mode: str = "all",
        stop_on_success: bool = False,
        process: str | None = None,
        process_timeout: float = 60.0,
    ) -> None:
        self.loop = loop
        self.directory = directory
        self.mode = mode
        self.stop_on_success = stop_on_success
        self.targets = [
            _Target(
                label=name,
                done=marker_path(directory, name, "done"),
                started=marker_path(directory, name, "started"),
                lock=marker_path(directory, name, "lock"),
            )
            for name in names
        ] + [_Target(label=str(m), done=m) for m in markers]
        if process is not None:
            self.targets.append(_Target(label=f"process /{process}/", process=process))
        self.process_timeout = process_timeout
        self._fs_stop: threading.Event | None = None
        self._fs_paths: tuple[Path, ...] = ()

    # --- decisions ------------------------------------------------------------

    @property
    def completions(self) -> list[Completion]:
        return [t.completion for t in self.targets if t.completion is not None]

    @property
    def satisfied(self) -> bool:
        done = [t.completion is not None for t in self.targets]
        return any(done) if self.mode == "any" else all(done)

    def check(self, woken_by: str = "rescan") -> None:
        """Look at every pending target, then run only the watchers still needed."""
        for target in self.targets:
            if target.completion is None:
                self._check(target, woken_by)
        self._arrange_file_watcher()

    def _check(self, target: _Target, woken_by: str) -> None:
        if target.process is not None:
            self._watch_process(target)
            return
        if target.lock is not None and self._running(target):
            return
        assert target.done is not None
        snapshot = read_marker(target.done)
        if snapshot.exists:
            record = parse_done(snapshot)
            if record.problem is not None and ("done", snapshot.identity) != target.ignored:
                log.warning(
                    "marker_invalid",
                    path=str(target.done),
                    problem=record.problem,
                    treated_as="completion with unknown exit code",
                )
            self._decide(
                target, self._from_record(target, record), ("done", snapshot.identity), woken_by
            )
        elif (
            target.started is not None
            and target.lock is not None
            and target.started.exists()
            and target.lock.exists()  # a lock that was never taken cannot be released
        ):
            if self._running(target):  # a new attempt took the lock meanwhile
                return
            completion = Completion(
                target.label, "lock", None, failed=True, reason="DiedWithoutRecord"
            )
            self._decide(target, completion, ("died", _identity(target.started)), woken_by)

    def _decide(
        self, target: _Target, completion: Completion, identity: Any, woken_by: str
    ) -> None:
        """Accept a completion, or ignore a failure once under ``--stop-on success``."""
        if identity == target.ignored:
            return
        if completion.failed and self.stop_on_success:
            target.ignored = identity
            log.info(
                "completion_ignored",
                target=target.label,
                exit_code=completion.exit_code,
                reason=completion.reason,
                why="--stop-on success and it failed",
            )
            return
        target.completion = completion
        log.info(
            "completion_detected",
            target=target.label,
            source=completion.source,
            exit_code=completion.exit_code,
            failed=completion.failed,
            reason=completion.reason,
            woken_by=woken_by,
        )

    def _watch_process(self, target: _Target) -> None:
        if target.process_watch is None:
            from supervisor.procwatch import start_process_watch  # noqa: PLC0415

            assert target.process is not None
            target.process_watch = start_process_watch(
                self.loop, target.process, label=target.label, appear_timeout=self.process_timeout
            )

    def process_event(self, label: str, what: str, pid: int | None) -> None:
        for target in self.targets:
            if target.label != label or target.completion is not None:
                continue
            target.process_watch = None
            if what == "exited":
                completion = Completion(label, "process", None, failed=False, reason="Exited")
            else:
                completion = Completion(
                    label, "process", None, failed=True, reason="ProcessNeverAppeared"
                )
            self._decide(target, completion, (what, pid, time.monotonic()), woken_by="process")
        self.check(woken_by="process")  # an ignored failure starts a new watch

    @staticmethod
    def _from_record(target: _Target, record: DoneRecord) -> Completion:
        return Completion(target.label, "marker", record.exit_code, record.failed, record.reason)

    def _running(self, target: _Target) -> bool:
        """True while the target's wrapper holds its lock; then a thread waits on it."""
        assert target.lock is not None
        state = lock_state(target.lock)
        if state == "unreadable":
            return True  # cannot tell; its .done will still be seen through files
        if state != "held":
            return False
        if not target.lock_thread:
            target.lock_thread = True
            lock, label = target.lock, target.label

            def wait() -> None:
                wait_lock_released(lock)
                self.loop.post("lock", label)

            start_thread(wait, name=f"lock-{label}")
        return True

    def lock_released(self, label: str) -> None:
        for target in self.targets:
            if target.label == label:
                target.lock_thread = False
        self.check(woken_by="lock")

    # --- the file watcher -----------------------------------------------------

    def _arrange_file_watcher(self) -> None:
        pending = [
            t.done
            for t in self.targets
            if t.completion is None and not t.lock_thread and t.done is not None
        ]
        if self.satisfied or not pending:
            self._stop_file_watcher()
            return
        folders = {done.parent for done in pending}
        paths = tuple(sorted(p for p in folders if p.is_dir()))
        if paths == self._fs_paths and self._fs_stop is not None:
            return
        self._stop_file_watcher()
        if paths:
            self._start_file_watcher(paths)

    def _start_file_watcher(self, paths: tuple[Path, ...]) -> None:
        stop = threading.Event()
        loop = self.loop

        def watch() -> None:
            try:
                _watch_files(paths, stop, lambda: loop.post("files"))
            except Exception as exc:  # noqa: BLE001 - any failure falls back on the rescan
                loop.post("watch_failed", f"{type(exc).__name__}: {exc}")

        self._fs_stop = stop
        self._fs_paths = paths
        start_thread(watch, name="file-watcher")
        log.debug("file_watcher_started", paths=[str(p) for p in paths])

    def _stop_file_watcher(self) -> None:
        if self._fs_stop is not None:
            self._fs_stop.set()
            log.debug("file_watcher_stopped")
        self._fs_stop = None
        self._fs_paths = ()

    def watch_failed(self, error: str) -> None:
        log.warning("file_watcher_failed", error=error, fallback="rescan")
        self._fs_stop = None
        self._fs_paths = ()

    def close(self) -> None:
        self._stop_file_watcher()
        for target in self.targets:
            if target.process_watch is not None:
                target.process_watch.set()

    def handle(self, event: tuple[Any, ...]) -> bool:
        """Take a watcher event off the loop; False if the event is not ours."""
        kind = event[0]
        if kind == "lock":
            self.lock_released(event[1])
        elif kind == "files":
            self.check(woken_by="files")
        elif kind == "tick":
            self.check(woken_by="rescan")
        elif kind == "watch_failed":
            self.watch_failed(event[1])
        elif kind == "process":
            self.process_event(event[1], event[2], event[3])
        else:
            return False
        return True


def _identity(path: Path) -> Any:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns)


def _watch_files(
    paths: tuple[Path, ...], stop: threading.Event, changed: Callable[[], None]
) -> None:
    """Call ``changed`` after each burst of file events in ``paths``, until ``stop``.

    watchfiles' Rust watcher is used directly: its public ``watch()`` cannot say
    when the inotify watches exist, and a file created while they are being set
    up would wait for the rescan. Here ``changed`` is called once they exist.
    """
    try:
        from watchfiles._rust_notify import RustNotify  # noqa: PLC0415 - sidecars that need it
    except ImportError:  # a watchfiles without it: the public API, and the rescan
        import watchfiles  # noqa: PLC0415

        changed()
        for _changes in watchfiles.watch(
            *paths, watch_filter=None, debounce=WATCH_DEBOUNCE_MS, step=WATCH_STEP_MS,
            stop_event=stop, recursive=False, raise_interrupt=False,
            ignore_permission_denied=True,
        ):  # fmt: skip
            changed()
        return
    # (paths, debug, force_polling, poll_delay_ms, recursive, ignore_permission_denied)
    with RustNotify([str(p) for p in paths], False, False, 300, False, True) as notify:
        changed()  # whatever happened while the watches were being set up
        while True:
            result = notify.watch(WATCH_DEBOUNCE_MS, WATCH_STEP_MS, 5000, stop)
            if result == "stop":
                return
            if isinstance(result, set):
                changed()
