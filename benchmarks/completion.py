"""A main container ends -> the sidecar's child gets its stop signal.

Two ways to end: the main's COMMAND exits (the wrapper writes ``main.done`` and
drops ``main.lock``), or the main's wrapper is SIGKILLed and writes nothing
(only the lock's release tells). Each trial is a fresh pod: a sidecar and a
main, each in its own PID namespace where the machine allows, sharing one
folder. The trigger waits until the sidecar's lock thread is blocked on
``main.lock`` (seen in /proc/locks), i.e. the steady state of a running pod.

Baselines are the same pod with today's workarounds: the main's command is
``COMMAND; touch main.done`` and the sidecar's is wrapped in a waiter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from functools import partial
from typing import Any

from benchmarks import commands
from benchmarks.commands import WAITERS, Waiter
from benchmarks.context import Context
from benchmarks.harness import (
    Pod,
    Proc,
    collect,
    event_ns,
    ms,
    need,
    now_ns,
    realtime_offset_ns,
    wait_until,
)
from benchmarks.model import Check, Figure, Series, Spec
from benchmarks.procfs import lock_waiters

EXIT = Spec(
    "main_exit",
    "main's COMMAND exits -> stop signal received by the sidecar child",
    "ms",
    (Check("p50", 5.0), Check("p95", 15.0)),
)
KILLED = Spec(
    "main_killed",
    "main container SIGKILLed, no marker -> stop signal received (lock)",
    "ms",
    (Check("p50", 10.0),),
)
STOP_TIMEOUT = 10.0  # seconds a supervised sidecar gets to react: a safety net
SETTLE = 0.3  # seconds for a baseline waiter to be up before the trigger
PHASES = ("child_exited", "completion_detected", "stop_requested")


def _start_supervised(ctx: Context, pod: Pod) -> tuple[Proc, Proc]:
    shared = pod.dir / "shared"
    side = pod.start(commands.sidecar(shared), name="sidecar", namespace=ctx.namespace)
    need(side.expect("ready"), "the sidecar's child never started")
    main = pod.start(commands.main(shared), name="main", namespace=ctx.namespace)
    need(main.expect("main-ready"), "the main's COMMAND never started")
    side.settled()
    main.settled()
    lock = shared / "main.lock"
    need(wait_until(lambda: lock_waiters(lock) > 0), "the sidecar never blocked on main.lock")
    time.sleep(0.05)  # the file watcher thread winds down: measure the steady state
    return side, main


def _breakdown(side: Proc, main: Proc, exited: int) -> dict[str, float]:
    """When each logged step happened, in ms after COMMAND's exit (log clocks: us)."""
    offset = realtime_offset_ns()
    found: dict[str, float] = {}
    for proc, name in ((main, "child_exited"), (side, "completion_detected")):
        event = proc.event(name)
        stamp = None if event is None else event_ns(event, offset)
        if stamp is not None:
            found[f"{name} ({'main' if proc is main else 'sidecar'})"] = ms(stamp - exited)
    event = side.event("stop_requested")
    stamp = None if event is None else event_ns(event, offset)
    if stamp is not None:
        found["stop_requested (sidecar)"] = ms(stamp - exited)
    return found


def _supervised_exit(ctx: Context, breakdowns: list[dict[str, float]]) -> float | None:
    with Pod(ctx.trial_dir("exit")) as pod:
        side, main = _start_supervised(ctx, pod)
        main.send()
        exited = need(main.stamp("exit"), "the main's COMMAND never exited")
        stopped = side.stamp("signal", STOP_TIMEOUT)
        if stopped is None:
            return None
        need(side.wait(), "the sidecar never exited")
        need(main.wait() is not None, "the main's wrapper never exited")
        breakdowns.append(
            {**_breakdown(side, main, exited), "child got SIGTERM": ms(stopped - exited)}
        )
        return ms(stopped - exited)


def _supervised_kill(ctx: Context) -> float | None:
    with Pod(ctx.trial_dir("kill")) as pod:
        side, main = _start_supervised(ctx, pod)
        wrapper = main.pid
        killed = now_ns()
        os.kill(wrapper, signal.SIGKILL)
        stopped = side.stamp("signal", STOP_TIMEOUT)
        return None if stopped is None else ms(stopped - killed)


def _start_workaround(ctx: Context, pod: Pod, waiter: Waiter) -> tuple[Proc, Proc]:
    done = pod.dir / "main.done"
    side = pod.start(waiter.build([done], commands.child()), name="waiter", namespace=ctx.namespace)
    need(side.expect("ready"), "the waiter's child never started")
    main = pod.start(commands.workaround_main(done), name="main", namespace=ctx.namespace)
    need(main.expect("main-ready"), "the workaround main never started")
    return side, main


def _workaround_exit(ctx: Context, waiter: Waiter) -> float | None:
    with Pod(ctx.trial_dir("exit-base")) as pod:
        side, main = _start_workaround(ctx, pod, waiter)
        time.sleep(SETTLE)
        ctx.random_phase(waiter.period)
        main.send()
        exited = need(main.stamp("exit"), "the workaround main never exited")
        stopped = side.stamp("signal", STOP_TIMEOUT)
        return None if stopped is None else ms(stopped - exited)


def _workarounds_killed(ctx: Context) -> list[Series]:
    """One trial of each workaround, all at once: they are expected to wait forever."""
    timeout = ctx.settings.hang_timeout
    with contextlib.ExitStack() as stack:
        pods = [(w, stack.enter_context(Pod(ctx.trial_dir("kill-base")))) for w in WAITERS]
        started = [(w, *_start_workaround(ctx, pod, w)) for w, pod in pods]
        time.sleep(SETTLE)
        killed = now_ns()
        for _, _, main in started:
            os.killpg(main.popen.pid, signal.SIGKILL)  # the whole container: no touch runs
        found = []
        for waiter, side, _ in started:
            left = max(0.0, timeout - (now_ns() - killed) / 1e9)
            stopped = side.stamp("signal", left)
            series = Series(waiter.label, timeout_s=timeout)
            if stopped is None:
                series.timeouts += 1
            else:
                series.samples.append(ms(stopped - killed))
            found.append(series)
        return found


def main_exit(ctx: Context) -> Figure:
    s = ctx.settings
    breakdowns: list[dict[str, float]] = []
    subject = collect("sidecar-supervisor", s.samples, lambda: _supervised_exit(ctx, breakdowns))
    baselines = [
        collect(w.label, s.baseline_samples, partial(_workaround_exit, ctx, w)) for w in WAITERS
    ]
    extra: dict[str, Any] = {"breakdowns_ms": breakdowns}
    return Figure(
        EXIT,
        subject,
        baselines=baselines,
        extra=extra,
        notes=[
            "from the moment COMMAND calls exit (its own monotonic stamp) to the moment the "
            "sidecar's child takes SIGTERM (sigwaitinfo, its own stamp); includes the kernel's "
            "teardown of the exiting process; steps are after COMMAND's exit",
            f"pods in PID namespaces: {ctx.namespace}",
        ],
    )


def main_killed(ctx: Context) -> Figure:
    s = ctx.settings
    subject = collect("sidecar-supervisor", s.samples, lambda: _supervised_kill(ctx))
    baselines = _workarounds_killed(ctx)
    return Figure(
        KILLED,
        subject,
        baselines=baselines,
        notes=[
            "from the SIGKILL to the main's wrapper (the whole container for the workarounds) "
            "to the sidecar child's SIGTERM",
            f"workarounds: one trial each (run side by side), given {s.hang_timeout:g} s; with "
            "no marker written they never stop (a hung Job)",
        ],
    )
