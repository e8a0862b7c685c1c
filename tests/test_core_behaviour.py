"""Regression tests for the core loop, with real processes, through the CLI only.

Eight behaviours of the core rewrite, each checked from the outside: exit
statuses, the signals the wrapped child reports (``print_signals``), what is
left running, the records on the shared dir and the order of the JSON log
events. No supervisor module is imported. Every wait is bounded (the harness's
``TIMEOUT`` or a stated safety timeout), and a hang is turned into an assertion.

How each test failed on the code before the rewrite (commit 08ca202):

1. ``test_rescan_runs_on_schedule_while_events_keep_coming``: the marker is never
   found; the rescan only ran after ``--poll-interval`` seconds without any event,
   and SIGCHLD from the orphans came every 0.2 s. Times out waiting for the exit.
2. ``test_sigterm_during_stop_delay_is_noted_and_a_second_one_stops``: the first
   SIGTERM cuts the delay: ``stop_requested`` is logged and the child dies of
   SIGTERM at once. (The test takes any event with ``"signal": "SIGTERM"`` after
   ``stop_delayed`` as the note, as ``term_hold_started`` carries one.)
3. ``test_restart_leaves_nothing_of_the_previous_run``: the worker that ignores
   SIGTERM in the old run's group and the one that left by ``setsid`` are both
   still alive when the next run is ready.
4. ``test_shared_dir_removed_while_the_main_runs``: after the main exits the
   sidecar finds no ``.done`` and no ``.started`` and waits forever (safety
   timeout). ``test_lock_that_is_a_symlink`` and
   ``test_lock_the_sidecar_cannot_open`` (sidecar as ``nobody``, lock mode 000):
   a lock it cannot open counts as "running", so the ``.done`` is never read and
   the sidecar waits forever. (Both pass with an ordinary lock.) Their siblings,
   ``test_lock_that_is_a_directory_is_not_a_false_completion`` and
   ``test_main_that_cannot_take_its_lock_is_not_a_false_completion``, failed the
   other way (found after the rewrite): a main running without its lock left a
   free-looking lock next to its ``.started``, read as ``DiedWithoutRecord`` at
   once, and the sidecar stopped while the main still ran.
5. ``test_main_with_few_file_descriptors``: a traceback (EMFILE importing a
   module) and no ``.done`` (now: one line, exit 1, a failed ``.done``).
   ``test_main_with_stderr_closed``: exits 1 without running COMMAND.
   ``test_command_not_found_with_a_non_utf8_name``: a UnicodeEncodeError
   traceback writing the termination log, exit 1.
   ``test_huge_grace_period_is_refused_or_clamped``: an OverflowError traceback
   in ``select`` once the stop begins, the child left running.
6. ``test_sidecar_reports_the_mains_death_by_signal``: exits 1, not 143 or 137.
7. ``test_hanging_stop_http_does_not_hold_up_the_kill``: ``http_call_abandoned``
   and ``stop_http_sent`` (timed out) are logged before ``grace_period_expired``:
   the call held the loop and the signal waited for it. (Both tests assume an HTTP
   call keeps its own 5 s timeout, longer than ``--grace-period 1``.)
   ``test_hanging_quit_http_does_not_hold_up_the_main``: the quit call is waited
   for (``http_call_abandoned`` / ``quit_http_sent``) before the leftover group's
   grace period even starts.
8. ``test_synchronous_signal_from_outside_is_forwarded``: the supervisor dies of
   the signal (default action) and writes no record.
   ``test_stopped_child_is_continued_to_see_the_stop_request``: the child stays
   stopped with SIGTERM pending until ``grace_period_expired`` (20 s) and SIGKILL.
   ``test_ignored_dispositions_are_not_inherited_by_command``: SIGILL, SIGTRAP,
   SIGBUS, SIGFPE, SIGSEGV, SIGURG and SIGSYS stay ignored in COMMAND.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
import pytest

from tests.conftest import StartContainer
from tests.helpers.procfs import is_gone
from tests.http_server import RecordingServer
from tests.kubelet import has_event, logged, nth_run, wait_for_event
from tests.support import (
    HERE,
    PRINT_SIGNALS,
    SUPERVISOR,
    TIMEOUT,
    Container,
    can_unshare,
    kill_leftovers,
    read_json,
    wait_until,
)

READY = r"ready \(pid: (\d+)\)"
TERM = str(int(signal.SIGTERM))
USR1 = str(int(signal.SIGUSR1))
LAUNCHER = [sys.executable, str(HERE / "helpers" / "launcher.py")]
# A hang is the failure mode here: a sidecar must have ended by then.
ENDS_WITHIN = 60.0
FAST = ("--poll-interval", "0.2")


def require_namespaces() -> None:
    if not can_unshare():
        pytest.skip("unshare --pid --fork --mount-proc is not allowed here")


def exits_within(container: Container, timeout: float = ENDS_WITHIN) -> int:
    """The container's exit status; an assertion (not a stuck run) if it does not end."""
    try:
        return container.wait(timeout)
    except (subprocess.TimeoutExpired, AssertionError):
        log = container.log_path.read_text(errors="replace")
        raise AssertionError(f"still running after {timeout} s; its log:\n{log}") from None


def children_of(container: Container) -> list[psutil.Process]:
    try:
        return psutil.Process(container.supervisor_pid).children()
    except psutil.NoSuchProcess:
        return []


def only_child(container: Container) -> psutil.Process:
    """The one process the supervisor runs now (as the tests see it)."""
    found: psutil.Process = wait_until(
        lambda: (kids := children_of(container)) and len(kids) == 1 and kids[0],
        what=f"the one child of {container.args}",
    )
    return found


def descendants_running(container: Container, argv: Sequence[str]) -> list[int]:
    """Pids of live (not zombie) processes under the container whose argv is ``argv``."""
    found = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for proc in psutil.Process(container.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.cmdline() == list(argv) and not is_gone(proc.pid):
                    found.append(proc.pid)
    return found


def names_in_order(container: Container) -> list[str]:
    return [str(e.get("event")) for e in container.events()]


def first_index(names: list[str], *wanted: str) -> int | None:
    hits = [i for i, name in enumerate(names) if name in wanted]
    return hits[0] if hits else None


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


# --- 1. periodic work on an absolute schedule -----------------------------------------


@pytest.mark.timeout(90)
def test_rescan_runs_on_schedule_while_events_keep_coming(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    """COMMAND leaves a short-lived orphan every 0.2 s, so SIGCHLD never stops coming.

    The marker's folder does not exist at start (no file watch can cover it), so
    only the rescan every ``--poll-interval`` (1 s) can find the marker.
    """
    require_namespaces()
    folder = tmp_path / "elsewhere" / "later"
    folder.parent.mkdir()
    marker = folder / "finished"
    orphans = "echo started; while :; do (sleep 0.05 &) ; sleep 0.2; done"
    side = start(
        "sidecar", "--dir", shared, "--poll-interval", "1", "--marker", marker,
        "--", "sh", "-c", orphans,
    )  # fmt: skip
    side.expect("started")
    folder.mkdir()
    marker.write_text("0\n")

    assert exits_within(side, TIMEOUT) == 0
    found = side.event("completion_detected")
    assert found["target"] == str(marker)
    assert read_json(shared / "sidecar.done")["reason"] == "Stopped"


# --- 2. signals during every phase ------------------------------------------------------


@pytest.mark.timeout(90)
def test_sigterm_during_stop_delay_is_noted_and_a_second_one_stops(
    start: StartContainer, shared: Path
) -> None:
    """A first SIGTERM during ``--stop-delay`` is only noted; a second stops at once.

    Ordering, not timing: once the supervisor has logged the first SIGTERM, a
    SIGUSR1 is sent and must reach the child (still running, no stop asked for);
    only then does the second SIGTERM stop it.
    """
    require_namespaces()
    side = start(
        "sidecar", "--dir", shared, *FAST, "--stop-delay", "3600", "--term-hold", "600",
        "--", *PRINT_SIGNALS,
    )  # fmt: skip
    side.expect(READY)
    (shared / "main.done").write_text("0\n")
    wait_for_event(side, "stop_delayed")
    delayed_at = names_in_order(side).index("stop_delayed")

    supervisor = side.supervisor_pid
    os.kill(supervisor, signal.SIGTERM)
    wait_until(
        lambda: any(e.get("signal") == "SIGTERM" for e in side.events()[delayed_at + 1 :]),
        what="the supervisor noting the first SIGTERM",
    )
    assert not has_event(side, "stop_requested"), names_in_order(side)
    try:
        os.kill(supervisor, signal.SIGUSR1)
    except ProcessLookupError:
        raise AssertionError(f"the first SIGTERM ended it: {names_in_order(side)}") from None
    side.expect(f"^{USR1}$")  # forwarded: the child still runs
    assert TERM not in side.output, side.output
    assert not has_event(side, "stop_requested"), names_in_order(side)
    assert side.running

    os.kill(supervisor, signal.SIGTERM)
    side.expect(f"^{TERM}$")
    assert exits_within(side, TIMEOUT) == 0
    assert has_event(side, "stop_requested")
    assert read_json(shared / "sidecar.done")["reason"] == "Stopped"


# --- 3. a restarted child leaves nothing of its predecessor ------------------------------


@pytest.mark.timeout(90)
def test_restart_leaves_nothing_of_the_previous_run(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    """Run 1 leaves a worker in its group that ignores SIGTERM and one that left by
    ``setsid``, then exits 1; by the time run 2 is ready both must be gone."""
    require_namespaces()
    in_group = ["sleep", "6001"]
    left = ["sleep", "6002"]
    first = (
        f"(trap '' TERM; exec {shlex.join(in_group)}) & setsid {shlex.join(left)} & "
        f"until [ $(pgrep -cx sleep) -ge 2 ]; do sleep 0.01; done; exit 1"
    )
    stays = shlex.join(["exec", *PRINT_SIGNALS])
    command = nth_run(tmp_path / "runs", first, stays)
    side = start("sidecar", "--dir", shared, *FAST, "--restart", "on-failure", "--", *command)

    side.expect("run 1")
    side.expect("run 2")
    side.expect(READY)
    assert logged(side, "child_restarting")
    leftovers = {
        "in the old group": descendants_running(side, in_group),
        "left by setsid": descendants_running(side, left),
    }
    assert leftovers == {"in the old group": [], "left by setsid": []}

    (shared / "main.done").write_text("0\n")
    assert exits_within(side, TIMEOUT) == 0


# --- 4. the shared dir changing under the sidecar --------------------------------------


def start_main_then_sidecar(start: StartContainer, shared: Path) -> tuple[Container, Container]:
    """The main runs (its lock held) before the sidecar starts and sees it running."""
    primary = start("main", "--dir", shared, "--", *PRINT_SIGNALS, "--exit-on", "USR2")
    primary.expect(READY)
    wait_until((shared / "main.started").exists, what="main.started")
    side = start("sidecar", "--dir", shared, *FAST, "--", *PRINT_SIGNALS)
    side.expect(READY)
    return primary, side


def assert_sidecar_ended(side: Container) -> None:
    assert exits_within(side) in (0, 1)
    assert side.rest_of_output() == [TERM]  # the child was stopped, not left behind
    text = side.log_path.read_text(errors="replace")
    assert_no_traceback(text)
    assert names_in_order(side)[-1] == "supervisor_exiting", text


@pytest.mark.timeout(120)
def test_shared_dir_removed_while_the_main_runs(start: StartContainer, shared: Path) -> None:
    """``rm -rf`` of the dir: the main's ``.done`` cannot be written, its lock goes.

    The sidecar may treat it as a failed completion (at once or after a bounded
    time); it must end, saying at a warning or error level what it found.
    """
    require_namespaces()
    primary, side = start_main_then_sidecar(start, shared)
    shutil.rmtree(shared)
    primary.signal(signal.SIGUSR2)
    assert exits_within(primary, TIMEOUT) == 0

    assert_sidecar_ended(side)
    said = [e for e in side.events() if e.get("level") in ("warning", "error")]
    assert said, side.log_path.read_text()


@pytest.mark.timeout(120)
def test_lock_that_is_a_symlink(start: StartContainer, shared: Path, tmp_path: Path) -> None:
    """A planted ``main.lock`` symlink: the main cannot lock it but runs and writes
    its ``.done``; the sidecar cannot probe it, and must still read the ``.done``."""
    require_namespaces()
    target = tmp_path / "somewhere-else"
    target.write_text("")
    (shared / "main.lock").symlink_to(target)
    side = start("sidecar", "--dir", shared, *FAST, "--", *PRINT_SIGNALS)
    side.expect(READY)
    primary = start("main", "--dir", shared, "--", "sh", "-c", "exit 3")
    assert exits_within(primary, TIMEOUT) == 3
    assert read_json(shared / "main.done")["exit_code"] == 3

    assert_sidecar_ended(side)
    found = side.event("completion_detected")
    assert (found["target"], found["exit_code"]) == ("main", 3)


# A child ``nobody`` can run (the tests' python may live where only root may look):
# it says it is ready and prints 15 when SIGTERM ends it.
SH_CHILD = f'trap "echo {TERM}; exit 0" TERM; echo "ready (pid: $$)"; sleep 600 & wait'


@pytest.fixture
def world_writable_dir(reachable_dir: Path) -> Path:
    """A shared dir another uid can use, and write in."""
    reachable_dir.chmod(0o777)
    return reachable_dir


@pytest.mark.timeout(120)
def test_lock_the_sidecar_cannot_open(
    start: StartContainer,
    launch: Callable[..., Container],
    world_writable_dir: Path,
) -> None:
    """The sidecar runs as ``nobody`` and the main's lock is mode 000 (root's main
    holds it all the same): the sidecar cannot probe it, and must still end once
    the main has written its (readable) ``.done``."""
    require_namespaces()
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the sidecar as another user")
    shared = world_writable_dir
    primary = start("main", "--dir", shared, "--", *PRINT_SIGNALS, "--exit-on", "USR2")
    primary.expect(READY)
    lock = shared / "main.lock"
    wait_until(lambda: lock.exists() and (shared / "main.started").exists(), what="main.lock")
    lock.chmod(0)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    side = launch(
        [*nobody, *SUPERVISOR, "sidecar", "--dir", shared, *FAST, "--", "sh", "-c", SH_CHILD],
        namespace=True,
    )
    side.expect(READY)
    primary.signal(signal.SIGUSR2)
    assert exits_within(primary, TIMEOUT) == 0
    assert stat.S_IMODE(lock.stat().st_mode) == 0  # still unreadable for nobody

    assert_sidecar_ended(side)
    found = side.event("completion_detected")
    assert (found["target"], found["exit_code"]) == ("main", 0)


@pytest.mark.timeout(120)
def test_lock_that_is_a_directory_is_not_a_false_completion(
    start: StartContainer, shared: Path
) -> None:
    """A directory named ``main.lock``: the main runs without a lock. A free-looking
    lock next to ``main.started`` must not read as the main's death while it runs;
    the sidecar ends on the main's record."""
    require_namespaces()
    (shared / "main.lock").mkdir()
    primary = start("main", "--dir", shared, "--", *PRINT_SIGNALS, "--exit-on", "USR2")
    primary.expect(READY)
    wait_until((shared / "main.started").exists, what="main.started")
    side = start("sidecar", "--dir", shared, *FAST, "--", "sh", "-c", SH_CHILD)
    side.expect(READY)
    primary.signal(signal.SIGUSR2)
    assert exits_within(primary, TIMEOUT) == 0

    assert_sidecar_ended(side)
    found = side.event("completion_detected")
    assert (found["source"], found["exit_code"], found["failed"]) == ("marker", 0, False)


@pytest.mark.timeout(120)
def test_main_that_cannot_take_its_lock_is_not_a_false_completion(
    start: StartContainer, launch: Callable[..., Container], world_writable_dir: Path
) -> None:
    """A ``main.lock`` left by root (0644) and a main running as another user: it
    cannot open its lock and says so in ``.started`` (``locked: false``); the sidecar
    does not take the free lock for its death, and ends on its record."""
    require_namespaces()
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the main as another user")
    shared = world_writable_dir
    (shared / "main.lock").touch(mode=0o644)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    go = shared / "go"
    child = f'echo "ready (pid: $$)"; while [ ! -e {go} ]; do sleep 0.05; done'
    primary = launch(
        [*nobody, *SUPERVISOR, "main", "--dir", shared, "--", "sh", "-c", child],
        namespace=True,
    )
    primary.expect(READY)
    wait_until((shared / "main.started").exists, what="main.started")
    assert read_json(shared / "main.started")["locked"] is False
    side = start("sidecar", "--dir", shared, *FAST, "--", "sh", "-c", SH_CHILD)
    side.expect(READY)
    go.touch()
    assert exits_within(primary, TIMEOUT) == 0

    assert_sidecar_ended(side)
    found = side.event("completion_detected")
    assert (found["source"], found["exit_code"], found["failed"]) == ("marker", 0, False)


# --- 5. the edges of the OS -----------------------------------------------------------


def stderr_text(container: Container) -> str:
    return container.log_path.read_text(errors="replace")


@pytest.mark.timeout(90)
def test_main_with_few_file_descriptors(launch: Callable[..., Container], shared: Path) -> None:
    """``ulimit -n 6``: COMMAND runs and ``.done`` is written, or one clear error line
    and exit 1; never a traceback."""
    limited = 'ulimit -n 6 && exec "$@"'
    main = launch(
        ["sh", "-c", limited, "sh", *SUPERVISOR, "main", "--dir", shared,
         "--", "sh", "-c", "echo ran; exit 4"],
        namespace=False,
    )  # fmt: skip
    code = exits_within(main, TIMEOUT)
    text = stderr_text(main)
    assert_no_traceback(text)
    if code == 1:
        assert len(text.strip().splitlines()) == 1, text
        assert "ulimit -n" in text
        # The sidecars still learn that this main will never run.
        record = read_json(shared / "main.done")
        assert (record["exit_code"], record["reason"]) == (1, "StartFailed")
    else:
        assert code == 4, text
        assert read_json(shared / "main.done")["exit_code"] == 4


@pytest.mark.timeout(90)
def test_main_with_stderr_closed(launch: Callable[..., Container], shared: Path) -> None:
    """``2>&-``: no log can be written, yet COMMAND runs and the record is written."""
    main = launch(
        ["sh", "-c", 'exec "$@" 2>&-', "sh", *SUPERVISOR, "main", "--dir", shared,
         "--", "sh", "-c", "echo ran; exit 4"],
        namespace=False,
    )  # fmt: skip
    assert exits_within(main, TIMEOUT) == 4
    assert "ran" in main.rest_of_output()
    assert read_json(shared / "main.done")["exit_code"] == 4


@pytest.mark.timeout(90)
def test_command_not_found_with_a_non_utf8_name(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    """A COMMAND name that is not UTF-8 and not found: 127, a termination message,
    the record, no traceback."""
    termination_log = tmp_path / "termination-log"
    termination_log.write_text("")  # it is written only if it exists, as in Kubernetes
    name = os.fsdecode(b"no-such-\xff-command")
    main = start(
        "main", "--dir", shared, "--termination-log", termination_log, "--", name,
        namespace=False,
    )  # fmt: skip
    assert exits_within(main, TIMEOUT) == 127
    assert_no_traceback(stderr_text(main))
    assert len(termination_log.read_bytes().splitlines()) == 1
    done = read_json(shared / "main.done")
    assert (done["exit_code"], done["reason"]) == (127, "NotFound")


@pytest.mark.timeout(90)
def test_huge_grace_period_is_refused_or_clamped(start: StartContainer, shared: Path) -> None:
    """``--grace-period 1e10``: a usage error (2, one line, nothing started) or a
    clamp (the stop works); never an OverflowError."""
    require_namespaces()
    side = start("sidecar", "--dir", shared, *FAST, "--grace-period", "1e10", "--", *PRINT_SIGNALS)
    with contextlib.suppress(AssertionError):
        side.expect(READY, timeout=TIMEOUT)
    if side.output:  # accepted, so clamped: the stop must work
        (shared / "main.done").write_text("0\n")
    code = exits_within(side, TIMEOUT)
    text = stderr_text(side)
    assert_no_traceback(text)
    if code == 2:
        assert not side.output
        assert len(text.strip().splitlines()) == 1, text
    else:
        assert code == 0, text
        assert side.rest_of_output() == [TERM]
        assert read_json(shared / "sidecar.done")["reason"] == "Stopped"


# --- 6. the main's status, as Kubernetes reports it -----------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("signum", "expected"), [(signal.SIGTERM, 143), (signal.SIGKILL, 137)])
def test_sidecar_reports_the_mains_death_by_signal(
    start: StartContainer, shared: Path, signum: signal.Signals, expected: int
) -> None:
    require_namespaces()
    side = start("sidecar", "--dir", shared, *FAST, "--exit-code", "main", "--", *PRINT_SIGNALS)
    side.expect(READY)
    primary = start("main", "--dir", shared, "--", *PRINT_SIGNALS)
    primary.expect(READY)
    only_child(primary).send_signal(signum)

    assert exits_within(primary, TIMEOUT) == expected
    assert read_json(shared / "main.done")["signal"] == int(signum)
    assert exits_within(side, TIMEOUT) == expected
    assert side.rest_of_output() == [TERM]


# --- 7. the loop never stops reaping -------------------------------------------------


def assert_before_http_end(container: Container, first: str, http_event: str) -> None:
    """``first`` was logged before anything said the hanging call ended or was given up."""
    names = names_in_order(container)
    assert first in names, names
    ended = first_index(names, http_event, "http_call_abandoned")
    assert ended is None or names.index(first) < ended, names


@pytest.mark.timeout(90)
def test_hanging_stop_http_does_not_hold_up_the_kill(start: StartContainer, shared: Path) -> None:
    """``--grace-period 1``, a ``--stop-http`` that never answers, a child that
    ignores SIGTERM: the SIGKILL comes at the grace period, before the HTTP call's
    own timeout (5 s) ends it."""
    require_namespaces()
    with RecordingServer() as server:
        server.hang.add("/hang")
        side = start(
            "sidecar", "--dir", shared, *FAST, "--grace-period", "1",
            "--stop-http", server.url("/hang"), "--", *PRINT_SIGNALS, "--ignore", "TERM",
        )  # fmt: skip
        side.expect(READY)
        (shared / "main.done").write_text("0\n")
        server.wait_for("POST", "/hang")
        assert exits_within(side, TIMEOUT) == 0

    assert_before_http_end(side, "grace_period_expired", "stop_http_sent")
    exited = [e for e in logged(side, "child_exited") if e.get("before_completion") is False]
    assert exited, names_in_order(side)
    assert exited[0]["signal"] == "SIGKILL"


@pytest.mark.timeout(90)
def test_hanging_quit_http_does_not_hold_up_the_main(start: StartContainer, shared: Path) -> None:
    """COMMAND exits 3 and leaves a grandchild that ignores SIGTERM; ``--quit-http``
    never answers: the leftover is killed at ``--grace-period 1``, before the quit
    call's own timeout (5 s) ends; the main exits 3 with its record written."""
    require_namespaces()
    leaves = [*PRINT_SIGNALS, "--grandchildren", "1", "--exit-after", "0", "--exit-code", "3"]
    with RecordingServer() as server:
        server.hang.add("/hang")
        primary = start(
            "main", "--dir", shared, "--grace-period", "1", "--quit-http", server.url("/hang"),
            "--", *leaves,
        )  # fmt: skip
        server.wait_for("POST", "/hang")
        assert exits_within(primary, TIMEOUT) == 3

    assert read_json(shared / "main.done")["exit_code"] == 3
    assert_before_http_end(primary, "grace_period_expired", "quit_http_sent")


# --- 8. signals a supervisor must survive -----------------------------------------------

SYNCHRONOUS = ["SEGV", "ILL", "TRAP", "BUS", "FPE", "SYS"]


def expect_while_alive(container: Container, pattern: str) -> None:
    """Like ``expect``, but fails at once if the supervisor itself has died."""
    deadline = TIMEOUT
    while True:
        if not container.running:
            raise AssertionError(
                f"the supervisor died ({container.proc.returncode}) before {pattern!r}; "
                f"output {container.output}"
            )
        try:
            container.expect(pattern, timeout=0.2)
        except AssertionError:
            deadline -= 0.2
            if deadline <= 0:
                raise
            continue
        return


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", SYNCHRONOUS)
def test_synchronous_signal_from_outside_is_forwarded(
    launch: Callable[..., Container], shared: Path, name: str
) -> None:
    """``kill -SEGV`` (and kin) from outside, to a supervisor that is not PID 1: it
    is relayed to COMMAND like any other signal, and the record is written."""
    signum = signal.Signals["SIG" + name]
    main = launch(
        [*LAUNCHER, "--no-core", "--", *SUPERVISOR, "main", "--dir", shared,
         "--", *PRINT_SIGNALS, "--exit-on", "USR2"],
        namespace=False,
    )  # fmt: skip
    child = int(main.expect(READY)[1])
    try:
        main.signal(signum)
        expect_while_alive(main, f"^{int(signum)}$")
        main.signal(signal.SIGUSR2)
        assert exits_within(main, TIMEOUT) == 0
        assert read_json(shared / "main.done")["exit_code"] == 0
    except BaseException:
        kill_leftovers(main, child)
        raise


@pytest.mark.timeout(90)
def test_stopped_child_is_continued_to_see_the_stop_request(
    start: StartContainer, shared: Path
) -> None:
    """A child stopped by SIGSTOP gets SIGCONT with the stop request, and ends by its
    own SIGTERM handler well within the grace period."""
    require_namespaces()
    side = start(
        "sidecar", "--dir", shared, *FAST, "--grace-period", "20",
        "--", *PRINT_SIGNALS, "--exit-on", "TERM",
    )  # fmt: skip
    side.expect(READY)
    child = only_child(side)
    child.send_signal(signal.SIGSTOP)
    wait_until(lambda: child.status() == psutil.STATUS_STOPPED, what="the child stopped")
    (shared / "main.done").write_text("0\n")

    assert exits_within(side, TIMEOUT) == 0
    assert not has_event(side, "grace_period_expired"), names_in_order(side)
    assert TERM in side.rest_of_output()
    exited = [e for e in logged(side, "child_exited") if e.get("before_completion") is False]
    assert (exited[0]["exit_code"], exited[0].get("signal")) == (0, None)


# Every standard signal a parent can leave ignored (not KILL, STOP: they cannot be).
IGNORABLE = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "CHLD", "CONT", "TSTP", "TTIN", "TTOU", "URG", "XCPU",
    "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
]  # fmt: skip


def ignored_signals(pid: int) -> set[str]:
    """The standard signals ``pid`` ignores, from ``SigIgn`` in /proc/PID/status.

    Signals 32 and 33 are left out: glibc's ``posix_spawn`` itself leaves its two
    internal signals ignored in every child it starts (glibc 2.36).
    """
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn")), 16
    )
    return {signal.Signals(n).name for n in range(1, 32) if mask & (1 << (n - 1))}


@pytest.mark.timeout(90)
def test_ignored_dispositions_are_not_inherited_by_command(
    launch: Callable[..., Container], shared: Path
) -> None:
    """The supervisor starts with signals ignored (``nohup``, ``trap ''``): COMMAND
    must start with every disposition at its default."""
    main = launch(
        [*LAUNCHER, "--ignore", ",".join(IGNORABLE), "--", *SUPERVISOR, "main",
         "--dir", shared, "--", "sleep", "600"],
        namespace=False,
    )  # fmt: skip
    child = only_child(main)
    try:
        assert ignored_signals(child.pid) == set()
    finally:
        kill_leftovers(main, child.pid)
