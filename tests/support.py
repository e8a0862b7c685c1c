"""Real processes for the tests: "containers", helper workloads, bounded waits.

A ``Container`` runs ``sidecar-supervisor`` as a real process, in its own PID
namespace (``unshare --pid --fork --mount-proc``) where the machine allows it,
so the supervisor really is PID 1 and meets the PID-1 signal rules. Its stdout
(the wrapped child's output) is read line by line in a thread; its stderr (the
supervisor's JSON log) goes to a file that ``events()`` parses.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).parent
PRINT_SIGNALS = [sys.executable, str(HERE / "helpers" / "print_signals.py")]
SUPERVISOR = [sys.executable, "-m", "supervisor"]
TIMEOUT = 30.0  # a safety net for a loaded machine, never a measurement


@functools.cache
def can_unshare() -> bool:
    """True where a test may start a process in a new PID namespace."""
    if shutil.which("unshare") is None:
        return False
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        check=False,
        timeout=TIMEOUT,
    )
    return result.returncode == 0


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


class Container:
    """One supervisor process standing in for one container of a pod."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        namespace: bool = True,
        env: dict[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        """Run ``python -m supervisor ARGS``, or ``argv`` as it is when given."""
        self.args = list(args)
        self.log_path = log_path
        self.namespaced = namespace and (argv is not None or can_unshare())
        if argv is None:
            prefix = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
            argv = [*(prefix if self.namespaced else []), *SUPERVISOR, *self.args]
        full_env = {**os.environ, "SIDECAR_SUPERVISOR_LOG_FORMAT": "json", **(env or {})}
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=full_env,
            start_new_session=True,
        )
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    @property
    def supervisor_pid(self) -> int:
        """The supervisor's pid as seen from the tests (outside its namespace)."""
        if not self.namespaced:
            return self.proc.pid

        def inner() -> int | None:
            try:
                children = psutil.Process(self.proc.pid).children()
            except psutil.NoSuchProcess:
                return None
            return children[0].pid if children else None

        pid: int = wait_until(inner, what="the supervisor inside the namespace")
        return pid

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Block until the child prints a line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r}; got {self.output}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"output ended before {pattern!r}; got {self.output}")
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def rest_of_output(self, timeout: float = TIMEOUT) -> list[str]:
        """Every line still to come, once the process has closed its stdout."""
        self._reader.join(timeout)
        rest = []
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                rest.append(line)
        self.output.extend(rest)
        return rest

    def signal(self, signum: int) -> None:
        os.kill(self.supervisor_pid, signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.proc.wait(timeout)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def events(self) -> list[dict[str, Any]]:
        """The supervisor's log, one JSON object per line."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events() if e.get("event") == name]
        assert found, f"no {name!r} event in {self.log_path.read_text()}"
        return found[0]

    def close(self) -> None:
        # Everything the container started, even what left its session, dies first:
        # a survivor holding our stdout would keep the reader thread waiting.
        with contextlib.suppress(psutil.NoSuchProcess):
            for proc in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def kill_leftovers(container: Container, *pids: int) -> None:
    """After a failed test: kill what a supervisor outside a namespace may have left.

    Everything it started, and ``pids`` (orphans it should have stopped): a survivor
    holding the container's stdout would keep ``Container.close`` waiting for it.
    """
    with contextlib.suppress(psutil.NoSuchProcess):
        for proc in psutil.Process(container.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
