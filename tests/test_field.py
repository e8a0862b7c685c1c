"""Hangs seen in the field, each with real processes: terminals, stopped children,
reruns on a stale directory, mains that never got to write anything.

A terminal is a real pseudo-terminal from ``script``, which runs the supervisor
as the session leader of a new session with the pty as its controlling terminal,
as ``docker run -it`` and ``kubectl run -it`` do.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psutil
import pytest

from tests.conftest import StartContainer
from tests.http_server import RecordingServer
from tests.kubelet import wait_for_event
from tests.support import PRINT_SIGNALS, SUPERVISOR, TIMEOUT, Container, read_json, wait_until

READY = r"ready \(pid: (\d+)\)"
READS_A_LINE = 'read line; echo "got $line"; exit 3'


def on_a_terminal(
    args: list[str], typed: bytes, typed_when_ready: bytes | None = None
) -> tuple[int, str]:
    """Run the supervisor with a pty as its controlling terminal; type ``typed``, and
    ``typed_when_ready`` once the supervisor logged ``child_ready`` (by then it has
    handed COMMAND the terminal)."""
    if shutil.which("script") is None:
        pytest.skip("needs script(1) for a pseudo-terminal")
    command = shlex.join([*SUPERVISOR, *args])
    proc = subprocess.Popen(
        ["script", "--quiet", "--return", "--command", command, "/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    seen = b""
    try:
        if typed_when_ready is not None:
            deadline = time.monotonic() + TIMEOUT
            while b'"child_ready"' not in seen:
                remaining = deadline - time.monotonic()
                readable, _, _ = select.select([proc.stdout], [], [], max(0.0, remaining))
                if not readable:
                    raise AssertionError(f"COMMAND never got ready: {seen!r}")
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
            proc.stdin.write(typed_when_ready)
            proc.stdin.flush()
        output, _ = proc.communicate(typed, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"hung on a terminal: {output.decode(errors='replace')}") from None
    finally:
        if proc.poll() is None:  # a failed wait for readiness: nothing is left running
            proc.kill()
            proc.communicate()
    return proc.returncode, (seen + output).decode(errors="replace")


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


# --- a rerun on a reused directory ---------------------------------------------------


@pytest.mark.timeout(90)
def test_ready_left_by_a_killed_sidecar_does_not_open_the_gate(
    start: StartContainer, shared: Path
) -> None:
    """A sidecar killed hard leaves its ``.ready``; a main gated on it must not
    take that for a sidecar that is ready now."""
    side = start("sidecar", "--dir", shared, "--name", "proxy", "--", *PRINT_SIGNALS)
    side.expect(READY)
    wait_until((shared / "proxy.ready").exists, what="proxy.ready")
    side.kill()  # SIGKILL: no record, the .ready stays
    side.wait()
    assert (shared / "proxy.ready").exists()

    main = start(
        "main", "--dir", shared, "--wait-ready", "proxy", "--ready-timeout", "1",
        "--", "sh", "-c", "echo ran",
    )  # fmt: skip
    assert main.wait() == 1
    assert main.rest_of_output() == []  # COMMAND never ran
    assert read_json(shared / "main.done")["reason"] == "ReadyTimeout"
    waited = main.event("waiting_for_probe")
    assert "gone" in waited["last"]


def test_a_sidecar_that_ends_takes_its_ready_with_it(start: StartContainer, shared: Path) -> None:
    side = start("sidecar", "--dir", shared, "--", *PRINT_SIGNALS)
    side.expect(READY)
    wait_until((shared / "sidecar.ready").exists, what="sidecar.ready")
    main = start("main", "--dir", shared, "--", "true")
    assert main.wait() == 0
    assert side.wait() == 0
    assert not (shared / "sidecar.ready").exists()


def test_a_rerun_on_a_stale_directory_says_what_it_found(
    start: StartContainer, shared: Path
) -> None:
    main = start("main", "--dir", shared, "--", "true")
    assert main.wait() == 0

    side = start("sidecar", "--dir", shared, "--", *PRINT_SIGNALS)
    assert side.wait() == 0
    assert side.rest_of_output() == []  # COMMAND was not started
    found = side.event("already_complete")
    assert found["found"][0]["record"] == str(shared / "main.done")
    assert found["found"][0]["age_s"] >= 0
    assert "fresh" in found["hint"]


# --- a main whose wrapper never started ---------------------------------------------


def test_a_main_that_never_starts_ends_the_sidecar_after_the_start_timeout(
    start: StartContainer, shared: Path
) -> None:
    """The main's entrypoint could not even be executed: no record, no lock. The
    sidecar's bound ends the wait, as a failed completion."""
    side = start(
        "sidecar", "--dir", shared, "--start-timeout", "1", "--exit-code", "main",
        "--", *PRINT_SIGNALS,
    )  # fmt: skip
    side.expect(READY)
    assert side.wait() == 1  # --exit-code main: a failure with no status reads as 1
    assert side.rest_of_output() == [str(int(signal.SIGTERM))]
    found = side.event("completion_detected")
    assert (found["reason"], found["failed"], found["level"]) == ("NeverStarted", True, "warning")


def test_a_main_with_a_typo_in_its_flags_ends_the_sidecar(
    start: StartContainer, shared: Path
) -> None:
    """``main --grace-perod 3``: exit 2, and the failed record the sidecar ends on."""
    side = start("sidecar", "--dir", shared, "--exit-code", "main", "--", *PRINT_SIGNALS)
    side.expect(READY)
    main = start("main", "--dir", shared, "--grace-perod", "3", "--", "true")
    assert main.wait() == 2
    assert side.wait() == 2
    found = side.event("completion_detected")
    assert (found["reason"], found["exit_code"]) == ("UsageError", 2)


# --- misconfiguration that speaks up ---------------------------------------------------


def test_a_refused_quit_call_is_a_warning(start: StartContainer, shared: Path) -> None:
    with RecordingServer() as server:
        server.status["/quitquitquit"] = 404
        url = f"http://127.0.0.1:{server.port}/quitquitquit"
        main = start("main", "--dir", shared, "--quit-http", url, "--", "true")
        assert main.wait() == 0
    sent = main.event("quit_http_sent")
    assert (sent["level"], sent["status"]) == ("warning", 404)
    assert "refused" in sent["hint"]


def test_linkerd_s_disabled_shutdown_endpoint_names_the_annotation(
    start: StartContainer, shared: Path
) -> None:
    """The linkerd preset's quit URL answered 404: the hint names the annotation."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(RecordingServer(port=4191))
        except OSError:
            pytest.skip("port 4191 is taken on this machine")
        server.status["/shutdown"] = 404
        main = start(
            "main", "--dir", shared, "--quit-http", "http://127.0.0.1:4191/shutdown",
            "--", "true",
        )  # fmt: skip
        assert main.wait() == 0
    sent = main.event("quit_http_sent")
    assert sent["level"] == "warning"
    assert "config.linkerd.io/proxy-admin-shutdown" in sent["hint"]


def test_the_first_lines_say_the_effective_configuration(
    start: StartContainer, shared: Path
) -> None:
    side = start(
        "sidecar", "--dir", shared, "--wait-for", "mian", "--term-hold", "7",
        "--start-timeout", "1", "--", *PRINT_SIGNALS,
    )  # fmt: skip
    assert side.wait() == 0
    first = side.events()[0]
    assert first["event"] == "supervisor_started"
    assert first["waits_for"] == ["mian"]  # a typo is visible at a glance
    assert (first["term_hold"], first["grace_period"], first["dir"]) == (7.0, 10.0, str(shared))
    assert first["stop_actions"] == ["SIGTERM"]
    assert "version" in first

    main = start("main", "--dir", shared, "--wait-ready", "sidecar", "--ready-timeout", "1",
                 "--", "true")  # fmt: skip
    assert main.wait() == 1
    first = main.events()[0]
    assert first["event"] == "supervisor_started"
    assert first["gates"] == [f"ready {shared / 'sidecar.ready'}"]


# --- outside a PID namespace -----------------------------------------------------------


@pytest.mark.timeout(90)
def test_command_dies_with_a_wrapper_killed_outside_a_pid_namespace(
    start: StartContainer, shared: Path
) -> None:
    """compose ``init: true``, tini in front, a local run: the wrapper is not PID 1 and
    is SIGKILLed; its COMMAND must not run on forever, and the records say it died."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) for PR_SET_PDEATHSIG")
    side = start("sidecar", "--dir", shared, "--", *PRINT_SIGNALS)
    side.expect(READY)
    main = start("main", "--dir", shared, "--", *PRINT_SIGNALS, namespace=False)
    child = int(main.expect(READY).group(1))
    assert psutil.Process(child).cmdline()[1:] == PRINT_SIGNALS[1:]

    main.signal(signal.SIGKILL)

    assert main.wait() == -signal.SIGKILL
    wait_until(lambda: not psutil.pid_exists(child) or _zombie(child), what="COMMAND to die")
    assert side.wait() == 0
    found = side.event("completion_detected")
    assert (found["reason"], found["failed"]) == ("DiedWithoutRecord", True)


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.timeout(90)
def test_a_daemonised_worker_does_not_outlive_a_main_outside_a_pid_namespace(
    start: StartContainer, shared: Path
) -> None:
    """COMMAND leaves a worker in a session of its own, which has a child of its own,
    and exits: the main (not PID 1) stops both, the worker's child included."""
    daemon = 'setsid sh -c "sleep 600 & echo worker-up; wait" & sleep 0.2; echo parent-done'
    main = start("main", "--dir", shared, "--", "sh", "-c", daemon, namespace=False)
    assert main.wait() == 0
    killed = main.event("stray_processes_killed")["pids"]
    assert len(killed) >= 2  # the worker, then its sleep, re-parented in turn
    for pid in killed:
        assert wait_until(partial(_zombie, pid), what=f"stray {pid} to die")


@pytest.mark.timeout(60)
def test_ctrl_c_on_a_terminal_ends_the_sidecar_instead_of_a_restart(shared: Path) -> None:
    """The terminal's Ctrl-C reaches COMMAND (its group has the terminal); the person
    at the terminal wants the sidecar to end, whatever --restart says.

    COMMAND execs ``sleep``: a shell that forks it instead (dash 0.5.12) drops a
    SIGINT that lands while it forks, about 1 in 200 times, with both processes left
    running, and the Ctrl-C here comes early."""
    code, output = on_a_terminal(
        ["sidecar", "--log-format", "json", "--dir", str(shared), "--restart", "always",
         "--", "sh", "-c", 'echo "ready (pid: $$)"; exec sleep 600'],
        b"",
        typed_when_ready=b"\x03",
    )  # fmt: skip
    assert code == 130, output
    assert '"event": "interrupted"' in output
    assert '"child_restarting"' not in output


def test_the_term_hold_says_a_second_signal_stops_at_once(
    start: StartContainer, shared: Path
) -> None:
    side = start("sidecar", "--dir", shared, "--", *PRINT_SIGNALS)
    side.expect(READY)
    side.signal(signal.SIGINT)
    hold = wait_for_event(side, "term_hold_started")[0]
    assert "second" in hold["then"]
    side.signal(signal.SIGINT)
    assert side.wait() == 0
    assert side.event("stop_signal_received")["signal"] == "SIGINT"


# --- records left by a different user ---------------------------------------------------

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _needs_another_user() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a container as another user")


@pytest.mark.timeout(90)
def test_a_non_root_sidecar_sees_a_root_main_complete(
    start: StartContainer, launch: Callable[..., Container], reachable_dir: Path
) -> None:
    """The main (root) made the shared dir, mode 0755: the sidecar (another uid) cannot
    write its own records there, says so once with what to change, and still sees
    the main's completion through its lock and record."""
    _needs_another_user()
    shared = reachable_dir / "volume"
    main = start("main", "--dir", shared, "--", *PRINT_SIGNALS, "--exit-on", "USR2")
    main.expect(READY)
    side = launch(
        [*NOBODY, *SUPERVISOR, "sidecar", "--dir", str(shared), "--", "sh", "-c",
         'trap "exit 0" TERM; echo "ready (pid: $$)"; sleep 600 & wait'],
        namespace=True,
    )  # fmt: skip
    side.expect(READY)
    unavailable = side.event("lock_unavailable")
    assert "fsGroup" in unavailable["hint"]
    main.signal(signal.SIGUSR2)
    assert main.wait() == 0
    assert side.wait() == 0
    assert side.event("completion_detected")["exit_code"] == 0


@pytest.mark.timeout(90)
def test_a_main_that_cannot_write_the_dir_says_why_and_the_job_still_ends(
    start: StartContainer, launch: Callable[..., Container], reachable_dir: Path
) -> None:
    """The reverse: a root sidecar made the dir first (0755), the main runs as another
    user and cannot write a single record. It says why in one line naming what to
    change; the sidecar's --start-timeout still ends the Job."""
    _needs_another_user()
    shared = reachable_dir / "volume"
    side = start("sidecar", "--dir", shared, "--start-timeout", "2", "--", *PRINT_SIGNALS)
    side.expect(READY)
    main = launch(
        [*NOBODY, *SUPERVISOR, "main", "--dir", str(shared), "--", "true"], namespace=True
    )
    assert main.wait() == 0
    hint = main.event("lock_unavailable")["hint"]
    assert "uid 0" in hint
    assert "fsGroup" in hint
    assert side.wait() == 0
    assert side.event("completion_detected")["reason"] == "NeverStarted"


@pytest.mark.timeout(60)
def test_a_dir_behind_a_parent_this_user_cannot_enter_is_one_line_not_a_traceback(
    launch: Callable[..., Container], tmp_path: Path
) -> None:
    _needs_another_user()
    hidden = tmp_path / "volume"  # tmp_path is root's, mode 0700
    side = launch(
        [*NOBODY, *SUPERVISOR, "sidecar", "--dir", str(hidden), "--marker", "/nonexistent",
         "--", "sh", "-c", 'echo "ready (pid: $$)"; exit 0'],
        namespace=True,
    )  # fmt: skip
    side.expect(READY)
    unavailable = side.event("dir_unavailable")
    assert unavailable["error"] == "Permission denied"
    assert "Traceback" not in side.log_path.read_text()
