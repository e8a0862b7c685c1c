"""Real processes for the tests: "containers", helper workloads, bounded waits.

A ``Container`` runs ``sidecar-supervisor`` as a real process, in its own PID
namespace (``unshare --pid --fork --mount-proc``) where the machine allows it,
so the supervisor really is PID 1 and meets the PID-1 signal rules. Its stdout
(the wrapped child's output) is read line by line in a thread; its stderr (the
supervisor's JSON log) goes to a file that ``events()`` parses: the
plumbing is ``supervisor.harness.Process``, shared with the benchmarks and
the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from supervisor.harness import UNSHARE, Process, kill_tree, namespace_prefix, poll_until

HERE = Path(__file__).parent
PRINT_SIGNALS = [sys.executable, str(HERE / "helpers" / "print_signals.py")]
SUPERVISOR = [sys.executable, "-m", "supervisor"]
TIMEOUT = 30.0  # a safety net for a loaded machine, never a measurement


def can_unshare() -> bool:
    """True where a test may start a process in a new PID namespace."""
    return bool(namespace_prefix())


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    value = poll_until(predicate, timeout)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
    return value


class Container(Process):
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
            argv = [*(UNSHARE if self.namespaced else ()), *SUPERVISOR, *self.args]
        full_env = {**os.environ, "SIDECAR_SUPERVISOR_LOG_FORMAT": "json", **(env or {})}
        super().__init__(argv, env=full_env, log=log_path)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.popen

    @property
    def supervisor_pid(self) -> int:
        """The supervisor's pid as seen from the tests (outside its namespace)."""
        if not self.namespaced:
            return self.popen.pid
        pid = self.first_child(TIMEOUT)
        if pid is None:
            raise AssertionError("no supervisor inside the namespace")
        return pid

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Block until the child prints a line matching ``pattern``."""
        match = self.wait_for_line(lambda line: re.search(pattern, line), timeout)
        if match is None:
            why = "output ended before" if self.eof else "no line matching"
            raise AssertionError(f"{why} {pattern!r}; got {self.output}")
        return match

    def rest_of_output(self, timeout: float = TIMEOUT) -> list[str]:
        """Every line still to come, once the process has closed its stdout."""
        return self.rest(timeout)

    def signal(self, signum: int) -> None:
        os.kill(self.supervisor_pid, signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        code = super().wait(timeout)
        if code is None:
            raise AssertionError(f"{self.args} still running after {timeout} s")
        return code

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events() if e.get("event") == name]
        assert found, f"no {name!r} event in {self.log_path.read_text()}"
        return found[0]

    def close(self) -> None:
        self.stop(TIMEOUT)


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def kill_leftovers(container: Container, *pids: int) -> None:
    """After a failed test: kill what a supervisor outside a namespace may have left.

    Everything it started, and ``pids`` (orphans it should have stopped): a survivor
    holding the container's stdout would keep ``Container.close`` waiting for it.
    """
    kill_tree(container.popen.pid, include_self=False)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
