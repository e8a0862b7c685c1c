"""Deciding that what a sidecar waits for has completed.

The sources (``supervisor.sources``) each follow one thing; three kinds of
wake-up make them look, cheapest first:

1. their own kernel waits (a lock released, a pidfd readable), posted as
   ``SourceChanged(label)``;
2. file events (watchfiles, inotify) on the folders of the files that could
   end a pending source, for containers that have not started yet and for
   plain ``touch``-ed markers; the watcher runs only while something needs it;
3. a rescan every ``--poll-interval`` seconds on the loop's fixed schedule,
   because some volumes drop file events; it also finds markers that were
   there before we started and folders created after.

Every wake-up only makes ``check`` look; ``CompletionWatcher`` decides, and
applies ``--wait-mode`` and ``--stop-on success`` the same way for all.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import log
from supervisor.events import Event, SourceChanged, ThreadFailed, TimerFired
from supervisor.filewatch import follow_files
from supervisor.signals import start_thread
from supervisor.sources import Completion, Source, build

if TYPE_CHECKING:
    from supervisor.loop import Loop

RESCAN = "rescan"  # the loop timer of the periodic rescan
FILE_WATCHER = "file-watcher"  # the thread's name, in ThreadFailed
# A file watcher that failed is tried again only after this long (doubling),
# never on every rescan; the rescan covers the time between.
WATCHER_RETRY = 30.0
WATCHER_RETRY_MAX = 600.0


class CompletionWatcher:
    """Tracks every source; ``satisfied`` says when to stop."""

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
        start_timeout: float = 0.0,
        poll_interval: float | None = None,
    ) -> None:
        self.loop = loop
        # The rescan's period; it runs only while a pending source needs it, so a
        # sidecar whose every target holds its lock does not wake at all.
        # None: the caller rescans (tests).
        self.poll_interval = poll_interval
        self.mode = mode
        self.stop_on_success = stop_on_success
        self.sources: list[Source] = build(
            directory,
            names,
            markers=markers,
            process=process,
            process_timeout=process_timeout,
            start_timeout=start_timeout,
        )
        self.found: dict[str, Completion] = {}  # label -> accepted completion
        # The failure last ignored under --stop-on success, per source, so that
        # the same record is not reported again; a new one replaces it.
        self.ignored: dict[str, object] = {}
        self._started = False
        self._fs_stop: threading.Event | None = None
        self._fs_paths: tuple[Path, ...] = ()
        self._fs_failures = 0
        self._fs_retry_at = 0.0

    @property
    def labels(self) -> list[str]:
        return [source.label for source in self.sources]

    @property
    def completions(self) -> list[Completion]:
        return [self.found[s.label] for s in self.sources if s.label in self.found]

    @property
    def satisfied(self) -> bool:
        done = [source.label in self.found for source in self.sources]
        return any(done) if self.mode == "any" else all(done)

    def pending(self) -> list[Source]:
        return [source for source in self.sources if source.label not in self.found]

    # --- looking ---------------------------------------------------------------

    def check(
        self, woken_by: str = "rescan", label: str | None = None, *, watch_files: bool = True
    ) -> None:
        """Ask the pending sources (or the one named) to look, then run only the
        file watcher that is still needed (none yet with ``watch_files=False``: the
        sidecar's first look comes before COMMAND starts, and the watcher's import
        and set-up would only delay it; ``watch_files()`` starts it after)."""
        if not self._started:
            self._started = True
            for source in self.sources:
                source.start(self.loop)
        for source in self.pending():
            if label is None or source.label == label:
                completion = source.check()
                if completion is not None:
                    self._decide(source, completion, woken_by)
        if watch_files or self._fs_stop is not None:
            self.watch_files()
        self._arrange_rescan()

    def _arrange_rescan(self) -> None:
        if self.poll_interval is None:
            return
        if self.satisfied or not any(source.needs_rescan() for source in self.pending()):
            self.loop.cancel(RESCAN)
        elif not self.loop.pending(RESCAN):
            self.loop.every(RESCAN, self.poll_interval)

    def _decide(self, source: Source, completion: Completion, woken_by: str) -> None:
        """Accept a completion, or ignore a failure once under ``--stop-on success``."""
        if completion.identity is not None and completion.identity == self.ignored.get(
            source.label
        ):
            return
        if completion.failed and self.stop_on_success:
            self.ignored[source.label] = completion.identity
            log.info(
                "completion_ignored",
                target=source.label,
                exit_code=completion.exit_code,
                reason=completion.reason,
                found=completion.found,
                why="--stop-on success and it failed",
            )
            source.start(self.loop)  # wait for the next one
            return
        self.found[source.label] = completion
        source.close()
        log.log(
            "warning" if completion.failed else "info",
            "completion_detected",
            target=source.label,
            source=completion.source,
            exit_code=completion.exit_code,
            signal=completion.signal,
            failed=completion.failed,
            reason=completion.reason,
            found=completion.found,
            woken_by=woken_by,
            # how long after its record was written we noticed it
            latency_ms=None
            if completion.written_at is None
            else round((time.time() - completion.written_at) * 1000, 1),
        )

    def handle(self, event: Event) -> bool:
        """Take a watcher's event off the loop; False if the event is not ours."""
        match event:
            case SourceChanged(label=label):
                self.check(woken_by="files" if label is None else "source", label=label)
            case TimerFired(name=name) if name == RESCAN:
                self.check(woken_by="rescan")
            case ThreadFailed(name=name, error=error) if name == FILE_WATCHER:
                self._watcher_failed(error)
            case _:
                return False
        return True

    # --- the file watcher -------------------------------------------------------

    def watch_files(self) -> None:
        """Run the file watcher on the folders that could still end a source, if any
        (it tells once its watches exist, so nothing written before is missed)."""
        files = [source.watched_file() for source in self.pending()]
        folders = {f.parent for f in files if f is not None}
        paths = tuple(sorted(p for p in folders if p.is_dir()))
        if self.satisfied or not paths:
            self._stop_file_watcher()
            return
        if paths == self._fs_paths and self._fs_stop is not None:
            return
        self._stop_file_watcher()
        if self._fs_failures and time.monotonic() < self._fs_retry_at:
            return  # it failed: the rescan does its work until the retry
        self._start_file_watcher(paths)

    def _start_file_watcher(self, paths: tuple[Path, ...]) -> None:
        stop = threading.Event()
        loop = self.loop
        self._fs_stop = stop
        self._fs_paths = paths
        start_thread(
            lambda: follow_files(paths, stop, lambda: loop.post(SourceChanged(None))),
            name=FILE_WATCHER,
            report=loop.post,
        )
        log.debug("file_watcher_started", paths=[str(p) for p in paths])

    def _stop_file_watcher(self) -> None:
        if self._fs_stop is not None:
            self._fs_stop.set()
            log.debug("file_watcher_stopped")
        self._fs_stop = None
        self._fs_paths = ()

    def _watcher_failed(self, error: str) -> None:
        self._fs_failures += 1
        retry = min(WATCHER_RETRY_MAX, WATCHER_RETRY * 2 ** (self._fs_failures - 1))
        self._fs_retry_at = time.monotonic() + retry
        log.warning(
            "file_watcher_failed",
            error=error,
            fallback="rescan",
            failures=self._fs_failures,
            retry_in=retry,
        )
        self._fs_stop = None
        self._fs_paths = ()

    def close(self) -> None:
        self._stop_file_watcher()
        if self.poll_interval is not None:
            self.loop.cancel(RESCAN)
        for source in self.sources:
            source.close()
