"""Restarting a sidecar's child, the liveness lock, and waiting for several mains.

Real supervisors, each in its own PID namespace (where allowed), sharing one
directory as the pod's ``emptyDir``. Back-off is checked through the delays the
supervisor logs, never by measuring time.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.markers import lock_is_held
from tests.conftest import StartContainer
from tests.kubelet import before, has_event, logged, nth_run, wait_for_event
from tests.support import PRINT_SIGNALS, Container, read_json, wait_until

READY = r"ready \(pid: \d+\)"
TERM = str(int(signal.SIGTERM))
USR1 = str(int(signal.SIGUSR1))
STAYS = shlex.join(["exec", *PRINT_SIGNALS])  # a run that stays up until stopped


def sidecar(start: StartContainer, shared: Path, *args: str) -> Container:
    """``args``: options, ``--``, COMMAND."""
    return start("sidecar", "--dir", shared, *args)


def finish_main(shared: Path) -> None:
    """The main completes (as a script's ``touch main.done`` would say)."""
    (shared / "main.done").write_text("0\n")


def restart_delays(container: Container) -> list[float]:
    return [e["delay"] for e in logged(container, "child_restarting")]


# --- --restart ---------------------------------------------------------------------


def test_on_failure_restarts_a_crashing_child_with_backoff(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    command = nth_run(tmp_path / "runs", "exit 1", "exit 1", STAYS)
    side = sidecar(start, shared, "--restart", "on-failure", "--", *command)

    side.expect("run 3")
    side.expect(READY)
    assert restart_delays(side) == [1.0, 2.0]
    restarting = logged(side, "child_restarting")
    assert [e["restart"] for e in restarting] == [1, 2]
    assert {e["reason"] for e in restarting} == {"Error"}
    assert {e["level"] for e in restarting} == {"warning"}  # a crash is worth a look
    crashes = logged(side, "child_exited")
    assert [(e["exit_code"], e["before_completion"]) for e in crashes] == [(1, True), (1, True)]
    assert {e["level"] for e in crashes} == {"warning"}
    assert [e["restarts"] for e in logged(side, "child_started")] == [0, 1, 2]
    assert side.running

    finish_main(shared)
    assert side.wait() == 0
    assert side.rest_of_output() == [TERM]
    assert read_json(shared / "sidecar.done")["reason"] == "Stopped"
    assert read_json(shared / "sidecar.started")["attempt"] == 1  # the container's, not the child's


@pytest.mark.parametrize("code", [0, 5])
def test_restart_never_exits_with_the_childs_status(
    start: StartContainer, shared: Path, code: int
) -> None:
    side = sidecar(start, shared, "--restart", "never", "--", "sh", "-c", f"exit {code}")

    assert side.wait() == code
    assert not has_event(side, "child_restarting")
    assert side.event("child_exited")["before_completion"] is True
    done = read_json(shared / "sidecar.done")
    assert done["name"] == "sidecar"
    assert done["exit_code"] == code
    assert done["reason"] == ("Completed" if code == 0 else "Error")
    assert side.event("supervisor_exiting")["exit_code"] == code
    assert not (shared / "main.done").exists()


@pytest.mark.parametrize("flags", [("--restart", "always"), ()], ids=["always", "default"])
def test_restart_always_restarts_a_child_that_exits_zero(
    start: StartContainer, shared: Path, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    """``always`` is the default, as a native sidecar is restarted whatever its status."""
    command = nth_run(tmp_path / "runs", "exit 0", STAYS)
    side = sidecar(start, shared, *flags, "--", *command)

    side.expect("run 2")
    side.expect(READY)
    restarting = side.event("child_restarting")
    assert restarting["delay"] == 1.0
    assert restarting["reason"] == "Completed"
    assert logged(side, "child_exited")[0]["exit_code"] == 0

    finish_main(shared)
    assert side.wait() == 0
    assert side.rest_of_output() == [TERM]


def test_on_failure_does_not_restart_a_child_that_exits_zero(
    start: StartContainer, shared: Path
) -> None:
    side = sidecar(start, shared, "--restart", "on-failure", "--", "sh", "-c", "echo once")

    assert side.wait() == 0
    assert side.rest_of_output() == ["once"]
    assert not has_event(side, "child_restarting")
    assert len(logged(side, "child_started")) == 1
    done = read_json(shared / "sidecar.done")
    assert (done["exit_code"], done["reason"]) == (0, "Completed")


def test_completion_during_backoff_stops_without_starting_the_child(
    start: StartContainer, shared: Path
) -> None:
    side = sidecar(start, shared, "--", "sh", "-c", "echo run; exit 1")
    # The second crash leaves a 2 s back-off pending: completion arrives inside it.
    wait_for_event(side, "child_restarting", count=2)
    finish_main(shared)

    assert side.wait() == 0
    side.rest_of_output()
    assert side.output.count("run") == 2
    assert len(logged(side, "child_started")) == 2  # the pending restart never happened
    assert restart_delays(side) == [1.0, 2.0]
    assert not has_event(side, "stop_requested")  # nothing left to stop
    assert before(side, "child_restarting", "completion_detected")
    done = read_json(shared / "sidecar.done")
    assert done["exit_code"] == 0
    assert done["reason"] == "Stopped"
    assert done["child_exit_code"] is None


# --- the liveness lock -------------------------------------------------------------


@pytest.mark.parametrize("role", ["main", "sidecar"])
def test_lock_descriptor_is_not_inherited_by_the_child(
    start: StartContainer, shared: Path, role: str
) -> None:
    command = "ls -l /proc/$$/fd; echo listed; exec sleep 600"
    container = start(role, "--dir", shared, "--", "sh", "-c", command)

    container.expect("^listed$")
    listing = container.output
    assert any(" 0 -> " in line for line in listing), listing  # the listing worked
    assert lock_is_held(shared / f"{role}.lock")  # while the wrapper holds it
    assert not [line for line in listing if ".lock" in line]
    if role == "main":
        container.signal(signal.SIGTERM)  # forwarded: sleep dies of it
        assert container.wait() == 128 + signal.SIGTERM
    else:
        finish_main(shared)
        assert container.wait() == 0
    assert not lock_is_held(shared / f"{role}.lock")


@pytest.fixture
def orphans() -> Iterator[list[int]]:
    """Pids of processes a test lets outlive their wrapper; killed at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        try:  # re-parented to the test process (a child subreaper): reap it
            os.waitpid(pid, 0)
        except ChildProcessError:
            continue


def test_lock_is_free_once_the_main_wrapper_dies_while_its_child_lives(
    start: StartContainer, shared: Path, orphans: list[int]
) -> None:
    side = sidecar(start, shared, "--", *PRINT_SIGNALS)
    side.expect(READY)
    # No namespace: the child must survive its wrapper's death.
    primary = start(
        "main",
        "--dir",
        shared,
        "--",
        "sh",
        "-c",
        'echo "child $$"; exec sleep 600',
        namespace=False,
    )
    child = int(primary.expect(r"^child (\d+)$").group(1))
    orphans.append(child)
    assert lock_is_held(shared / "main.lock")

    os.kill(primary.proc.pid, signal.SIGKILL)
    assert primary.wait() == -signal.SIGKILL
    os.kill(child, 0)  # the child lives on, and keeps no lock
    wait_until(lambda: not lock_is_held(shared / "main.lock"), what="main.lock released")

    assert side.wait() == 0
    detected = side.event("completion_detected")
    assert (detected["source"], detected["failed"], detected["exit_code"]) == ("lock", True, None)
    assert not (shared / "main.done").exists()


# --- several mains ------------------------------------------------------------------


def test_wait_mode_all_stops_after_both_mains(start: StartContainer, shared: Path) -> None:
    side = sidecar(start, shared, "--wait-for", "a", "--wait-for", "b", "--", *PRINT_SIGNALS)
    side.expect(READY)
    mains = {
        name: start(
            "main", "--dir", shared, "--name", name, "--", *PRINT_SIGNALS, "--exit-on", "USR1"
        )
        for name in ("a", "b")
    }
    for container in mains.values():
        container.expect(READY)

    mains["a"].signal(signal.SIGUSR1)  # forwarded: a exits 0
    assert mains["a"].wait() == 0
    assert wait_for_event(side, "completion_detected")[0]["target"] == "a"
    assert side.running
    side.signal(signal.SIGUSR1)  # the sidecar's child still runs
    side.expect(f"^{USR1}$")
    assert not has_event(side, "stop_requested")

    mains["b"].signal(signal.SIGUSR1)
    assert mains["b"].wait() == 0
    assert side.wait() == 0
    assert [e["target"] for e in logged(side, "completion_detected")] == ["a", "b"]
    assert side.rest_of_output() == [TERM]


def test_wait_mode_any_stops_after_the_first_main(start: StartContainer, shared: Path) -> None:
    side = sidecar(
        start,
        shared,
        "--wait-for",
        "a",
        "--wait-for",
        "b",
        "--wait-mode",
        "any",
        "--",
        *PRINT_SIGNALS,
    )
    side.expect(READY)
    mains = {
        name: start(
            "main", "--dir", shared, "--name", name, "--", *PRINT_SIGNALS, "--exit-on", "USR1"
        )
        for name in ("a", "b")
    }
    for container in mains.values():
        container.expect(READY)

    mains["a"].signal(signal.SIGUSR1)
    assert mains["a"].wait() == 0
    assert side.wait() == 0
    assert [e["target"] for e in logged(side, "completion_detected")] == ["a"]
    assert side.rest_of_output() == [TERM]
    assert mains["b"].running  # b goes on; the sidecar did not wait for it

    mains["b"].signal(signal.SIGUSR1)
    assert mains["b"].wait() == 0
