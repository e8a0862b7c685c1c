"""Fault injection with real processes: kills, a broken volume, hostile markers, signal floods.

Each test lets something go wrong on purpose and checks that nothing hangs (every
wait has the generous ``TIMEOUT`` of ``tests.support`` as its safety net, far
below the 600 s delays and grace periods the scenarios set), that the completion
records say what happened, and that no process is left behind (the autouse leak
check of ``conftest``).

The containers run in their own PID namespaces, so SIGKILL of a wrapper takes
its whole container along, as the runtime's kill of a container's PID 1 does. A
volume that is read-only, missing or full is made for real in a private mount
namespace (``unshare --mount``): a read-only bind mount, or a 64 KiB tmpfs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from supervisor.markers import lock_is_held
from tests.conftest import StartContainer
from tests.helpers.procfs import is_gone
from tests.kubelet import NAMESPACE, RawContainer, has_event, logged, wait_for_event
from tests.support import (
    PRINT_SIGNALS,
    SUPERVISOR,
    TIMEOUT,
    Container,
    can_unshare,
    read_json,
    wait_until,
)

READY = r"ready \(pid: \d+\)"
TERM = str(int(signal.SIGTERM))
USR1 = str(int(signal.SIGUSR1))
HUP = str(int(signal.SIGHUP))
# Far beyond every safety timeout: a scenario that ends had its delay cut short.
FOREVER = "600"
# Probes, gates and rescans at a quick pace: the tests wait less.
FAST = ("--ready-interval", "0.1")
FAST_SIDECAR = (*FAST, "--poll-interval", "0.2")
MOUNT_NAMESPACE = ("unshare", "--mount", "--propagation", "private")


def require_namespaces() -> None:
    if not can_unshare():
        pytest.skip("unshare --pid --fork --mount-proc is not allowed here")


def only_child(container: Container) -> int:
    """The pid (as the tests see it) of the one process the supervisor runs now."""

    def found() -> int | None:
        try:
            children = psutil.Process(container.supervisor_pid).children()
        except psutil.NoSuchProcess:
            return None
        return children[0].pid if len(children) == 1 else None

    pid: int = wait_until(found, what=f"the one child of {container.args}")
    return pid


def assert_clean_log(container: Container) -> None:
    """No traceback, every line JSON, and ``supervisor_exiting`` was the last word."""
    text = container.log_path.read_text()
    assert "Traceback" not in text, text
    events = container.events()
    assert len(events) == len(text.splitlines()), text
    assert events[-1]["event"] == "supervisor_exiting", text


# --- SIGKILL of each process at each phase ----------------------------------------

VICTIMS = ("main-wrapper", "main-child", "sidecar-wrapper", "sidecar-child")
PHASES = ("before-ready", "waiting", "stop-delay", "grace")
# The main has no stop delay of its own, and by the sidecar's it has exited:
# there is nothing of the main to kill then. Its grace is the one it gives what
# COMMAND left behind in its process group (there, "main-child" is that leftover).
KILLS = [
    pytest.param(victim, phase, id=f"{victim}-{phase}")
    for phase in PHASES
    for victim in VICTIMS
    if not (victim.startswith("main") and phase == "stop-delay")
]


@pytest.mark.parametrize(("victim", "phase"), KILLS)
def test_sigkill_of_each_process_at_each_phase(
    start: StartContainer, shared: Path, tmp_path: Path, victim: str, phase: str
) -> None:
    """before-ready: the sidecar's probe has not passed (the main waits for it when the
    main's wrapper is the victim, else it runs); waiting: both run; stop-delay and
    grace: the main has completed and the sidecar is stopping."""
    require_namespaces()
    may_be_ready = tmp_path / "sidecar-may-be-ready"
    side_flags: list[str | Path] = ["--dir", shared, *FAST_SIDECAR]
    side_child = [*PRINT_SIGNALS]
    if phase == "before-ready":
        side_flags += ["--ready-file", may_be_ready]
    if victim.startswith("sidecar") and phase == "stop-delay":
        side_flags += ["--stop-delay", FOREVER]
    if victim.startswith("sidecar") and phase == "grace":
        side_flags += ["--grace-period", FOREVER]
        side_child += ["--ignore", "TERM"]
    side = start("sidecar", *side_flags, "--", *side_child)
    side.expect(READY)

    gated = phase == "before-ready" and victim == "main-wrapper"
    main_flags: list[str | Path] = ["--dir", shared, *FAST]
    main_child = [*PRINT_SIGNALS, "--exit-on", "USR2"]
    if gated:
        main_flags += ["--wait-ready", "sidecar"]
    if victim.startswith("main") and phase == "grace":
        main_flags += ["--grace-period", FOREVER]
        # COMMAND exits 5 and leaves a grandchild that ignores SIGTERM in its group.
        main_child = [*PRINT_SIGNALS, "--grandchildren", "1", "--exit-after", "0"]
        main_child += ["--exit-code", "5"]
    primary = start("main", *main_flags, "--", *main_child)

    # --- reach the phase
    if phase == "before-ready":
        if gated:
            wait_for_event(primary, "waiting_for_gates")
        else:
            primary.expect(READY)
        assert not (shared / "sidecar.ready").exists()
    elif phase == "waiting":
        wait_until((shared / "sidecar.ready").exists, what="sidecar.ready")
        primary.expect(READY)
    elif victim.startswith("sidecar"):  # stop-delay, grace: the main completes first
        primary.expect(READY)
        primary.signal(signal.SIGUSR2)
        assert primary.wait() == 0
        if phase == "stop-delay":
            wait_for_event(side, "stop_delayed")
        else:
            side.expect(f"^{TERM}$")  # the stop was asked for; the child ignores it
    else:  # the main's grace: COMMAND exited 5, its grandchild lives on
        primary.expect(r"grandchild \(pid: \d+\)")
        wait_for_event(primary, "stop_requested")

    # --- the kill
    side_child_pid = only_child(side) if victim.startswith("sidecar") else None
    main_child_pid = only_child(primary) if victim.startswith("main") and not gated else None
    if victim == "main-wrapper":
        killed = primary.supervisor_pid
    elif victim == "sidecar-wrapper":
        killed = side.supervisor_pid
    else:
        child = main_child_pid if victim == "main-child" else side_child_pid
        assert child is not None
        killed = child
    os.kill(killed, signal.SIGKILL)

    # --- what must follow
    if victim == "main-wrapper":
        primary.wait()  # unshare reports its child's death in its own way
        if main_child_pid is not None:
            wait_until(lambda: is_gone(main_child_pid), what="COMMAND gone with its container")
        assert side.wait() == 0
        detected = logged(side, "completion_detected")
        assert len(detected) == 1, side.events()
        if phase == "grace":  # main.done was written before the grace began
            assert (detected[0]["source"], detected[0]["exit_code"]) == ("marker", 5)
            assert read_json(shared / "main.done")["exit_code"] == 5
        else:
            got = (detected[0]["source"], detected[0]["failed"], detected[0]["exit_code"])
            assert got == ("lock", True, None)
            assert not (shared / "main.done").exists()
        assert read_json(shared / "sidecar.done")["reason"] == "Stopped"
        assert_clean_log(side)

    elif victim == "main-child":
        code = primary.wait()
        done = read_json(shared / "main.done")
        if phase == "grace":  # the leftover died: the main ends at once with COMMAND's status
            assert code == 5
            assert done["exit_code"] == 5
            assert not has_event(primary, "grace_period_expired")
        else:
            assert code == 137
            assert (done["exit_code"], done["signal"], done["reason"]) == (None, 9, "Signaled")
            assert primary.event("child_exited")["signal"] == "SIGKILL"
        assert_clean_log(primary)
        assert side.wait() == 0
        seen = side.event("completion_detected")
        assert (seen["source"], seen["failed"]) == ("marker", True)

    elif victim == "sidecar-wrapper":
        side.wait()
        assert side_child_pid is not None
        wait_until(lambda: is_gone(side_child_pid), what="the sidecar's child killed with PID 1")
        assert not lock_is_held(shared / "sidecar.lock")
        assert not (shared / "sidecar.done").exists()
        if phase in ("before-ready", "waiting"):  # the main is unaffected
            assert primary.running
            primary.signal(signal.SIGUSR1)
            primary.expect(f"^{USR1}$")
            primary.signal(signal.SIGUSR2)
        assert primary.wait() == 0
        assert read_json(shared / "main.done")["exit_code"] == 0
        assert_clean_log(primary)

    else:  # sidecar-child
        if phase in ("before-ready", "waiting"):  # restarted (--restart always, the default)
            restarting = wait_for_event(side, "child_restarting")[0]
            assert restarting["reason"] == "Signaled"
            side.expect(READY)  # the new child
            if phase == "before-ready":
                may_be_ready.touch()
                wait_until((shared / "sidecar.ready").exists, what="sidecar.ready")
            primary.signal(signal.SIGUSR2)
            assert primary.wait() == 0
            assert side.wait() == 0
            assert len(logged(side, "child_started")) == 2
            assert side.rest_of_output() == [TERM]
        else:  # stopping anyway: the stop is over, nothing is restarted
            assert side.wait() == 0
            assert not has_event(side, "child_restarting")
            assert not has_event(side, "grace_period_expired")
            done = read_json(shared / "sidecar.done")
            assert (done["reason"], done["exit_code"], done["child_exit_code"]) == (
                "Stopped",
                0,
                137,
            )
        assert_clean_log(side)


# --- the volume: missing, read-only, full ---------------------------------------------

# Bind-mount DIR over itself read-only in a private mount namespace, then exec.
READ_ONLY = (
    'dir=$1; shift; mount --bind "$dir" "$dir" && mount -o remount,bind,ro "$dir" "$dir" '
    '&& exec "$@"'
)


def read_only_container(directory: Path, log: Path, *args: str | os.PathLike[str]) -> RawContainer:
    """A supervisor container (own PID namespace) that sees ``directory`` read-only."""
    argv = [os.fspath(a) for a in args]
    return RawContainer(
        [
            *MOUNT_NAMESPACE,
            "sh",
            "-c",
            READ_ONLY,
            "sh",
            str(directory),
            *NAMESPACE,
            *SUPERVISOR,
            *argv,
        ],
        log,
    )


def can_mount(directory: Path) -> bool:
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0"'
    try:
        result = subprocess.run(
            [*MOUNT_NAMESPACE, "sh", "-c", script, directory],
            capture_output=True,
            check=False,
            timeout=TIMEOUT,
        )
    except OSError:
        return False
    return result.returncode == 0


@pytest.fixture
def raw_containers() -> Iterator[list[Container]]:
    """Containers a test starts by hand; closed (killed if need be) at the end."""
    started: list[Container] = []
    yield started
    for container in started:
        container.close()


def test_missing_dir_is_created_by_the_sidecar_and_a_later_main_stops_it(
    start: StartContainer, tmp_path: Path
) -> None:
    shared = tmp_path / "volume" / "not" / "there"
    side = start("sidecar", "--dir", shared, "--", *PRINT_SIGNALS)
    side.expect(READY)
    wait_until((shared / "sidecar.ready").exists, what="sidecar.ready in the new dir")
    assert lock_is_held(shared / "sidecar.lock")
    created = side.event("dir_created")  # the volume may not be mounted: say so
    assert (created["level"], created["path"]) == ("warning", str(shared))
    assert "mounted" in created["hint"]

    assert start("main", "--dir", shared, "--", "sh", "-c", "exit 3").wait() == 3
    assert side.wait() == 0
    detected = side.event("completion_detected")
    assert (detected["target"], detected["exit_code"]) == ("main", 3)
    assert read_json(shared / "sidecar.done")["reason"] == "Stopped"


def test_dir_that_cannot_be_created_is_waited_for_until_it_appears(
    tmp_path: Path, raw_containers: list[Container], start: StartContainer
) -> None:
    """The volume's parent is read-only for the sidecar: it runs its child anyway, says
    why, and finds the main's record once the volume exists (made by someone else)."""
    parent = tmp_path / "mnt"
    parent.mkdir()
    if not can_mount(parent):
        pytest.skip("needs unshare --mount and mount (root or CAP_SYS_ADMIN)")
    shared = parent / "shared"
    side = read_only_container(
        parent,
        tmp_path / "sidecar.log",
        "sidecar",
        "--dir",
        shared,
        *FAST_SIDECAR,
        "--",
        *PRINT_SIGNALS,
    )
    raw_containers.append(side)
    side.expect(READY)
    errors = wait_for_event(side, "marker_write_failed", count=2)
    assert [e["path"] for e in errors] == [
        str(shared / "sidecar.started"),
        str(shared / "sidecar.ready"),
    ]
    unavailable = side.event("dir_unavailable")  # the real cause, not the lock that follows
    assert (unavailable["path"], unavailable["error"]) == (str(shared), "Read-only file system")
    assert str(parent) in unavailable["cause"]
    assert not shared.exists()
    assert side.running

    shared.mkdir()  # the volume appears; the main container writes to it
    assert start("main", "--dir", shared, "--", "true").wait() == 0
    assert side.wait() == 0
    assert side.event("completion_detected")["source"] == "marker"
    assert side.rest_of_output() == [TERM]
    assert sorted(p.name for p in shared.iterdir()) == ["main.done", "main.lock", "main.started"]
    assert_clean_log(side)


def test_read_only_dir_keeps_the_sidecar_working_and_says_why(
    tmp_path: Path, shared: Path, raw_containers: list[Container], start: StartContainer
) -> None:
    if not can_mount(shared):
        pytest.skip("needs unshare --mount and mount (root or CAP_SYS_ADMIN)")
    side = read_only_container(
        shared,
        tmp_path / "sidecar.log",
        "sidecar",
        "--dir",
        shared,
        *FAST_SIDECAR,
        "--",
        *PRINT_SIGNALS,
    )
    raw_containers.append(side)
    side.expect(READY)
    wait_for_event(side, "marker_write_failed", count=2)  # .started and .ready
    side.signal(signal.SIGUSR1)  # still forwarding: the child prints it
    side.expect(f"^{USR1}$")

    primary = start("main", "--dir", shared, "--", "sh", "-c", "exit 4")  # sees it writable
    assert primary.wait() == 4
    assert side.wait() == 0
    assert side.rest_of_output() == [TERM]
    detected = side.event("completion_detected")
    assert (detected["source"], detected["exit_code"]) == ("marker", 4)
    failed = {(e["path"], e["error"]) for e in logged(side, "marker_write_failed")}
    assert failed == {
        (str(shared / f"sidecar.{kind}"), "Read-only file system")
        for kind in ("started", "ready", "done")
    }
    assert side.event("lock_unavailable")["error"] == "Read-only file system"
    assert sorted(p.name for p in shared.iterdir()) == ["main.done", "main.lock", "main.started"]
    assert_clean_log(side)


# A 64 KiB tmpfs over DIR in a private mount namespace; FILL fills it first if
# asked; the supervisor runs; then the dir is listed (for leftovers) into LISTING.
FULL_VOLUME = """
dir=$1 listing=$2 fill=$3; shift 3
mount -t tmpfs -o size=64k tmpfs "$dir" || exit 99
if [ "$fill" = yes ]; then dd if=/dev/zero of="$dir/filler" bs=4096 2>/dev/null; fi
"$@"; status=$?
ls -A "$dir" > "$listing"
exit $status
"""


@pytest.mark.parametrize("when", ["full-before-start", "filled-by-command"])
def test_full_volume_main_still_exits_with_the_commands_status(
    tmp_path: Path, shared: Path, when: str
) -> None:
    if not can_mount(shared):
        pytest.skip("needs unshare --mount and mount (root or CAP_SYS_ADMIN)")
    listing = tmp_path / "listing"
    if when == "full-before-start":
        command = ["sh", "-c", "exit 3"]
        failed_files, code = ["main.started", "main.done"], 3
    else:  # COMMAND writes its output to the volume until it is full, then fails
        command = ["sh", "-c", f'dd if=/dev/zero of="{shared}/output" bs=4096 2>/dev/null; exit 4']
        failed_files, code = ["main.done"], 4
    fill = "yes" if when == "full-before-start" else "no"
    main = [*SUPERVISOR, "main", "--dir", str(shared), "--", *command]
    result = subprocess.run(
        [*MOUNT_NAMESPACE, "sh", "-c", FULL_VOLUME, "sh", str(shared), str(listing), fill, *main],
        capture_output=True,
        text=True,
        env={**os.environ, "SIDECAR_SUPERVISOR_LOG_FORMAT": "json"},
        check=False,
        timeout=TIMEOUT,
    )

    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    errors = [e for e in events if e["event"] == "marker_write_failed"]
    assert [(e["path"], e["error"], e["level"]) for e in errors] == [
        (str(shared / name), "No space left on device", "error") for name in failed_files
    ]
    assert events[-1]["event"] == "supervisor_exiting"
    assert events[-1]["exit_code"] == code
    left = listing.read_text().split()
    assert not [name for name in left if name.endswith(".tmp")], left  # no half-written record
    assert "main.done" not in left
    assert list(shared.iterdir()) == []  # the tmpfs went with its mount namespace


# --- hostile markers -----------------------------------------------------------------


def test_markers_swapped_for_symlinks_during_the_run_are_not_followed(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    """While the main runs, its .started becomes a link to a file outside the volume and a
    link to an outside path appears at .done: the supervisor writes over the links."""
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / "precious"
    precious.write_text("do not touch\n")
    side = start("sidecar", "--dir", shared, *FAST_SIDECAR, "--", *PRINT_SIGNALS)
    side.expect(READY)
    primary = start("main", "--dir", shared, "--", *PRINT_SIGNALS, "--exit-on", "USR2")
    primary.expect(READY)

    for kind, target in (("started", precious), ("done", outside / "created")):
        link = shared / f"main.{kind}"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    side.signal(signal.SIGUSR1)  # a loop turn in the sidecar: it still waits for the main
    side.expect(f"^{USR1}$")
    assert side.running
    assert not has_event(side, "completion_detected")

    primary.signal(signal.SIGUSR2)
    assert primary.wait() == 0
    assert side.wait() == 0
    assert precious.read_text() == "do not touch\n"
    assert sorted(p.name for p in outside.iterdir()) == ["precious"]
    assert not (shared / "main.done").is_symlink()
    assert read_json(shared / "main.done")["exit_code"] == 0
    detected = side.event("completion_detected")
    assert (detected["source"], detected["exit_code"], detected["failed"]) == ("marker", 0, False)


def test_symlinked_done_is_completion_with_unknown_code_never_its_target(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    """The link points to a valid record of a failure: had it been followed, the
    sidecar (``--exit-code main``) would exit 7."""
    target = tmp_path / "record.json"
    target.write_text(json.dumps({"name": "main", "exit_code": 7, "signal": None}))
    side = start(
        "sidecar", "--dir", shared, "--exit-code", "main", *FAST_SIDECAR, "--", *PRINT_SIGNALS
    )
    side.expect(READY)

    (shared / "main.done").symlink_to(target)
    assert side.wait() == 0
    invalid = side.event("marker_invalid")
    assert (invalid["path"], invalid["problem"], invalid["level"]) == (
        str(shared / "main.done"),
        "is a symlink",
        "warning",
    )
    detected = side.event("completion_detected")
    assert (detected["exit_code"], detected["failed"]) == (None, False)
    assert side.rest_of_output() == [TERM]


def test_stale_done_is_removed_and_does_not_stop_the_sidecar_of_the_new_attempt(
    start: StartContainer, shared: Path
) -> None:
    assert start("main", "--dir", shared, "--", "sh", "-c", "exit 3").wait() == 3
    assert read_json(shared / "main.done")["exit_code"] == 3  # the earlier attempt's

    # The next attempt waits for the sidecar; the sidecar starts after it.
    primary = start(
        "main",
        "--dir",
        shared,
        "--wait-ready",
        "sidecar",
        *FAST,
        "--",
        *PRINT_SIGNALS,
        "--exit-on",
        "USR2",
    )
    wait_for_event(primary, "waiting_for_gates")
    assert not (shared / "main.done").exists()
    assert read_json(shared / "main.started")["attempt"] == 2
    side = start(
        "sidecar", "--dir", shared, "--exit-code", "main", *FAST_SIDECAR, "--", *PRINT_SIGNALS
    )
    side.expect(READY)
    primary.expect(READY)
    side.signal(signal.SIGUSR1)
    side.expect(f"^{USR1}$")
    assert not has_event(side, "completion_detected")
    assert not has_event(side, "already_complete")

    primary.signal(signal.SIGUSR2)
    assert primary.wait() == 0
    assert side.wait() == 0  # --exit-code main: the new attempt's 0, not the stale 3
    detected = logged(side, "completion_detected")
    assert [(d["exit_code"], d["failed"]) for d in detected] == [(0, False)]
    assert read_json(shared / "main.done")["attempt"] == 2


def test_two_mains_racing_on_one_name_one_wins(start: StartContainer, shared: Path) -> None:
    side = start("sidecar", "--dir", shared, *FAST_SIDECAR, "--", *PRINT_SIGNALS)
    side.expect(READY)
    racers = [
        start("main", "--dir", shared, "--", *PRINT_SIGNALS, "--exit-on", "USR2") for _ in range(2)
    ]
    loser = wait_until(
        lambda: next((r for r in racers if not r.running), None), what="one racer to give up"
    )
    winner = next(r for r in racers if r is not loser)

    assert loser.wait() == 1
    lines = loser.log_path.read_text().splitlines()
    assert len(lines) == 1, lines
    assert "another supervisor holds" in lines[0]
    assert str(shared / "main.lock") in lines[0]
    assert loser.rest_of_output() == []  # its COMMAND never ran
    winner.expect(READY)
    assert read_json(shared / "main.started")["attempt"] == 1  # the loser wrote nothing
    side.signal(signal.SIGUSR1)
    side.expect(f"^{USR1}$")
    assert not has_event(side, "completion_detected")

    winner.signal(signal.SIGUSR2)
    assert winner.wait() == 0
    assert side.wait() == 0
    assert len(logged(side, "completion_detected")) == 1
    assert read_json(shared / "main.done")["exit_code"] == 0


# --- signal floods -------------------------------------------------------------------


class Flood:
    """Sends SIGUSR1 and SIGHUP to ``pid`` in a tight loop, from a thread, until stopped."""

    def __init__(self, pid: int, signals: Sequence[int] = (signal.SIGUSR1, signal.SIGHUP)):
        self.pid = pid
        self.signals = tuple(signals)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for signum in self.signals:
                try:
                    os.kill(self.pid, signum)
                except ProcessLookupError:
                    return
                self.sent += 1

    def __enter__(self) -> Flood:
        self._thread.start()
        wait_until(lambda: self.sent >= 400, what="a few hundred signals sent")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


def test_signal_flood_while_the_child_starts(start: StartContainer, shared: Path) -> None:
    """The flood begins while the main waits for its gate and goes on as COMMAND starts.

    Nothing is lost: the signals kept while there was no child reach it the moment
    it exists, before it could install a handler, so ``sleep`` dies of the first
    one (SIGHUP, the lower number, if both are pending)."""
    gate = shared / "gate.ready"
    primary = start("main", "--dir", shared, "--wait-ready", "gate", *FAST, "--", "sleep", FOREVER)
    wait_for_event(primary, "waiting_for_gates")
    with Flood(primary.supervisor_pid):
        gate.write_text("{}")  # the gate opens during the flood
        code = primary.wait()

    assert code in (128 + signal.SIGHUP, 128 + signal.SIGUSR1)
    done = read_json(shared / "main.done")
    assert (done["exit_code"], done["signal"], done["reason"]) == (None, code - 128, "Signaled")
    assert primary.event("child_exited")["exit_code"] == code
    assert_clean_log(primary)


@pytest.mark.parametrize("role", ["main", "sidecar"])
def test_signal_flood_while_the_child_stops(start: StartContainer, shared: Path, role: str) -> None:
    """During the grace of a stop, every flooded signal is relayed to what is stopping.

    main: COMMAND exited 3 and left a grandchild that ignores SIGTERM; sidecar: the
    main completed and the child ignores SIGTERM. SIGUSR2 then lets it end."""
    stubborn = [*PRINT_SIGNALS, "--ignore", "TERM", "--ignore", "HUP", "--exit-on", "USR2"]
    if role == "main":
        # print_signals, started by a shell that exits 3 at once, is the leftover.
        leftover = 'trap "" TERM; "$@" & exit 3'
        container = start(
            "main",
            "--dir",
            shared,
            "--grace-period",
            FOREVER,
            "--",
            "sh",
            "-c",
            leftover,
            "sh",
            *stubborn,
        )
        container.expect(READY)
        wait_for_event(container, "stop_requested")
        expected = 3
    else:
        container = start("sidecar", "--dir", shared, "--grace-period", FOREVER, "--", *stubborn)
        container.expect(READY)
        assert start("main", "--dir", shared, "--", "true").wait() == 0
        container.expect(f"^{TERM}$")  # the stop was asked for, and ignored
        expected = 0

    with Flood(container.supervisor_pid) as flood:  # a relay within seconds; 10 s is generous
        container.expect(f"^{USR1}$", timeout=10)
        container.expect(f"^{HUP}$", timeout=10)
    assert container.running
    container.signal(signal.SIGUSR2)

    assert container.wait() == expected
    container.rest_of_output()
    output = container.output
    relayed = output.count(USR1) + output.count(HUP)
    assert 0 < relayed <= flood.sent  # standard signals coalesce; none is invented
    assert not has_event(container, "grace_period_expired")
    assert_clean_log(container)


def test_signal_flood_while_the_child_runs_is_relayed_and_survived(
    start: StartContainer, shared: Path
) -> None:
    primary = start(
        "main", "--dir", shared, "--", *PRINT_SIGNALS, "--ignore", "HUP", "--exit-on", "USR2"
    )
    primary.expect(READY)
    with Flood(primary.supervisor_pid):
        primary.expect(f"^{USR1}$")
        primary.expect(f"^{HUP}$")
    primary.signal(signal.SIGUSR2)

    assert primary.wait() == 0
    assert read_json(shared / "main.done")["exit_code"] == 0
    assert_clean_log(primary)
