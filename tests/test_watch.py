"""CompletionWatcher on real files and real flock locks, driven in-process.

The tests play the loop: they call ``check()`` (the rescan) and hand the watcher
the events its helper threads put on ``Loop.events``. They never call
``Loop.run_until`` or ``Loop.reap``, which wait for any child of the process.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor import log
from supervisor.events import Event, Signal, SourceChanged, TimerFired
from supervisor.loop import Loop
from supervisor.markers import OwnLock, write_json
from supervisor.records import OwnRecords
from supervisor.sources import Completion
from supervisor.sources import container as container_module
from supervisor.sources.container import ContainerSource
from supervisor.watch import RESCAN, CompletionWatcher

RESCAN_TICK = TimerFired(RESCAN)

EVENT_TIMEOUT = 10.0  # a safety net for a loaded machine, never a measurement

MakeWatcher = Callable[..., CompletionWatcher]
Logged = list[tuple[str, str, dict[str, Any]]]


@pytest.fixture
def loop() -> Loop:
    return Loop()


@pytest.fixture
def make_watcher(loop: Loop, shared: Path) -> Iterator[MakeWatcher]:
    """``make_watcher(names, markers=..., mode=..., stop_on_success=...)``; closed after."""
    made: list[CompletionWatcher] = []

    def factory(names: tuple[str, ...] = ("main",), **kwargs: Any) -> CompletionWatcher:
        watcher = CompletionWatcher(loop, shared, names, **kwargs)
        made.append(watcher)
        return watcher

    yield factory
    for watcher in made:
        watcher.close()


@pytest.fixture
def hold(shared: Path) -> Iterator[Callable[[str], OwnLock]]:
    """``hold(name)``: a running wrapper's lock; released after the test at the latest."""
    held: list[OwnLock] = []

    def factory(name: str) -> OwnLock:
        lock = OwnLock(shared / f"{name}.lock")
        lock.acquire(patience=1.0)
        held.append(lock)
        return lock

    yield factory
    for lock in held:
        lock.release()


@pytest.fixture
def records(shared: Path) -> Iterator[Callable[[str], OwnRecords]]:
    """``records(name)``: the real writer of a wrapper's files; lock released after."""
    made: list[OwnRecords] = []

    def factory(name: str) -> OwnRecords:
        own = OwnRecords(shared, name)
        made.append(own)
        return own

    yield factory
    for own in made:
        own.lock.release()


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Logged:
    """Every event the supervisor logs during the test, as (level, event, fields)."""
    seen: Logged = []
    for level in ("debug", "info", "warning", "error"):

        def record(event: str, _level: str = level, **fields: Any) -> None:
            seen.append((_level, event, fields))

        monkeypatch.setattr(log, level, record)
    return seen


def next_event(
    loop: Loop, kind: type[Event], label: str | None = "main", timeout: float = EVENT_TIMEOUT
) -> Event:
    """The next event of ``kind`` (for ``label``) on the loop's queue; others are dropped."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no {kind!r} event within {timeout} s")
        try:
            event = loop.events.get(timeout=remaining)
        except queue.Empty:
            continue
        if isinstance(event, kind) and getattr(event, "label", label) == label:
            return event


def container(watcher: CompletionWatcher) -> ContainerSource:
    source = watcher.sources[0]
    assert isinstance(source, ContainerSource)
    return source


def only(watcher: CompletionWatcher) -> Completion:
    completions = watcher.completions
    assert len(completions) == 1, completions
    return completions[0]


def lock_threads(name: str) -> int:
    return sum(t.name == f"lock-{name}" and t.is_alive() for t in threading.enumerate())


# --- markers ----------------------------------------------------------------------


def test_nothing_there_then_done_zero(shared: Path, make_watcher: MakeWatcher) -> None:
    watcher = make_watcher()

    watcher.check()
    assert not watcher.satisfied
    assert watcher.completions == []

    (shared / "main.done").write_text("0\n")
    watcher.check()

    assert watcher.satisfied
    completion = only(watcher)
    assert (completion.target, completion.source) == ("main", "marker")
    assert completion.exit_code == 0
    assert not completion.failed
    assert completion.code_for_exit == 0


def test_marker_present_before_the_first_check(shared: Path, make_watcher: MakeWatcher) -> None:
    write_json(
        shared / "main.done",
        {"name": "main", "exit_code": 3, "signal": None, "reason": "Error", "attempt": 1},
    )
    watcher = make_watcher()

    watcher.check()

    assert watcher.satisfied
    completion = only(watcher)
    assert completion[:5] == Completion("main", "marker", 3, failed=True, reason="Error")[:5]
    assert completion.code_for_exit == 3


def test_touched_marker_counts_as_success(shared: Path, make_watcher: MakeWatcher) -> None:
    (shared / "main.done").touch()
    watcher = make_watcher()

    watcher.check()

    assert watcher.satisfied
    completion = only(watcher)
    assert completion.exit_code is None
    assert not completion.failed
    assert completion.code_for_exit == 0


def test_invalid_done_still_completes_with_a_warning(
    shared: Path, make_watcher: MakeWatcher, logged: Logged
) -> None:
    watcher = make_watcher()
    watcher.check()
    assert not watcher.satisfied

    (shared / "main.done").write_bytes(b"this is not a record\x00\xff")
    watcher.check()

    assert watcher.satisfied
    completion = only(watcher)
    assert completion.source == "marker"
    assert completion.exit_code is None
    warnings = [fields for level, _, fields in logged if level == "warning"]
    assert any(f.get("path") == str(shared / "main.done") for f in warnings), logged


def test_symlinked_done_is_not_followed(
    tmp_path: Path, shared: Path, make_watcher: MakeWatcher
) -> None:
    real = tmp_path / "real.done"
    real.write_text("3")
    (shared / "main.done").symlink_to(real)
    watcher = make_watcher()

    watcher.check()

    assert watcher.satisfied
    assert only(watcher).exit_code is None  # not the 3 behind the link


@pytest.mark.timeout(10)
def test_fifo_done_does_not_hang_the_watcher(shared: Path, make_watcher: MakeWatcher) -> None:
    os.mkfifo(shared / "main.done")
    watcher = make_watcher()

    watcher.check()

    assert watcher.satisfied
    assert only(watcher).exit_code is None


# --- the liveness lock ------------------------------------------------------------


def test_running_main_completes_when_it_releases_its_lock(
    shared: Path, make_watcher: MakeWatcher, loop: Loop, hold: Callable[[str], OwnLock]
) -> None:
    lock = hold("main")
    write_json(shared / "main.started", {"name": "main", "pid": 1, "attempt": 1})
    watcher = make_watcher()

    watcher.check()
    watcher.check()  # every rescan while it runs
    watcher.handle(RESCAN_TICK)

    assert not watcher.satisfied
    assert container(watcher).waiting
    assert lock_threads("main") == 1

    write_json(shared / "main.done", {"name": "main", "exit_code": 0, "signal": None})
    lock.release()

    event = next_event(loop, SourceChanged)
    assert isinstance(event, SourceChanged)
    assert event.label == "main"
    assert watcher.handle(event)
    assert watcher.satisfied
    completion = only(watcher)
    assert (completion.source, completion.exit_code, completion.failed) == ("marker", 0, False)


def test_stale_done_does_not_count_while_a_new_attempt_holds_the_lock(
    shared: Path, make_watcher: MakeWatcher, hold: Callable[[str], OwnLock]
) -> None:
    write_json(shared / "main.done", {"name": "main", "exit_code": 1, "attempt": 1})
    hold("main")  # the restarted main took its lock and has yet to remove the stale .done
    watcher = make_watcher()

    watcher.check()

    assert not watcher.satisfied


def test_hard_death_is_a_failure_with_unknown_exit_code(
    shared: Path, make_watcher: MakeWatcher, hold: Callable[[str], OwnLock]
) -> None:
    write_json(shared / "main.started", {"name": "main", "pid": 1, "attempt": 1})
    hold("main").release()  # the kernel dropped the dead wrapper's lock; no .done
    watcher = make_watcher()

    watcher.check()

    assert watcher.satisfied
    completion = only(watcher)
    assert (completion.target, completion.source) == ("main", "lock")
    assert completion.failed
    assert completion.exit_code is None
    assert completion.code_for_exit == 1


def test_hard_death_is_seen_through_the_lock_event(
    shared: Path, make_watcher: MakeWatcher, loop: Loop, hold: Callable[[str], OwnLock]
) -> None:
    lock = hold("main")
    write_json(shared / "main.started", {"name": "main", "pid": 1, "attempt": 1})
    watcher = make_watcher()
    watcher.check()
    assert not watcher.satisfied

    lock.release()  # SIGKILLed: no .done

    event = next_event(loop, SourceChanged)
    watcher.handle(event)
    assert watcher.satisfied
    completion = only(watcher)
    assert (completion.source, completion.failed, completion.exit_code) == ("lock", True, None)


def test_started_without_a_lock_file_is_not_a_death(
    shared: Path, make_watcher: MakeWatcher
) -> None:
    """A wrapper that could not create its lock (records.prepare logs "lock_unavailable",
    "peers can only see this container through its .done") still writes .started;
    there is no lock to be released, so nothing says it died."""
    write_json(shared / "main.started", {"name": "main", "pid": 1, "attempt": 1})
    watcher = make_watcher()

    watcher.check()

    assert not watcher.satisfied, watcher.completions

    (shared / "main.done").write_text("0")
    watcher.check()
    assert watcher.satisfied


def test_main_that_starts_after_the_sidecar_is_followed_to_its_end(
    shared: Path, make_watcher: MakeWatcher, loop: Loop, records: Callable[[str], OwnRecords]
) -> None:
    """Nothing there yet: file events notice the main start, then its lock its end."""
    watcher = make_watcher()
    watcher.check()
    assert not watcher.satisfied

    main = records("main")
    main.prepare()
    main.begin_attempt()
    # The file watcher may still be setting up when .started appears: write it
    # again until an event comes. check() is not called: events drive the watcher.
    deadline = time.monotonic() + EVENT_TIMEOUT
    while not container(watcher).waiting:
        assert time.monotonic() < deadline, "no file event for main.started"
        try:
            event = loop.events.get(timeout=0.5)
        except queue.Empty:
            write_json(main.path("started"), {"name": "main", "pid": 1, "attempt": 1})
            continue
        watcher.handle(event)
    assert not watcher.satisfied

    main.done(0, None, "Completed")
    watcher.handle(next_event(loop, SourceChanged))

    assert watcher.satisfied
    assert only(watcher).exit_code == 0


# --- --stop-on success ------------------------------------------------------------


def test_stop_on_success_ignores_a_failure_once_then_takes_the_next_success(
    shared: Path, make_watcher: MakeWatcher, logged: Logged
) -> None:
    done = shared / "main.done"
    done.write_text("1")
    watcher = make_watcher(stop_on_success=True)

    watcher.check()
    assert not watcher.satisfied
    watcher.check()
    watcher.handle(RESCAN_TICK)
    assert not watcher.satisfied
    assert watcher.completions == []
    reported = [e for _, e, f in logged if f.get("target") == "main"]
    assert len(reported) == 1, logged  # the same file is not reported again

    write_json(done, {"name": "main", "exit_code": 0, "signal": None, "attempt": 2})
    watcher.check()

    assert watcher.satisfied
    completion = only(watcher)
    assert (completion.exit_code, completion.failed) == (0, False)


def test_stop_on_success_ignores_a_hard_death(
    shared: Path, make_watcher: MakeWatcher, hold: Callable[[str], OwnLock], logged: Logged
) -> None:
    write_json(shared / "main.started", {"name": "main", "pid": 1, "attempt": 1})
    hold("main").release()
    watcher = make_watcher(stop_on_success=True)

    watcher.check()
    watcher.check()

    assert not watcher.satisfied
    reported = [e for _, e, f in logged if f.get("target") == "main"]
    assert len(reported) == 1, logged


def test_stop_on_success_runs_through_a_failed_attempt(
    make_watcher: MakeWatcher, loop: Loop, records: Callable[[str], OwnRecords]
) -> None:
    """OnFailure: attempt 1 exits 1, the kubelet restarts the main, attempt 2 exits 0."""
    watcher = make_watcher(stop_on_success=True)
    first = records("main")
    first.prepare()
    first.begin_attempt()
    watcher.check()
    first.done(1, None, "Error")
    watcher.handle(next_event(loop, SourceChanged))
    assert not watcher.satisfied

    second = records("main")
    second.prepare()
    second.begin_attempt()
    assert second.attempt == 2
    watcher.check()
    assert not watcher.satisfied
    second.done(0, None, "Completed")
    watcher.handle(next_event(loop, SourceChanged))

    assert watcher.satisfied
    assert only(watcher).exit_code == 0


def test_stop_on_success_runs_through_a_hard_death(
    make_watcher: MakeWatcher, loop: Loop, records: Callable[[str], OwnRecords]
) -> None:
    watcher = make_watcher(stop_on_success=True)
    first = records("main")
    first.prepare()
    first.begin_attempt()
    watcher.check()
    first.lock.release()  # OOM-killed: no .done
    watcher.handle(next_event(loop, SourceChanged))
    assert not watcher.satisfied

    second = records("main")
    second.prepare()
    second.begin_attempt()
    watcher.check()
    assert not watcher.satisfied
    second.done(0, None, "Completed")
    watcher.handle(next_event(loop, SourceChanged))

    assert watcher.satisfied
    assert only(watcher).exit_code == 0


def test_stop_on_exit_takes_a_failure(shared: Path, make_watcher: MakeWatcher) -> None:
    (shared / "main.done").write_text("1")
    watcher = make_watcher(stop_on_success=False)

    watcher.check()

    assert watcher.satisfied
    assert only(watcher).failed


# --- several targets --------------------------------------------------------------


def test_mode_any_needs_one(shared: Path, make_watcher: MakeWatcher) -> None:
    watcher = make_watcher(("a", "b"), mode="any")
    watcher.check()
    assert not watcher.satisfied

    (shared / "b.done").write_text("0")
    watcher.check()

    assert watcher.satisfied
    assert only(watcher).target == "b"


def test_mode_all_needs_every_one(shared: Path, make_watcher: MakeWatcher) -> None:
    watcher = make_watcher(("a", "b"), mode="all")

    (shared / "a.done").write_text("0")
    watcher.check()
    assert not watcher.satisfied

    (shared / "b.done").write_text("2")
    watcher.check()

    assert watcher.satisfied
    assert sorted((c.target, c.exit_code) for c in watcher.completions) == [("a", 0), ("b", 2)]


def test_mode_all_counts_a_hard_death(
    shared: Path, make_watcher: MakeWatcher, hold: Callable[[str], OwnLock]
) -> None:
    (shared / "a.done").write_text("0")
    write_json(shared / "b.started", {"name": "b", "pid": 1, "attempt": 1})
    hold("b").release()
    watcher = make_watcher(("a", "b"), mode="all")

    watcher.check()

    assert watcher.satisfied
    assert {c.target: c.source for c in watcher.completions} == {"a": "marker", "b": "lock"}


# --- --marker paths outside the shared dir ----------------------------------------


def test_marker_path_outside_the_dir_counts(tmp_path: Path, make_watcher: MakeWatcher) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    marker = elsewhere / "finished"
    watcher = make_watcher((), markers=(marker,))
    watcher.check()
    assert not watcher.satisfied

    marker.touch()
    watcher.check()

    assert watcher.satisfied
    completion = only(watcher)
    assert (completion.target, completion.source) == (str(marker), "marker")
    assert not completion.failed


def test_file_watcher_wakes_the_loop_when_a_marker_appears(
    tmp_path: Path, make_watcher: MakeWatcher, loop: Loop
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    marker = elsewhere / "finished"
    watcher = make_watcher((), markers=(marker,))
    watcher.check()
    assert not watcher.satisfied

    # The watcher thread may still be setting up inotify when the marker first
    # appears, so the marker is written again until an event comes; check() is
    # never called: only the file watcher can wake the loop here.
    deadline = time.monotonic() + EVENT_TIMEOUT
    writes = 0
    while not watcher.satisfied:
        assert time.monotonic() < deadline, f"no file event after {writes} writes"
        marker.write_text(str(writes))
        writes += 1
        try:
            event = loop.events.get(timeout=0.5)
        except queue.Empty:
            continue
        assert isinstance(event, SourceChanged)
        assert event.label is None
        assert watcher.handle(event)

    assert only(watcher).target == str(marker)


def test_marker_folder_created_later_is_found_by_the_rescan(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    marker = tmp_path / "later" / "finished"
    watcher = make_watcher((), markers=(marker,))
    watcher.check()
    assert not watcher.satisfied

    marker.parent.mkdir()
    marker.touch()
    watcher.handle(RESCAN_TICK)

    assert watcher.satisfied


def test_unknown_events_are_not_the_watchers(make_watcher: MakeWatcher) -> None:
    watcher = make_watcher()

    assert not watcher.handle(Signal(15))
    assert watcher.handle(RESCAN_TICK)


# --- a container that never starts --------------------------------------------------


def test_a_container_that_has_not_started_is_warned_about(
    shared: Path, make_watcher: MakeWatcher, logged: Logged, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(container_module, "NOT_STARTED_WARNING", 0.0)
    (shared / "mian.started").write_text("{}")  # the typo is in the sidecar's --wait-for
    watcher = make_watcher(("main",))

    watcher.check()
    watcher.check()  # the next warning waits for twice the interval: not this soon

    warnings = [f for level, e, f in logged if e == "not_started" and level == "warning"]
    assert len(warnings) == 1, logged
    assert warnings[0]["target"] == "main"
    assert warnings[0]["dir_holds"] == ["mian.started"]
    assert any("typo" in cause for cause in warnings[0]["likely"])
    assert not watcher.satisfied


def test_a_container_that_never_starts_is_a_failed_completion_after_the_timeout(
    shared: Path, make_watcher: MakeWatcher
) -> None:
    watcher = make_watcher(("main",), start_timeout=0.001)
    time.sleep(0.01)  # not a measurement: only past a one-millisecond timeout

    watcher.check()

    assert watcher.satisfied
    completion = only(watcher)
    assert (completion.source, completion.reason, completion.failed) == (
        "start",
        "NeverStarted",
        True,
    )


def test_a_started_container_is_not_subject_to_the_start_timeout(
    shared: Path, make_watcher: MakeWatcher, hold: Callable[[str], OwnLock]
) -> None:
    hold("main")
    write_json(shared / "main.started", {"name": "main", "pid": 1, "attempt": 1})
    watcher = make_watcher(("main",), start_timeout=0.001)
    time.sleep(0.01)

    watcher.check()

    assert not watcher.satisfied


# --- the rescan's schedule ----------------------------------------------------------


def test_no_rescan_is_scheduled_while_every_target_holds_its_lock(
    shared: Path,
    loop: Loop,
    make_watcher: MakeWatcher,
    hold: Callable[[str], OwnLock],
) -> None:
    """A sidecar blocked on its mains' locks has nothing to rescan: the kernel
    wakes it, so its loop sleeps without a timer; the rescan comes back when a
    target is no longer waited on that way."""
    first, second = hold("a"), hold("b")
    watcher = make_watcher(("a", "b"), poll_interval=2.0)

    watcher.check()
    assert lock_threads("a") == lock_threads("b") == 1
    assert not loop.pending(RESCAN)

    second.release()
    watcher.handle(next_event(loop, SourceChanged, label="b"))
    assert not loop.pending(RESCAN)  # b ended without a record: found, nothing to rescan
    assert [c.target for c in watcher.completions] == ["b"]

    first.release()
    (shared / "a.done").write_text("0\n")
    watcher.handle(next_event(loop, SourceChanged, label="a"))
    assert watcher.satisfied
    assert not loop.pending(RESCAN)


def test_the_rescan_runs_while_a_target_has_not_started(
    shared: Path, loop: Loop, make_watcher: MakeWatcher, hold: Callable[[str], OwnLock]
) -> None:
    watcher = make_watcher(("late",), poll_interval=2.0)

    watcher.check()
    assert loop.pending(RESCAN)  # no lock yet: only a look finds it

    hold("late")
    watcher.handle(RESCAN_TICK)
    assert lock_threads("late") == 1
    assert not loop.pending(RESCAN)
