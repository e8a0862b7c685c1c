"""The ``main`` role as real processes: exit statuses, records, signals, leftovers.

Each main is a real supervisor in its own PID namespace (where allowed), so it
is PID 1 and meets the PID-1 signal rules; the tests that need real pids of
what COMMAND leaves behind run it without a namespace instead.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import StartContainer
from tests.support import (
    PRINT_SIGNALS,
    SUPERVISOR,
    TIMEOUT,
    Container,
    can_unshare,
    kill_leftovers,
    read_json,
    wait_until,
)

ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
READY = r"ready \(pid: \d+\)"


def two_in_one_group(sibling_output: Path) -> list[str]:
    """COMMAND: print_signals, and a sibling in its process group printing to a file.

    The sibling only hears what is sent to the whole group; it has a file of its
    own because two writers on one pipe can interleave their lines.
    """
    script = 'out=$1; shift; "$@" > "$out" & exec "$@"'
    return ["sh", "-c", script, "sh", str(sibling_output), *PRINT_SIGNALS]


def file_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def run_main(start: StartContainer, shared: Path, *command: str) -> Container:
    return start("main", "--dir", shared, "--", *command)


def assert_done_record(
    record: dict[str, Any],
    *,
    exit_code: int | None,
    signum: int | None,
    reason: str,
    attempt: int = 1,
) -> None:
    assert record["name"] == "main"
    assert record["exit_code"] == exit_code
    assert record["signal"] == signum
    assert record["reason"] == reason
    assert record["attempt"] == attempt
    assert ISO_TIME.fullmatch(record["started_at"]), record
    assert ISO_TIME.fullmatch(record["finished_at"]), record
    assert record["started_at"] <= record["finished_at"]


# --- exit statuses -----------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_exit_status_is_the_commands(start: StartContainer, shared: Path, code: int) -> None:
    main = run_main(start, shared, "sh", "-c", f"exit {code}")

    assert main.wait() == code
    assert_done_record(
        read_json(shared / "main.done"),
        exit_code=code,
        signum=None,
        reason="Completed" if code == 0 else "Error",
    )
    assert main.event("child_exited")["exit_code"] == code
    assert main.event("supervisor_exiting")["exit_code"] == code


@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV, signal.SIGUSR1],
    ids=lambda s: s.name,
)
def test_death_by_signal_is_128_plus_n(
    start: StartContainer, shared: Path, signum: signal.Signals
) -> None:
    # The shell kills itself; no core file for SIGSEGV.
    main = run_main(start, shared, "sh", "-c", f"ulimit -c 0; kill -s {signum.name[3:]} $$")

    assert main.wait() == 128 + signum
    assert_done_record(
        read_json(shared / "main.done"), exit_code=None, signum=int(signum), reason="Signaled"
    )
    exited = main.event("child_exited")
    assert exited["exit_code"] == 128 + signum
    assert exited["signal"] == signum.name


def assert_one_line_error(container: Container, command: str) -> None:
    """stderr is the JSON log only: one error event naming COMMAND, no traceback."""
    text = container.log_path.read_text()
    assert "Traceback" not in text
    lines = text.splitlines()
    assert all(line.startswith("{") for line in lines), text
    errors = [json.loads(line) for line in lines if json.loads(line)["level"] == "error"]
    assert len(errors) == 1, text
    assert errors[0]["event"] == "child_start_failed"
    assert command in errors[0]["error"]


def test_command_not_found_is_127(start: StartContainer, shared: Path) -> None:
    command = "sidecar-supervisor-test-no-such-command"
    main = run_main(start, shared, command, "--flag")

    assert main.wait() == 127
    assert_done_record(
        read_json(shared / "main.done"), exit_code=127, signum=None, reason="NotFound"
    )
    assert_one_line_error(main, command)


def test_command_not_executable_is_126(start: StartContainer, shared: Path, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)  # no x bit: even root may not execute it
    main = run_main(start, shared, str(script))

    assert main.wait() == 126
    assert_done_record(
        read_json(shared / "main.done"), exit_code=126, signum=None, reason="NotExecutable"
    )
    assert_one_line_error(main, str(script))


# --- signals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "ends_it"),
    [
        pytest.param(signal.SIGTERM, True, id="SIGTERM"),
        pytest.param(signal.SIGHUP, True, id="SIGHUP"),
        pytest.param(signal.SIGUSR1, False, id="SIGUSR1"),
        pytest.param(signal.SIGWINCH, False, id="SIGWINCH"),
    ],
)
def test_signal_is_forwarded(
    start: StartContainer, shared: Path, signum: signal.Signals, ends_it: bool
) -> None:
    main = run_main(start, shared, *PRINT_SIGNALS)
    main.expect(READY)

    main.signal(signum)
    main.expect(rf"^{int(signum)}$")
    if not ends_it:
        assert main.running
        main.signal(signal.SIGTERM)
        main.expect(rf"^{int(signal.SIGTERM)}$")
        signum = signal.SIGTERM

    assert main.wait() == 128 + signum
    assert read_json(shared / "main.done")["signal"] == signum


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGWINCH], ids=lambda s: s.name)
def test_signal_reaches_the_whole_process_group(
    start: StartContainer, shared: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    sibling = tmp_path / "sibling.out"
    main = run_main(start, shared, *two_in_one_group(sibling))
    main.expect(READY)
    wait_until(lambda: any(re.match(READY, line) for line in file_lines(sibling)), what="sibling")

    main.signal(signum)
    main.expect(rf"^{int(signum)}$")
    wait_until(lambda: str(int(signum)) in file_lines(sibling), what=f"{signum.name} in sibling")

    main.signal(signal.SIGTERM)
    assert main.wait() == 143


def test_the_main_supervisor_is_one_thread_while_command_runs(
    start: StartContainer, shared: Path
) -> None:
    """Nothing runs beside the loop: the kernel must wake every thread of a SIGKILLed
    main before it closes its files, and the sidecars wait for that lock's release."""
    main = run_main(start, shared, *PRINT_SIGNALS)
    main.expect(READY)

    assert psutil.Process(main.supervisor_pid).num_threads() == 1

    main.signal(signal.SIGTERM)
    assert main.wait() == 143


def test_sigurg_is_not_forwarded(start: StartContainer, shared: Path) -> None:
    main = run_main(start, shared, *PRINT_SIGNALS)
    main.expect(READY)

    main.signal(signal.SIGURG)
    main.signal(signal.SIGUSR1)
    main.expect(rf"^{int(signal.SIGUSR1)}$")
    # Had SIGURG (23) been relayed, it reached the child before SIGUSR1, and a
    # child runs pending handlers in ascending order: 23 comes before 28.
    main.signal(signal.SIGWINCH)
    main.expect(rf"^{int(signal.SIGWINCH)}$")
    main.signal(signal.SIGTERM)

    assert main.wait() == 143
    main.rest_of_output()
    numbers = [line for line in main.output if line.isdigit()]
    assert numbers == [str(int(s)) for s in (signal.SIGUSR1, signal.SIGWINCH, signal.SIGTERM)]


def caught_signals(pid: int) -> int:
    """The mask of signals ``pid`` has handlers for (``SigCgt`` in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigCgt line for {pid}")


def test_signal_before_the_child_exists_is_not_lost(start: StartContainer, shared: Path) -> None:
    """Holding the main's lock keeps the supervisor from starting COMMAND while we signal it."""
    lock = os.open(shared / "main.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # sleep keeps SIGUSR1's default action: a relayed SIGUSR1 kills it.
        main = run_main(start, shared, "sleep", "600")
        supervisor = main.supervisor_pid
        bit = 1 << (signal.SIGUSR1 - 1)
        wait_until(lambda: caught_signals(supervisor) & bit, what="the supervisor's handlers")
        assert psutil.Process(supervisor).children() == []
        main.signal(signal.SIGUSR1)
        assert psutil.Process(supervisor).children() == []  # still no child
    finally:
        os.close(lock)  # the supervisor takes the lock and starts COMMAND

    assert main.wait() == 128 + signal.SIGUSR1
    assert read_json(shared / "main.done")["signal"] == signal.SIGUSR1


# --- records -------------------------------------------------------------------


def test_new_attempt_removes_the_stale_done(start: StartContainer, shared: Path) -> None:
    first = run_main(start, shared, "sh", "-c", "exit 1")
    assert first.wait() == 1
    assert read_json(shared / "main.started")["attempt"] == 1
    assert read_json(shared / "main.done")["attempt"] == 1

    second = run_main(start, shared, *PRINT_SIGNALS)
    second.expect(READY)
    assert read_json(shared / "main.started")["attempt"] == 2
    assert not (shared / "main.done").exists()

    second.signal(signal.SIGTERM)
    assert second.wait() == 143
    assert_done_record(
        read_json(shared / "main.done"),
        exit_code=None,
        signum=int(signal.SIGTERM),
        reason="Signaled",
        attempt=2,
    )


def hidden_files(shared: Path) -> list[str]:
    return sorted(p.name for p in shared.iterdir() if p.name.startswith("."))


PREPARED = re.compile(r"\.main\.done\.\d+\.\d+\.tmp")


def main_with_its_done_prepared(
    start: StartContainer, shared: Path, stale: str = ""
) -> tuple[Container, str]:
    """A main whose COMMAND runs, and the name of the ``.done`` file it made ahead
    (not ``stale``, a dead wrapper's)."""
    main = run_main(start, shared, *PRINT_SIGNALS)
    main.expect(READY)

    def prepared() -> list[str]:
        return [name for name in hidden_files(shared) if PREPARED.fullmatch(name)]

    wait_until(lambda: prepared() and stale not in prepared(), what="the prepared .done")
    [name] = prepared()
    return main, name


def test_the_done_file_is_made_while_command_runs_and_renamed_at_its_end(
    start: StartContainer, shared: Path
) -> None:
    """Creating a file is the slowest step of a record, and the sidecars wait for
    this one: it is created while COMMAND runs, filled and renamed at the end."""
    main, prepared = main_with_its_done_prepared(start, shared)
    assert hidden_files(shared) == [prepared]
    inode = (shared / prepared).stat().st_ino
    assert not (shared / "main.done").exists()

    main.signal(signal.SIGTERM)

    assert main.wait() == 143
    assert hidden_files(shared) == []
    assert (shared / "main.done").stat().st_ino == inode
    assert read_json(shared / "main.done")["signal"] == signal.SIGTERM


def test_a_dead_wrappers_prepared_file_is_removed_by_the_next(
    start: StartContainer, shared: Path
) -> None:
    first, left = main_with_its_done_prepared(start, shared)
    first.signal(signal.SIGKILL)  # no record: its temporary file stays
    first.wait()
    assert hidden_files(shared) == [left]
    # Not main's: another container's ("main.x") and a file of no writer's form.
    others = [".main.x.done.1.2.tmp", ".main.done.notes.tmp"]
    for name in others:
        (shared / name).touch()

    second, prepared = main_with_its_done_prepared(start, shared, stale=left)
    assert prepared != left
    assert hidden_files(shared) == sorted([*others, prepared])  # the dead one's is gone
    second.signal(signal.SIGTERM)

    assert second.wait() == 143
    assert hidden_files(shared) == sorted(others)
    assert read_json(shared / "main.done")["attempt"] == 2


def test_done_is_written_when_its_prepared_file_was_removed(
    start: StartContainer, shared: Path
) -> None:
    """Someone empties the volume while COMMAND runs: the record is still written."""
    main, prepared = main_with_its_done_prepared(start, shared)
    (shared / prepared).unlink()

    main.signal(signal.SIGTERM)

    assert main.wait() == 143
    assert read_json(shared / "main.done")["signal"] == signal.SIGTERM
    assert hidden_files(shared) == []
    assert not [e for e in main.events() if e["level"] == "error"]


# Bind-mount DIR over itself read-only in a private mount namespace, then exec.
READ_ONLY = (
    'dir=$1; shift; mount --bind "$dir" "$dir" '
    '&& mount -o remount,bind,ro "$dir" "$dir" && exec "$@"'
)


def read_only(directory: Path, *command: str) -> list[str]:
    """``command`` with ``directory`` bind-mounted read-only over itself."""
    unshare = ["unshare", "--mount", "--propagation", "private"]
    return [*unshare, "sh", "-c", READ_ONLY, "sh", str(directory), *command]


def can_mount_read_only(directory: Path) -> bool:
    try:
        result = subprocess.run(
            read_only(directory, "true"), capture_output=True, check=False, timeout=TIMEOUT
        )
    except OSError:
        return False
    return result.returncode == 0


def test_read_only_dir_still_exits_with_the_commands_status(shared: Path) -> None:
    if not can_mount_read_only(shared):
        pytest.skip("needs unshare --mount and mount (root or CAP_SYS_ADMIN)")
    # COMMAND checks the volume really is read-only (root ignores mode bits).
    probe = f'touch "{shared}/probe" 2>/dev/null && echo writable || echo read-only; exit 3'
    result = subprocess.run(
        read_only(shared, *SUPERVISOR, "main", "--dir", str(shared), "--", "sh", "-c", probe),
        capture_output=True,
        text=True,
        env={**os.environ, "SIDECAR_SUPERVISOR_LOG_FORMAT": "json"},
        check=False,
        timeout=TIMEOUT,
    )

    assert result.stdout == "read-only\n"
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    errors = {(e["event"], e["path"]) for e in events if e["level"] == "error"}
    assert ("lock_unavailable", str(shared / "main.lock")) in errors
    assert ("marker_write_failed", str(shared / "main.started")) in errors
    assert ("marker_write_failed", str(shared / "main.done")) in errors
    assert events[-1]["event"] == "supervisor_exiting"
    assert events[-1]["exit_code"] == 3
    assert list(shared.iterdir()) == []


# --- what COMMAND leaves behind -----------------------------------------------------


@pytest.mark.parametrize("obeys_sigterm", [True, False], ids=["obeys-TERM", "ignores-TERM"])
def test_leftover_grandchild_is_stopped(
    start: StartContainer, shared: Path, obeys_sigterm: bool
) -> None:
    """COMMAND exits 5 and leaves a grandchild in its group; none survives the supervisor.

    No PID namespace here: its end would kill the grandchild for the supervisor.
    """
    if obeys_sigterm:
        command = ["sh", "-c", 'sleep 600 & echo "grandchild (pid: $!)"; exit 5']
    else:  # a shell that ignores SIGTERM, then execs sleep: only SIGKILL ends it
        command = [*PRINT_SIGNALS, "--grandchildren", "1", "--exit-after", "0", "--exit-code", "5"]
    main = start("main", "--dir", shared, "--grace-period", "0.5", "--", *command, namespace=False)
    grandchild = int(main.expect(r"grandchild \(pid: (\d+)\)")[1])
    try:
        assert main.wait() == 5
        assert read_json(shared / "main.done")["exit_code"] == 5
        assert main.event("stop_requested")["signal"] == "SIGTERM"
        expired = [e for e in main.events() if e["event"] == "grace_period_expired"]
        assert len(expired) == (0 if obeys_sigterm else 1)
        assert not psutil.pid_exists(grandchild)
    except BaseException:
        kill_leftovers(main, grandchild)
        raise


@pytest.mark.parametrize("role", ["main", "sidecar"])
def test_a_descendant_that_left_the_group_is_killed_at_exit(
    start: StartContainer, shared: Path, role: str
) -> None:
    """Outside a PID namespace nothing else would stop a `setsid` daemon the child left."""
    pidfile = shared.parent / "stray.pid"
    # The stray has left the group once setsid has exec'd sleep.
    script = (
        "setsid sleep 600 & pid=$!; "
        "until grep -qx sleep /proc/$pid/comm; do sleep 0.01; done; "
        f"echo $pid > {pidfile}; echo started"
    )
    if role == "sidecar":
        script += "; sleep 600"
    container = start(role, "--dir", shared, "--", "sh", "-c", script, namespace=False)
    container.expect("started")
    stray = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip()))
    if role == "sidecar":
        assert psutil.pid_exists(stray)  # alive while the supervisor runs
        (shared / "main.done").write_text("0")
    assert container.wait() == 0
    assert not psutil.pid_exists(stray) or psutil.Process(stray).status() == psutil.STATUS_ZOMBIE
    assert container.event("stray_processes_killed")["pids"] == [stray]


def test_a_command_that_exits_at_once_never_hangs_the_supervisor(shared: Path) -> None:
    """SIGCHLD right as the loop goes to sleep: it must wake (a lost wake-up hung here)."""
    prefix = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] if can_unshare() else []

    def once(attempt: int) -> tuple[int, int, str]:
        result = subprocess.run(
            [
                *prefix,
                *SUPERVISOR,
                "main",
                "--dir",
                str(shared),
                "--name",
                f"m{attempt}",
                "--",
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        return attempt, result.returncode, result.stderr

    # The race is narrow: many short runs, four at a time (load widens it).
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        failed = [r for r in pool.map(once, range(120)) if r[1] != 0]
    assert not failed
