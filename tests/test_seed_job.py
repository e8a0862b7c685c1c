"""The seed's Job, end to end: a main that does five tasks and a sidecar that logs forever.

Each container is a real supervisor in its own PID namespace (where allowed),
the two sharing one directory as the emptyDir.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import StartContainer
from tests.support import PRINT_SIGNALS, Container, read_json, wait_until

MAIN_TASKS = (
    'echo "main container is starting..."; '
    'for i in 1 2 3 4 5; do echo "main task $i/5"; sleep 0.1; done; '
    'echo "main container completed tasks"; exit {code}'
)
SIDECAR_LOOP = 'echo "sidecar starting"; while true; do echo "collecting logs"; sleep 0.2; done'


def sidecar(
    start: StartContainer, shared: Path, *extra: str, command: list[str] | None = None
) -> Container:
    cmd = command or ["sh", "-c", SIDECAR_LOOP]
    return start("sidecar", "--dir", shared, *extra, "--", *cmd)


def main(start: StartContainer, shared: Path, code: int = 0, *extra: str) -> Container:
    return start("main", "--dir", shared, *extra, "--", "sh", "-c", MAIN_TASKS.format(code=code))


@pytest.mark.parametrize("code", [0, 3])
def test_job_completes_and_sidecar_exits_zero(
    start: StartContainer, shared: Path, code: int
) -> None:
    side = sidecar(start, shared)
    side.expect("sidecar starting")
    primary = main(start, shared, code)

    assert primary.wait() == code
    assert side.wait() == 0
    done = read_json(shared / "main.done")
    assert done["exit_code"] == code
    assert done["reason"] == ("Completed" if code == 0 else "Error")
    detected = side.event("completion_detected")
    assert detected["target"] == "main"
    assert detected["exit_code"] == code
    assert read_json(shared / "sidecar.done")["exit_code"] == 0


def test_touched_marker_stops_the_sidecar(start: StartContainer, shared: Path) -> None:
    side = sidecar(start, shared)
    side.expect("sidecar starting")
    (shared / "main.done").touch()
    assert side.wait() == 0
    assert side.event("completion_detected")["exit_code"] is None


def test_marker_there_before_the_sidecar_starts(start: StartContainer, shared: Path) -> None:
    (shared / "main.done").write_text("0\n")
    side = sidecar(start, shared, command=["sh", "-c", "echo started; sleep 600"])
    assert side.wait() == 0
    assert side.rest_of_output() == []  # COMMAND never started
    assert side.event("already_complete")


def test_child_ignoring_sigterm_is_killed_with_its_grandchildren(
    start: StartContainer, shared: Path
) -> None:
    side = sidecar(
        start,
        shared,
        "--grace-period",
        "0.5",
        command=[*PRINT_SIGNALS, "--ignore", "TERM", "--grandchildren", "2"],
    )
    side.expect(r"ready \(pid")
    (shared / "main.done").write_text("")
    assert side.wait() == 0
    assert str(int(signal.SIGTERM)) in side.rest_of_output()
    assert side.event("grace_period_expired")


def test_sigterm_before_completion_holds_until_the_main_is_done(
    start: StartContainer, shared: Path
) -> None:
    side = sidecar(
        start, shared, "--term-hold", "60", command=[*PRINT_SIGNALS, "--exit-on", "TERM"]
    )
    side.expect(r"ready \(pid")
    side.signal(signal.SIGTERM)
    wait_until(
        lambda: any(e["event"] == "term_hold_started" for e in side.events()),
        what="term_hold_started",
    )
    assert side.running
    (shared / "main.done").write_text("0")
    assert side.wait() == 0
    assert side.rest_of_output() == [str(int(signal.SIGTERM))]  # exactly one, from the stop
