"""Hangs seen in the field, each with real processes: terminals, stopped children,
reruns on a stale directory, mains that never got to write anything.

A terminal is a real pseudo-terminal from ``script``, which runs the supervisor
as the session leader of a new session with the pty as its controlling terminal,
as ``docker run -it`` and ``kubectl run -it`` do.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import StartContainer
from tests.kubelet import wait_for_event
from tests.support import SUPERVISOR, TIMEOUT, read_json

READY = r"ready \(pid: (\d+)\)"
READS_A_LINE = 'read line; echo "got $line"; exit 3'


def on_a_terminal(args: list[str], typed: bytes) -> tuple[int, str]:
    """Run the supervisor with a pty as its controlling terminal; type ``typed``."""
    if shutil.which("script") is None:
        pytest.skip("needs script(1) for a pseudo-terminal")
    command = shlex.join([*SUPERVISOR, *args])
    proc = subprocess.Popen(
        ["script", "--quiet", "--return", "--command", command, "/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = proc.communicate(typed, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"hung on a terminal: {output.decode(errors='replace')}") from None
    return proc.returncode, output.decode(errors="replace")


@pytest.mark.timeout(60)
def test_main_on_a_terminal_gives_command_the_terminal(shared: Path) -> None:
    """COMMAND reads from the terminal: it must get it, not stop on SIGTTIN."""
    code, output = on_a_terminal(
        ["main", "--log-format", "json", "--dir", str(shared), "--", "sh", "-c", READS_A_LINE],
        b"hello\n",
    )
    assert code == 3, output
    assert "got hello" in output
    assert read_json(shared / "main.done")["exit_code"] == 3


@pytest.mark.timeout(60)
def test_sidecar_on_a_terminal_gives_command_the_terminal(shared: Path) -> None:
    code, output = on_a_terminal(
        ["sidecar", "--log-format", "json", "--dir", str(shared), "--restart", "never",
         "--", "sh", "-c", READS_A_LINE],
        b"hello\n",
    )  # fmt: skip
    assert code == 3, output
    assert "got hello" in output
    assert "child_stopped" not in output


STOPS_ITSELF = (
    'trap "echo term; exit 0" TERM; echo "ready (pid: $$)"; kill -STOP $$; echo resumed; exit 5'
)


@pytest.mark.timeout(60)
def test_a_stopped_command_is_reported_and_continued_by_a_forwarded_sigterm(
    start: StartContainer, shared: Path
) -> None:
    """COMMAND stops itself: the main says so; the SIGTERM it forwards also
    continues it, so that it acts on it rather than wait stopped for a SIGKILL."""
    main = start("main", "--dir", shared, "--", "sh", "-c", STOPS_ITSELF)
    pid = int(main.expect(READY).group(1))
    stopped = wait_for_event(main, "child_stopped")[0]
    assert (stopped["pid"], stopped["signal"]) == (pid, "SIGSTOP")
    assert stopped["level"] == "warning"

    main.signal(signal.SIGTERM)

    assert main.wait() == 0
    assert main.rest_of_output() == ["term"]  # it ran its trap; it never got to "resumed"
    assert read_json(shared / "main.done")["exit_code"] == 0
