"""A small kubelet for the tests: restart policies, pod phase, memory limits.

``Kubelet`` runs one "container" (a supervisor process, see ``support.Container``)
and starts it again when it exits, as the pod's ``restartPolicy`` says; every
attempt shares the same directory, as an ``emptyDir`` survives container
restarts. ``MemoryCgroup`` is a cgroup v1 memory limit a container can be
started in (``cgroup_container``), so the kernel's OOM killer really strikes;
``RawContainer`` runs any command line as a container (a cgroup to join first,
or a pod whose containers share one PID namespace). ``nth_run`` and the log
helpers keep the tests short.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from supervisor.harness import UNSHARE
from tests.support import SUPERVISOR, TIMEOUT, Container, can_unshare, wait_until

RestartPolicy = Literal["Never", "OnFailure", "Always"]
MEMORY_ROOT = Path("/sys/fs/cgroup/memory")
MIB = 1024 * 1024
NAMESPACE = UNSHARE


def exit_code(returncode: int) -> int:
    """A container's exit code as Kubernetes reports it: 128+N for a death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def pod_phase(policy: RestartPolicy, exit_codes: Sequence[int]) -> str:
    """The phase of a pod whose containers have all stopped with ``exit_codes``.

    Under ``Never`` the pod is ``Succeeded`` only if every exit code is 0;
    under ``OnFailure`` a non-zero container would be restarted, so the pod is
    still ``Running``; under ``Always`` nothing ever ends.
    """
    if policy == "Never":
        return "Succeeded" if all(code == 0 for code in exit_codes) else "Failed"
    if policy == "OnFailure":
        return "Succeeded" if all(code == 0 for code in exit_codes) else "Running"
    return "Running"


class Kubelet:
    """Runs one container, and runs it again per ``restartPolicy``, counting restarts.

    ``launch`` starts one attempt of the container (the same command every
    time: what differs between attempts comes from the shared directory).
    The test drives the kubelet's loop: ``run_to_end`` starts, waits and
    restarts until the policy says the container is finished; ``on_start`` and
    ``on_exit`` hooks run at each step, in the window where the real kubelet
    would sit in its restart back-off.
    """

    def __init__(self, launch: Callable[[], Container], policy: RestartPolicy) -> None:
        self.launch = launch
        self.policy = policy
        self.attempts: list[Container] = []
        self.exit_codes: list[int] = []
        self._killed: set[int] = set()  # attempts (indexes) the kubelet sent SIGKILL

    @property
    def restarts(self) -> int:
        return max(0, len(self.attempts) - 1)

    @property
    def current(self) -> Container:
        assert self.attempts, "the container was never started"
        return self.attempts[-1]

    def start(self) -> Container:
        """Start the container (again): a new attempt on the same volume."""
        container = self.launch()
        self.attempts.append(container)
        return container

    def kill(self) -> None:
        """SIGKILL the current attempt's PID 1, as the runtime does (or the node's OOM killer).

        The kernel then kills every process of the container's PID namespace.
        """
        self.current.signal(signal.SIGKILL)
        self._killed.add(len(self.attempts) - 1)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the current attempt to exit; its exit code, as Kubernetes shows it."""
        returncode = self.current.wait(timeout)
        if len(self.attempts) - 1 in self._killed and self.current.namespaced:
            # unshare 2.38 reports its child's death by a signal as status 1
            # ("sigprocmask unblock failed"); the runtime would report 128+9.
            returncode = -signal.SIGKILL
        code = exit_code(returncode)
        self.exit_codes.append(code)
        return code

    def wants_restart(self, code: int) -> bool:
        if self.policy == "Always":
            return True
        return self.policy == "OnFailure" and code != 0

    def run_to_end(
        self,
        *,
        on_start: Callable[[Container, int], None] | None = None,
        on_exit: Callable[[int, int], None] | None = None,
        max_restarts: int = 5,
    ) -> int:
        """Start, wait, restart per the policy; the exit code of the last attempt.

        ``on_start(container, attempt)`` runs once each attempt is started,
        ``on_exit(code, attempt)`` once it has exited (attempts count from 1).
        """
        while True:
            container = self.start()
            attempt = len(self.attempts)
            if on_start is not None:
                on_start(container, attempt)
            code = self.wait()
            if on_exit is not None:
                on_exit(code, attempt)
            if not self.wants_restart(code) or self.restarts >= max_restarts:
                return code


class MemoryCgroup:
    """A cgroup v1 memory cgroup with a hard limit and no swap; removed on close."""

    def __init__(self, limit: int) -> None:
        self.path = MEMORY_ROOT / f"sidecar-supervisor-test-{uuid.uuid4().hex[:12]}"
        try:
            self.path.mkdir()
        except OSError as exc:
            pytest.skip(f"cannot create a memory cgroup in {MEMORY_ROOT}: {exc.strerror}")
        try:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            (self.path / "memory.swappiness").write_text("0")
        except OSError as exc:
            self.close()
            pytest.skip(f"cannot limit the memory cgroup {self.path}: {exc.strerror}")

    def pids(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def oom_kills(self) -> int:
        for line in (self.path / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def close(self) -> None:
        """Kill whatever is still inside, then remove the cgroup."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.pids(), what=f"{self.path} to empty")
        # The kernel may report the cgroup busy for a moment after its last task exits.
        wait_until(self._remove, what=f"rmdir {self.path}")

    def _remove(self) -> bool:
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[MemoryCgroup]:
    cgroup = MemoryCgroup(limit)
    try:
        yield cgroup
    finally:
        cgroup.close()


class RawContainer(Container):
    """A ``Container`` whose process is ``argv`` itself, not ``python -m supervisor ARGS``.

    For containers that need a prefix before the supervisor (a cgroup to join)
    or a pod whose containers share one PID namespace. ``argv`` should start a
    new PID namespace, as ``supervisor_pid`` takes the first child of the
    process as the namespace's PID 1.
    """

    def __init__(
        self, argv: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None
    ) -> None:
        if not can_unshare():
            pytest.skip("unshare --pid --fork --mount-proc is not allowed here")
        super().__init__(argv, log_path, env=env, argv=argv)


def cgroup_container(args: Sequence[str], log_path: Path, cgroup: MemoryCgroup) -> Container:
    """A supervisor container started inside ``cgroup``: its first process joins, then execs.

    Everything the supervisor starts later inherits the cgroup, as every
    process of a real container shares the container's memory limit.
    """
    join = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
    return RawContainer(
        ["sh", "-c", join, str(cgroup.path), *NAMESPACE, *SUPERVISOR, *args], log_path
    )


def nth_run(counter: Path, *scripts: str) -> list[str]:
    """COMMAND: a shell that runs ``scripts[n-1]`` on its n-th run (the last one from then on).

    The runs are counted in ``counter``, so the behaviour of a restarted
    container or child can differ from its first attempt's while its command
    stays the same. Each run first prints ``run N``.
    """
    count = shlex.quote(str(counter))
    cases = " ".join(f"{n}) {script} ;;" for n, script in enumerate(scripts[:-1], 1))
    return [
        "sh",
        "-c",
        f"n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}; "
        f'echo "run $n"; case $n in {cases} *) {scripts[-1]} ;; esac',
    ]


# --- reading a container's log ---------------------------------------------------


def logged(container: Container, name: str) -> list[dict[str, Any]]:
    """Every ``name`` event in the container's log, oldest first."""
    return [e for e in container.events() if e.get("event") == name]


def has_event(container: Container, name: str) -> bool:
    return bool(logged(container, name))


def before(container: Container, first: str, then: str) -> bool:
    """``first`` was logged, and before the first ``then``."""
    names = [e.get("event") for e in container.events()]
    return first in names and then in names and names.index(first) < names.index(then)


def wait_for_event(
    container: Container, name: str, count: int = 1, timeout: float = TIMEOUT
) -> list[dict[str, Any]]:
    """Block until the container has logged ``name`` at least ``count`` times."""
    found: list[dict[str, Any]] = wait_until(
        lambda: (events := logged(container, name)) and len(events) >= count and events,
        timeout=timeout,
        what=f"{count} {name!r} event(s) in {container.log_path}",
    )
    return found
