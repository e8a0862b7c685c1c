"""Process plumbing: start "containers", read what they print, read /proc, clean up.

A ``Proc`` is a ``supervisor.harness.Process`` (the one harness the tests and
the demo use too) with the benchmarks' reading of workload lines.

Every process runs in its own session; a ``Pod`` kills every process it
started, and then every descendant of this process, when it closes (the
runner is a child subreaper, so orphans are re-parented to it and found).
Timestamps are CLOCK_MONOTONIC nanoseconds taken inside the processes
themselves (system-wide on Linux, comparable across processes and PID
namespaces); the harness only compares them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from benchmarks.model import Series
from supervisor.harness import UNSHARE, Process, poll_until

PY = sys.executable  # the real interpreter, never a shim
ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = Path(__file__).resolve().parent / "workloads"
SUPERVISOR = (PY, "-m", "supervisor")
SAFETY = 30.0  # seconds: a safety net on a loaded machine, never a measurement
ENV = {"SIDECAR_SUPERVISOR_LOG_FORMAT": "json"}


def workload(name: str, *args: str | os.PathLike[str], site: bool = False) -> list[str]:
    """A script of ``benchmarks/workloads``; with -S (faster) unless it needs site-packages."""
    flags = [] if site else ["-S"]
    return [PY, *flags, str(WORKLOADS / f"{name}.py"), *(os.fspath(a) for a in args)]


def now_ns() -> int:
    return time.monotonic_ns()


def ms(nanoseconds: int) -> float:
    return nanoseconds / 1e6


def wait_until(predicate: Callable[[], Any], timeout: float = SAFETY, pause: float = 0.002) -> Any:
    """Poll ``predicate`` until it is truthy; its value, or None after ``timeout``."""
    return poll_until(predicate, timeout, pause)


class Proc(Process):
    """One process (optionally PID 1 of a new PID namespace) with its stdout read by lines."""

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log: Path | None = None,
        namespace: bool = False,
        env: dict[str, str] | None = None,
        unset: Sequence[str] = (),
    ) -> None:
        self.namespaced = namespace
        self._unread: list[list[str]] = []
        environ = {k: v for k, v in os.environ.items() if k not in unset}
        super().__init__(
            [*(UNSHARE if namespace else ()), *argv],
            env={**environ, **ENV, **(env or {})},
            cwd=ROOT,
            log=log,
            stdin=True,
        )

    @property
    def pid(self) -> int:
        """The wrapper's pid as seen from here (inside a namespace: unshare's child)."""
        if not self.namespaced:
            return self.popen.pid
        pid = self.first_child(SAFETY, pause=0.002)
        if pid is None:
            raise RuntimeError("no process appeared inside the PID namespace")
        return pid

    def expect(self, word: str, timeout: float = SAFETY) -> list[str] | None:
        """The words of the first unread line starting with ``word``; None on timeout or EOF.

        Lines that start otherwise stay unread for a later ``expect``, so two
        processes sharing this stdout may print in either order.
        """
        for at, words in enumerate(self._unread):
            if words[0] == word:
                return self._unread.pop(at)

        def starts(line: str) -> list[str] | None:
            words = line.split()
            if words and words[0] == word:
                return words
            if words:
                self._unread.append(words)
            return None

        return self.wait_for_line(starts, timeout)

    def stamp(self, word: str, timeout: float = SAFETY) -> int | None:
        """The monotonic_ns at the end of the next ``word ... NS`` line."""
        words = self.expect(word, timeout)
        return None if words is None else int(words[-1])

    def send(self, data: bytes = b"go\n") -> None:
        """Write to the process's stdin (workloads read their go from there)."""
        super().send(data)

    def count(self, name: str) -> int:
        return sum(1 for e in self.events() if e.get("event") == name)

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events() if e.get("event") == name), None)

    def settled(self, name: str = "child_started") -> None:
        """Wait until the supervisor has logged ``name``: its start-up work is over.

        The roles start COMMAND first and import their logger after it, so a
        trial that triggers earlier would time the start-up, not the steady state.
        """
        need(wait_until(lambda: self.event(name), pause=0.005), f"no {name} event in {self.log}")

    def wait(self, timeout: float = SAFETY) -> int | None:
        return super().wait(timeout)

    def close(self) -> None:
        """Release the pipes and the log (see ``Process.release``)."""
        self.release(5)


class Pod:
    """The processes of one trial; closing it leaves no process of ours behind."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.procs: list[Proc] = []

    def start(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        name: str = "proc",
        namespace: bool = False,
        env: dict[str, str] | None = None,
        unset: Sequence[str] = (),
    ) -> Proc:
        """Start ``argv`` in its own session; ``unset``: variables it must not inherit."""
        log = self.dir / f"{name}-{len(self.procs)}.log"
        proc = Proc(argv, log=log, namespace=namespace, env=env, unset=unset)
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Pod:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        for proc in self.procs:
            proc.kill()
        reap_all()
        for proc in self.procs:
            proc.close()


def _reap_nohang() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def reap_all(timeout: float = SAFETY) -> int:
    """SIGKILL every descendant and reap it; the number still there after ``timeout``."""
    me = psutil.Process()
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in me.children(recursive=True) if _alive(p)]
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _reap_nohang()
        if not left or time.monotonic() > deadline:
            return len(left)
        time.sleep(0.005)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE or proc.ppid() == os.getpid()
    except psutil.Error:
        return False


# --- the supervisor's JSON log -------------------------------------------------


def realtime_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, to place log timestamps on the monotonic clock."""
    return time.time_ns() - time.monotonic_ns()


def event_ns(event: dict[str, Any], offset: int) -> int | None:
    """The monotonic time of a log event (its ISO timestamp has microseconds)."""
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return round(moment.timestamp() * 1e6) * 1000 - offset


class TrialError(RuntimeError):
    """A trial could not even be set up (a process never got ready): the figure errors."""


def need(value: Any, what: str) -> Any:
    """``value`` if it is there, else a TrialError saying what never happened."""
    if value is None or value is False:
        raise TrialError(f"{what} (waited {SAFETY:g} s)")
    return value


def collect(
    label: str, n: int, trial: Callable[[], float | None], *, timeout_s: float | None = None
) -> Series:
    """Run ``trial`` n times; a None result counts as a trial that never reacted."""
    series = Series(label, timeout_s=timeout_s)
    for _ in range(n):
        value = trial()
        if value is None:
            series.timeouts += 1
        else:
            series.samples.append(value)
    return series
