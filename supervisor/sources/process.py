"""Completion by process exit, for pods that share one PID namespace.

With ``shareProcessNamespace: true`` (compose: ``pid: "service:main"``) the
sidecar sees the main's processes. ``--watch-process REGEX`` finds the first
process whose command line matches (not one of our own), then waits for it to
exit: blocked in ``poll`` on a pidfd where the kernel has them (Linux 5.3+),
by polling otherwise. The exit code of a process that is not our child cannot
be known, so such a completion has an unknown exit code (counted as success).

Each exit is one completion; ``start`` again watches for the next matching
process (what ``--stop-on success`` needs when it ignores one). psutil is
imported here only, so sidecars without ``--watch-process`` never load it.
"""

from __future__ import annotations

import itertools
import os
import re
import select
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor import log
from supervisor.events import Event, SourceChanged, ThreadFailed
from supervisor.signals import start_thread
from supervisor.sources import Completion

if TYPE_CHECKING:
    from supervisor.loop import Loop

APPEAR_POLL = 0.1  # seconds between looks for a process that has not appeared yet


PROGRAM = "sidecar-supervisor"


def is_supervisor(cmdline: list[str]) -> bool:
    """A command line of this tool, any role, any path to it: the console script,
    the bundle, ``python -m supervisor``, or a shell's ``-c`` string that runs it."""
    if any(a == "-m" and b == "supervisor" for a, b in itertools.pairwise(cmdline)):
        return True
    return any(os.path.basename(word) == PROGRAM for arg in cmdline[:3] for word in arg.split())


def wrapper_pids(directory: Path | None) -> set[int]:
    """The pids the wrappers announced in their ``NAME.started`` records (in a shared
    PID namespace they are the same pids we see)."""
    from supervisor.markers import read_json  # noqa: PLC0415

    pids: set[int] = set()
    if directory is None:
        return pids
    try:
        names = [e for e in os.listdir(directory) if e.endswith(".started")]
    except OSError:
        return pids
    for name in names:
        record = read_json(directory / name)
        pid = record.get("pid") if record is not None else None
        if isinstance(pid, int) and not isinstance(pid, bool):
            pids.add(pid)
    return pids


def _find(psutil: Any, pattern: re.Pattern[str], me: int, skip: set[int]) -> tuple[Any, list[int]]:
    """The first process matching ``pattern`` that is neither ours nor a supervisor;
    and the supervisors that matched (a pattern that finds only those is a mistake)."""
    supervisors: list[int] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline")
        if proc.pid == me or not cmdline:
            continue
        if not pattern.search(" ".join(cmdline)):
            continue
        if proc.pid in skip or is_supervisor(cmdline):
            supervisors.append(proc.pid)
            continue
        try:
            if me in {parent.pid for parent in proc.parents()}:
                continue  # our own child or its descendants
        except psutil.Error:
            continue
        return proc, supervisors
    return None, supervisors


def _wait_exit(psutil: Any, proc: Any) -> None:
    """Return when ``proc`` has exited; in the kernel where it can, polling otherwise."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            if proc.is_running():  # the pid was not reused between the look and the pidfd
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                poller.poll()
        finally:
            os.close(fd)
        return
    try:
        proc.wait()
    except psutil.Error:
        return


class ProcessSource:
    def __init__(self, regex: str, appear_timeout: float, directory: Path | None = None) -> None:
        self.label = f"process /{regex}/"
        self.directory = directory
        self.regex = regex
        self.pattern = re.compile(regex)
        self.appear_timeout = appear_timeout
        self.loop: Loop | None = None
        self._stop: threading.Event | None = None
        self._outcome: Completion | None = None  # set by the thread, taken by check()

    def start(self, loop: Loop) -> None:
        """Watch for the next matching process (again, after an ignored completion)."""
        self.loop = loop
        self._watch()

    def _watch(self) -> None:
        loop = self.loop
        assert loop is not None
        stop = self._stop = threading.Event()

        def finish(completion: Completion) -> None:
            if not stop.is_set():
                self._outcome = completion
                loop.post(SourceChanged(self.label))

        def run() -> None:
            import psutil  # noqa: PLC0415 - only --watch-process needs it

            me = os.getpid()
            deadline = time.monotonic() + self.appear_timeout
            announced = warned = False
            while True:
                proc, supervisors = _find(psutil, self.pattern, me, wrapper_pids(self.directory))
                if proc is not None:
                    break
                if supervisors and not warned:
                    warned = True
                    log.warning(
                        "process_pattern_matches_a_supervisor",
                        pattern=self.regex,
                        pids=supervisors,
                        hint="the pattern matches only sidecar-supervisor processes, which are "
                        "never watched; match the main's COMMAND instead",
                    )
                if time.monotonic() >= deadline:
                    finish(self._failed("ProcessNeverAppeared", None))
                    return
                if not announced:
                    log.info("waiting_for_process", pattern=self.regex, timeout=self.appear_timeout)
                    announced = True
                if stop.wait(APPEAR_POLL):
                    return
            log.info(
                "process_found", pattern=self.regex, pid=proc.pid, cmdline=proc.info.get("cmdline")
            )
            _wait_exit(psutil, proc)
            finish(
                Completion(
                    self.label,
                    "process",
                    None,
                    failed=False,
                    reason="Exited",
                    identity=("exited", proc.pid, time.monotonic()),
                )
            )

        def failed(event: Event) -> None:
            assert isinstance(event, ThreadFailed)
            log.error("process_watch_failed", pattern=self.regex, error=event.error)
            finish(self._failed("WatchFailed", event.error))

        start_thread(run, name="process-watch", report=failed)

    def _failed(self, reason: str, error: str | None) -> Completion:
        return Completion(
            self.label, "process", None, failed=True, reason=reason, identity=(reason, error)
        )

    def check(self) -> Completion | None:
        outcome, self._outcome = self._outcome, None
        return outcome

    def watched_file(self) -> Path | None:
        return None

    def needs_rescan(self) -> bool:
        return False  # its thread posts what it finds

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
