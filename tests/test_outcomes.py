"""The Kubernetes outcomes a Job pod must reach, row by row, with real processes.

The records and the lock they rely on are those of docs/PROTOCOL.md ("The lock",
"Attempts").

Each container is a real supervisor in its own PID namespace, all sharing one
directory as the pod's ``emptyDir``; ``tests.kubelet.Kubelet`` plays the
kubelet and restarts a container as the pod's ``restartPolicy`` says. Where a
row needs the OOM killer, the container runs in a cgroup v1 memory cgroup with
a small limit, so the kernel really kills the process that outgrows it.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import StartContainer
from tests.kubelet import (
    MIB,
    Kubelet,
    MemoryCgroup,
    before,
    cgroup_container,
    has_event,
    logged,
    memory_cgroup,
    nth_run,
    pod_phase,
    wait_for_event,
)
from tests.support import PRINT_SIGNALS, Container, can_unshare, read_json

READY = r"ready \(pid: \d+\)"
TERM = str(int(signal.SIGTERM))
USR1 = str(int(signal.SIGUSR1))
# Allocates (and touches) four times the cgroup's limit: the OOM killer's pick.
LIMIT = 96 * MIB
ALLOCATE = [sys.executable, "-c", f"bytearray({4 * LIMIT})"]

StartInCgroup = Callable[..., Container]


def require_namespaces() -> None:
    """Tests that kill a container's PID 1 need the namespace to take its children along."""
    if not can_unshare():
        pytest.skip("unshare --pid --fork --mount-proc is not allowed here")


@pytest.fixture
def cgroup() -> Iterator[MemoryCgroup]:
    with memory_cgroup(LIMIT) as limited:
        yield limited


@pytest.fixture
def start_in_cgroup(tmp_path: Path, cgroup: MemoryCgroup) -> Iterator[StartInCgroup]:
    """Like ``start``, but the container runs inside the memory-limited ``cgroup``."""
    started: list[Container] = []

    def factory(*args: str | os.PathLike[str]) -> Container:
        argv = [os.fspath(a) for a in args]
        log = tmp_path / f"limited-{len(started)}-{argv[0]}.log"
        container = cgroup_container(argv, log, cgroup)
        started.append(container)
        return container

    yield factory
    for container in started:  # before the cgroup fixture removes the cgroup
        container.close()


def sidecar(start: StartContainer, shared: Path, *extra: str) -> Container:
    """A sidecar whose child prints every signal it receives (SIGTERM ends it)."""
    return start("sidecar", "--dir", shared, *extra, "--", *PRINT_SIGNALS)


def main(start: StartContainer, shared: Path, *command: str) -> Callable[[], Container]:
    """How the kubelet starts the main container, again on each attempt."""
    return lambda: start("main", "--dir", shared, "--", *command)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def q(path: Path) -> str:
    return shlex.quote(str(path))


def assert_child_alive(side: Container) -> None:
    """The sidecar's child still runs: a forwarded SIGUSR1 reaches it and is printed."""
    assert side.running
    side.signal(signal.SIGUSR1)
    side.expect(f"^{USR1}$")


def assert_stopped_by_supervisor(side: Container, shared: Path, why: str = "completed") -> None:
    """The sidecar stopped its child itself, exited 0 and said so in ``sidecar.done``."""
    assert side.wait() == 0
    stopped = [e for e in logged(side, "child_exited") if e.get("before_completion") is False]
    assert len(stopped) == 1, side.events()
    assert stopped[0]["signal"] == "SIGTERM"
    assert logged(side, "stop_requested")[0]["why"] == why
    done = read_json(shared / "sidecar.done")
    assert done["exit_code"] == 0
    assert done["reason"] == "Stopped"
    assert done["why"] == why
    assert side.event("supervisor_exiting")["exit_code"] == 0


# --- restartPolicy: Never ----------------------------------------------------------


@pytest.mark.parametrize(("code", "phase"), [(0, "Succeeded"), (3, "Failed")])
def test_never_main_exits_and_the_sidecar_exits_zero(
    start: StartContainer, shared: Path, code: int, phase: str
) -> None:
    side = sidecar(start, shared)
    side.expect(READY)
    primary = Kubelet(main(start, shared, "sh", "-c", f"exit {code}"), "Never")

    assert primary.run_to_end() == code
    assert primary.restarts == 0
    assert_stopped_by_supervisor(side, shared)
    assert side.rest_of_output() == [TERM]
    # The pod's phase comes from the main alone: the sidecar never fails it.
    assert pod_phase("Never", [code, 0]) == phase
    assert read_json(shared / "main.done")["exit_code"] == code
    detected = side.event("completion_detected")
    assert detected["target"] == "main"
    assert detected["source"] == "marker"
    assert detected["exit_code"] == code
    assert detected["failed"] is (code != 0)


def test_never_main_wrapper_killed_stops_the_sidecar_through_the_lock(
    start: StartContainer, shared: Path
) -> None:
    require_namespaces()
    side = sidecar(start, shared)
    side.expect(READY)
    primary = Kubelet(main(start, shared, *sh("echo main-up; exec sleep 600")), "Never")

    def kill_the_wrapper(container: Container, _attempt: int) -> None:
        container.expect("main-up")
        primary.kill()  # PID 1 of the container: no .done is written

    assert primary.run_to_end(on_start=kill_the_wrapper) == 137
    assert_stopped_by_supervisor(side, shared)
    assert not (shared / "main.done").exists()
    detected = side.event("completion_detected")
    assert detected["target"] == "main"
    assert detected["source"] == "lock"
    assert detected["failed"] is True
    assert detected["exit_code"] is None
    assert pod_phase("Never", [137, 0]) == "Failed"


def test_never_main_container_oom_killed_stops_the_sidecar(
    start: StartContainer,
    shared: Path,
    start_in_cgroup: StartInCgroup,
    cgroup: MemoryCgroup,
) -> None:
    side = sidecar(start, shared)
    side.expect(READY)
    primary = start_in_cgroup("main", "--dir", shared, "--", *ALLOCATE)

    assert primary.wait() == 137
    assert cgroup.oom_kills() >= 1
    done = read_json(shared / "main.done")
    assert done["reason"] == "OOMKilled"
    assert done["signal"] == signal.SIGKILL
    assert done["exit_code"] is None
    assert primary.event("child_exited")["reason"] == "OOMKilled"
    assert primary.event("supervisor_exiting")["exit_code"] == 137
    assert_stopped_by_supervisor(side, shared)
    detected = side.event("completion_detected")
    assert detected["source"] == "marker"
    assert detected["failed"] is True
    assert detected["reason"] == "OOMKilled"


# --- restartPolicy: OnFailure --------------------------------------------------------


@pytest.mark.parametrize("failure", ["exit 1", "SIGKILL"])
def test_on_failure_sidecar_runs_through_a_failed_attempt(
    start: StartContainer, shared: Path, tmp_path: Path, failure: str
) -> None:
    if failure == "SIGKILL":
        require_namespaces()
    side = sidecar(start, shared, "--stop-on", "success")
    side.expect(READY)
    first = "exit 1" if failure == "exit 1" else "exec sleep 600"
    primary = Kubelet(
        main(start, shared, *nth_run(tmp_path / "runs", first, "exit 0")), "OnFailure"
    )

    def on_start(container: Container, attempt: int) -> None:
        container.expect(f"run {attempt}")
        if attempt == 1 and failure == "SIGKILL":
            primary.kill()  # a hard death: no .done

    def on_exit(code: int, attempt: int) -> None:
        if attempt == 1:  # the kubelet's back-off: the sidecar must still be up
            ignored = wait_for_event(side, "completion_ignored")[0]
            assert ignored["target"] == "main"
            assert ignored["exit_code"] == (1 if failure == "exit 1" else None)
            assert not has_event(side, "completion_detected")
            assert_child_alive(side)

    assert primary.run_to_end(on_start=on_start, on_exit=on_exit) == 0
    assert primary.exit_codes == [1 if failure == "exit 1" else 137, 0]
    assert primary.restarts == 1
    assert read_json(shared / "main.started")["attempt"] == 2
    done = read_json(shared / "main.done")
    assert done["attempt"] == 2
    assert done["exit_code"] == 0
    assert_stopped_by_supervisor(side, shared)
    assert side.rest_of_output() == [TERM]
    assert side.output.count(TERM) == 1
    detected = side.event("completion_detected")
    assert detected["exit_code"] == 0
    assert detected["failed"] is False
    assert len(logged(side, "completion_ignored")) == 1
    assert len(logged(side, "child_started")) == 1  # one child all along
    assert pod_phase("OnFailure", [0, 0]) == "Succeeded"


def test_on_failure_restarted_sidecar_finds_the_marker_and_exits_at_once(
    start: StartContainer, shared: Path
) -> None:
    """The sidecar's wrapper dies during its stop; the kubelet restarts the container."""
    require_namespaces()
    command = "trap 'echo got-TERM' TERM; echo COMMAND-STARTED; while :; do sleep 0.1; done"
    side = Kubelet(
        lambda: start("sidecar", "--dir", shared, "--grace-period", "60", "--", *sh(command)),
        "OnFailure",
    )

    def on_start(container: Container, attempt: int) -> None:
        if attempt == 1:
            container.expect("COMMAND-STARTED")
            primary = start("main", "--dir", shared, "--", "true")
            assert primary.wait() == 0
            container.expect("got-TERM")  # the stop has begun; the child ignores it
            side.kill()  # e.g. the OOM killer hits the wrapper

    assert side.run_to_end(on_start=on_start) == 0
    assert side.exit_codes == [137, 0]
    assert side.restarts == 1
    again = side.current
    assert again.rest_of_output() == []  # COMMAND never started
    assert again.event("already_complete")["waited_for"] == ["main"]
    assert not has_event(again, "child_started")
    assert again.event("supervisor_exiting")["exit_code"] == 0
    assert read_json(shared / "sidecar.done")["reason"] == "AlreadyComplete"


def test_sidecar_container_started_again_after_its_stop_exits_at_once(
    start: StartContainer, shared: Path
) -> None:
    """A container restart the policy did not ask for (runtime restart, node reboot)."""
    command = sh("echo COMMAND-STARTED; exec sleep 600")
    side = Kubelet(lambda: start("sidecar", "--dir", shared, "--", *command), "OnFailure")
    side.start().expect("COMMAND-STARTED")
    assert start("main", "--dir", shared, "--", "true").wait() == 0
    assert side.wait() == 0
    first_done = read_json(shared / "sidecar.done")
    assert first_done["reason"] == "Stopped"

    again = side.start()
    assert side.wait() == 0
    assert again.rest_of_output() == []
    assert has_event(again, "already_complete")
    assert not has_event(again, "child_started")
    assert read_json(shared / "sidecar.done") == first_done  # the first stop's record stays


# --- any restartPolicy -------------------------------------------------------------


def test_sidecar_child_oom_killed_is_restarted_then_stops_with_the_main(
    start: StartContainer,
    shared: Path,
    tmp_path: Path,
    start_in_cgroup: StartInCgroup,
    cgroup: MemoryCgroup,
) -> None:
    command = nth_run(
        tmp_path / "runs", shlex.join(["exec", *ALLOCATE]), shlex.join(["exec", *PRINT_SIGNALS])
    )
    side = start_in_cgroup("sidecar", "--dir", shared, "--", *command)

    side.expect("run 1")
    side.expect("run 2")  # restarted by the supervisor after the OOM kill
    side.expect(READY)
    assert cgroup.oom_kills() >= 1
    crashed = logged(side, "child_exited")[0]
    assert crashed["before_completion"] is True
    assert crashed["reason"] == "OOMKilled"
    assert crashed["signal"] == "SIGKILL"
    restarting = side.event("child_restarting")
    assert restarting["reason"] == "OOMKilled"
    assert restarting["delay"] == 1.0
    assert len(logged(side, "child_started")) == 2
    assert side.running

    assert start("main", "--dir", shared, "--", "true").wait() == 0
    assert_stopped_by_supervisor(side, shared)
    assert side.rest_of_output() == [TERM]
    assert read_json(shared / "sidecar.started")["attempt"] == 1  # one container attempt


def test_pod_deletion_sidecar_outlives_the_main(start: StartContainer, shared: Path) -> None:
    marker = q(shared / "main.done")
    reports = (
        f"trap 'if [ -f {marker} ]; then echo TERM after main.done; "
        "else echo TERM before main.done; fi; exit 0' TERM; "
        "echo side-up; while :; do sleep 0.1; done"
    )
    side = start("sidecar", "--dir", shared, "--term-hold", "60", "--", *sh(reports))
    side.expect("side-up")
    primary = start(
        "main",
        "--dir",
        shared,
        "--",
        *sh(
            "trap 'sleep 0.5; echo main-stopping; exit 0' TERM; "
            "echo main-up; while :; do sleep 0.1; done"
        ),
    )
    primary.expect("main-up")
    for pid in (side.supervisor_pid, primary.supervisor_pid):  # SIGTERM to every container
        os.kill(pid, signal.SIGTERM)

    assert primary.wait() == 0
    assert primary.rest_of_output() == ["main-stopping"]
    assert side.wait() == 0
    # One SIGTERM reached the sidecar's child, and only once main.done existed.
    assert side.rest_of_output() == ["TERM after main.done"]
    assert before(side, "term_hold_started", "completion_detected")
    assert before(side, "completion_detected", "stop_requested")
    assert side.event("term_hold_started")["signal"] == "SIGTERM"
    assert not has_event(side, "term_hold_expired")
    done = read_json(shared / "sidecar.done")
    assert (done["exit_code"], done["why"]) == (0, "completed")


def test_pod_deletion_sidecar_stops_when_the_hold_expires(
    start: StartContainer, shared: Path
) -> None:
    require_namespaces()
    side = sidecar(start, shared, "--term-hold", "1")
    side.expect(READY)
    stubborn = "trap 'echo main-ignores-TERM' TERM; echo main-up; while :; do sleep 0.1; done"
    kubelet = Kubelet(main(start, shared, *sh(stubborn)), "Never")
    primary = kubelet.start()
    primary.expect("main-up")
    for pid in (side.supervisor_pid, primary.supervisor_pid):
        os.kill(pid, signal.SIGTERM)

    primary.expect("main-ignores-TERM")
    # A hold of 1 s; 10 s is only a safety net (and keeps a hang from costing 30 s).
    wait_for_event(side, "term_hold_expired", timeout=10)
    assert_stopped_by_supervisor(side, shared, why="term_hold_expired")
    assert side.rest_of_output() == [TERM]
    assert before(side, "term_hold_started", "term_hold_expired")
    assert not has_event(side, "completion_detected")
    assert primary.running  # the main never finished: the kubelet's SIGKILL ends it
    kubelet.kill()
    assert kubelet.wait() == 137
    assert not (shared / "main.done").exists()
