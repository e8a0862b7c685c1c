"""The loop in-process: signals taken with sigtimedwait, helper threads ringing it.

Each test runs ``signal_loop`` in the test process's main thread, with a
``deadline`` as its safety net, and a reaper of its own (never ``waitpid(-1)``,
which would take other tests' children). The fault test runs its loop in a child
process, since a real fault must end the process that takes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from supervisor import log
from supervisor.events import Event, Signal, SourceChanged, TimerFired
from supervisor.loop import signal_loop
from supervisor.signals import HANDLED

SAFETY = 30.0  # a safety net for a loaded machine, never a measurement


def test_a_post_from_a_helper_thread_wakes_a_loop_with_nothing_to_wait_for() -> None:
    seen: list[Event] = []
    with signal_loop() as loop:
        threading.Timer(0.05, lambda: loop.post(SourceChanged("x"))).start()
        finished = loop.run_until(lambda: bool(seen), seen.append, time.monotonic() + SAFETY)
    assert finished
    assert [type(e) for e in seen] == [SourceChanged]


def test_a_signal_sent_before_the_loop_sleeps_is_not_lost() -> None:
    seen: list[Event] = []
    with signal_loop() as loop:
        os.kill(os.getpid(), signal.SIGUSR1)  # blocked: it waits, pending, for the loop
        finished = loop.run_until(lambda: bool(seen), seen.append, time.monotonic() + SAFETY)
    assert finished
    assert [(type(e), getattr(e, "signum", None)) for e in seen] == [(Signal, signal.SIGUSR1)]


def test_sigchld_calls_the_reaper_and_dispatches_what_it_returns() -> None:
    seen: list[Event] = []
    with signal_loop() as loop:
        pid = os.posix_spawnp("true", ["true"], os.environ)

        def reaper() -> list[Event]:
            done, _ = os.waitpid(pid, os.WNOHANG)
            return [TimerFired("reaped")] if done else []

        loop.reaper = reaper
        finished = loop.run_until(lambda: bool(seen), seen.append, time.monotonic() + SAFETY)
    assert finished
    assert [getattr(e, "name", None) for e in seen] == ["reaped"]


def test_timers_fire_while_events_keep_coming() -> None:
    fired: list[str] = []
    stop = threading.Event()

    def handle(event: Event) -> None:
        if isinstance(event, TimerFired):
            fired.append(event.name)

    with signal_loop() as loop:

        def flood() -> None:
            while not stop.is_set():
                loop.post(SourceChanged("flood"))
                time.sleep(0.001)

        loop.every("tick", 0.02)
        threading.Thread(target=flood, daemon=True).start()
        try:
            finished = loop.run_until(lambda: len(fired) >= 3, handle, time.monotonic() + SAFETY)
        finally:
            stop.set()
    assert finished


def test_an_ignored_signal_is_dropped_as_the_kernel_would() -> None:
    """SIGTTOU once COMMAND has the terminal (``process.Terminal`` ignores it)."""
    seen: list[Event] = []
    with signal_loop() as loop:
        previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.kill(os.getpid(), signal.SIGTTOU)
            os.kill(os.getpid(), signal.SIGUSR2)
            loop.run_until(lambda: bool(seen), seen.append, time.monotonic() + SAFETY)
        finally:
            signal.signal(signal.SIGTTOU, previous)
    assert [getattr(e, "signum", None) for e in seen] == [signal.SIGUSR2]


def test_the_mask_and_handlers_are_restored_and_a_pending_signal_dropped() -> None:
    got: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: got.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    try:
        with signal_loop():
            assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) >= HANDLED
            os.kill(os.getpid(), signal.SIGUSR1)  # never taken by a loop
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
        assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGUSR1)  # the old handler has it again
        deadline = time.monotonic() + SAFETY
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


# --- an event's log lines ------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[None]:
    log.configure("json", role="sidecar", name="proxy")
    yield
    log.configure()


def events_in(err: str) -> list[str]:
    return [json.loads(line)["event"] for line in err.splitlines()]


@pytest.mark.usefixtures("json_log")
@pytest.mark.parametrize("kind", ["posted", "timer"])
def test_an_events_lines_are_written_once_it_is_handled(
    capfd: pytest.CaptureFixture[str], kind: str
) -> None:
    """What an event calls for (a stop signal) comes before the lines that say so."""
    written_meanwhile: list[str] = []
    stamped_before = 0.0

    def handle(event: Event) -> None:
        nonlocal stamped_before
        log.info("completion_detected")
        log.info("stop_requested")
        time.sleep(0.01)  # the lines' stamps are the events' times, not the writes'
        stamped_before = time.time()
        written_meanwhile.append(capfd.readouterr().err)

    with signal_loop() as loop:
        if kind == "posted":
            loop.post(SourceChanged("main"))
        else:
            loop.set_timer("delay", time.monotonic())
        finished = loop.run_until(
            lambda: bool(written_meanwhile), handle, time.monotonic() + SAFETY
        )
    written = capfd.readouterr().err

    assert finished
    assert written_meanwhile == [""]
    assert events_in(written) == ["completion_detected", "stop_requested"]
    for line in written.splitlines():
        stamp = json.loads(line)["timestamp"]
        assert stamp < log.timestamp(stamped_before)


@pytest.mark.usefixtures("json_log")
def test_a_helper_threads_line_is_not_held_by_the_loop(capfd: pytest.CaptureFixture[str]) -> None:
    written_meanwhile: list[str] = []

    def handle(event: Event) -> None:
        log.info("held")
        helper = threading.Thread(target=lambda: log.warning("thread_failed"))
        helper.start()
        helper.join(SAFETY)
        written_meanwhile.append(capfd.readouterr().err)

    with signal_loop() as loop:
        loop.post(SourceChanged("main"))
        loop.run_until(lambda: bool(written_meanwhile), handle, time.monotonic() + SAFETY)

    assert [events_in(err) for err in written_meanwhile] == [["thread_failed"]]
    assert events_in(capfd.readouterr().err) == ["held"]


@pytest.mark.usefixtures("json_log")
def test_lines_held_when_a_handler_raises_are_still_written(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def handle(event: Event) -> None:
        log.error("what_went_wrong")
        raise RuntimeError("a bug in a handler")

    with signal_loop() as loop:
        loop.post(SourceChanged("main"))
        with pytest.raises(RuntimeError, match="a bug"):
            loop.run_until(lambda: False, handle, time.monotonic() + SAFETY)

    assert events_in(capfd.readouterr().err) == ["what_went_wrong"]
    log.info("after")  # and nothing is held any more
    assert events_in(capfd.readouterr().err) == ["after"]


def test_a_fault_from_outside_is_taken_and_a_real_one_still_kills() -> None:
    """``kill -SEGV`` waits for the loop like any signal; a fault of the supervisor's
    own code is forced through by the kernel (no handler to return into the
    faulting instruction) and kills it."""
    code = """
import ctypes, os, resource, signal
from supervisor.loop import signal_loop
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
with signal_loop() as loop:
    os.kill(os.getpid(), signal.SIGSEGV)
    info = signal.sigtimedwait(loop.signals, 30)
    print("taken", info and info.si_signo, flush=True)
    ctypes.string_at(0)
print("survived", flush=True)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=SAFETY, check=False
    )
    assert result.stdout == f"taken {int(signal.SIGSEGV)}\n", result.stderr
    assert result.returncode == -signal.SIGSEGV
