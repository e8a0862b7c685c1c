"""One sidecar waiting on 100 mains (``--wait-mode all``): last marker -> stop signal.

The hundred mains are ``FakeMain``s (protocol.py): each holds its lock and
has written ``.started``, as a running main's wrapper does, without a hundred
interpreters. The sidecar starts once all are running; when its hundred lock
threads are blocked, 99 mains finish, and once it has logged 99 completions the
last one finishes: the time runs from just before its ``.done`` is written.
The baselines wait for the same hundred ``.done`` files.
"""

from __future__ import annotations

import time
from functools import partial

from benchmarks import commands
from benchmarks.commands import WAITERS, Waiter
from benchmarks.context import Context
from benchmarks.harness import Pod, collect, ms, need, now_ns, wait_until
from benchmarks.model import Check, Figure, Spec
from benchmarks.procfs import locks_waited_on
from benchmarks.protocol import FakeMain

SPEC = Spec(
    "fan_in",
    "waiting on 100 mains, --wait-mode all: last marker -> stop signal received",
    "ms",
    (Check("p50", 10.0),),
)
STOP_TIMEOUT = 10.0
SETTLE = 0.3


def _mains(ctx: Context, pod: Pod) -> list[FakeMain]:
    shared = pod.dir / "shared"
    shared.mkdir()
    mains = [FakeMain(shared, f"main{i}") for i in range(ctx.settings.fanin_mains)]
    for main in mains:
        main.start()
    return mains


def _supervised(ctx: Context) -> float | None:
    with Pod(ctx.trial_dir("fanin")) as pod:
        mains = _mains(ctx, pod)
        try:
            options = [word for m in mains for word in ("--wait-for", m.name)]
            side = pod.start(
                commands.sidecar(pod.dir / "shared", "--wait-mode", "all", *options),
                name="sidecar",
                namespace=ctx.namespace,
            )
            need(side.expect("ready"), "the sidecar's child never started")
            side.settled()
            locks = [m.lock for m in mains]
            need(
                wait_until(lambda: locks_waited_on(locks) == len(locks)),
                "the sidecar never blocked on every lock",
            )
            for main in mains[:-1]:
                main.finish()
            need(
                wait_until(lambda: side.count("completion_detected") >= len(mains) - 1),
                "the sidecar never saw the first mains complete",
            )
            time.sleep(0.05)
            started = now_ns()
            mains[-1].finish()
            stopped = side.stamp("signal", STOP_TIMEOUT)
            return None if stopped is None else ms(stopped - started)
        finally:
            for main in mains:
                main.release()


def _workaround(ctx: Context, waiter: Waiter) -> float | None:
    with Pod(ctx.trial_dir("fanin-base")) as pod:
        mains = _mains(ctx, pod)
        try:
            argv = waiter.build([m.done for m in mains], commands.child())
            side = pod.start(argv, name="waiter", namespace=ctx.namespace)
            need(side.expect("ready"), "the waiter's child never started")
            for main in mains[:-1]:
                main.finish()
            time.sleep(SETTLE)
            ctx.random_phase(waiter.period)
            started = now_ns()
            mains[-1].finish()
            stopped = side.stamp("signal", STOP_TIMEOUT)
            return None if stopped is None else ms(stopped - started)
        finally:
            for main in mains:
                main.release()


def fan_in(ctx: Context) -> Figure:
    s = ctx.settings
    subject = collect("sidecar-supervisor", s.fanin_samples, partial(_supervised, ctx))
    baselines = [
        collect(w.label, s.baseline_samples, partial(_workaround, ctx, w)) for w in WAITERS
    ]
    return Figure(
        SPEC,
        subject,
        baselines=baselines,
        notes=[
            f"{s.fanin_mains} mains emulated by the harness per the shared-volume contract "
            "(lock, .started, .done); the sidecar is real, with one --wait-for per main",
        ],
    )
