"""A sidecar writes ``NAME.ready`` -> the main's ``--wait-ready`` gate opens and COMMAND runs.

The sidecar is a ``FakeSidecar`` (protocol.py): it holds ``proxy.lock``, has
written ``proxy.started``, and writes ``proxy.ready`` atomically as the
protocol says, the time taken right before the rename that makes it visible.
The main is real: ``main --wait-ready proxy -- sh -c 'echo running'``; the
moment its child's line arrives on the pipe read here is when the gate has
opened and COMMAND runs (sh alone starts in about a millisecond, see the
"no wrapper" baseline of exec -> child running). The trigger waits until the
main has logged ``waiting_for_gates``, then a settling pause and a random
phase of ``--ready-interval``'s default, so a gate that polls is not met in
step with its clock.

Baselines: the same gate written by hand in the main's command, a shell loop
``until [ -f proxy.ready ]; do sleep 1; done`` and the same loop with the
0.5 s of ``--ready-interval``'s default.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Iterator
from functools import partial

from benchmarks import commands
from benchmarks.context import Context
from benchmarks.harness import Pod, Proc, collect, event_ns, ms, realtime_offset_ns
from benchmarks.model import Check, Figure, Series, Spec
from benchmarks.protocol import FakeSidecar

SPEC = Spec(
    "ready_gate",
    ".ready written -> the main's --wait-ready gate opens (its COMMAND running)",
    "ms",
    (Check("p50", 10.0),),
)
READY_INTERVAL = 0.5  # --ready-interval's default
RUNNING = ["sh", "-c", "echo running"]
TIMEOUT = 10.0
SETTLE = 0.3
NAME = "proxy"


def _breakdown(main: Proc, written: int) -> dict[str, float]:
    offset = realtime_offset_ns()
    found: dict[str, float] = {}
    for name in ("gates_ready", "child_started"):
        event = main.event(name)
        stamp = None if event is None else event_ns(event, offset)
        if stamp is not None:
            found[f"{name} (main)"] = ms(stamp - written)
    return found


@contextlib.contextmanager
def _pod_with_sidecar(ctx: Context, name: str) -> Iterator[tuple[Pod, FakeSidecar]]:
    """A pod whose shared dir holds a running (emulated) sidecar, not ready yet."""
    with Pod(ctx.trial_dir(name)) as pod:
        shared = pod.dir / "shared"
        shared.mkdir()
        sidecar = FakeSidecar(shared, NAME)
        sidecar.start()
        try:
            yield pod, sidecar
        finally:
            sidecar.release()


def _opened(
    ctx: Context, main: Proc, sidecar: FakeSidecar, period: float
) -> tuple[int, int] | None:
    """Write ``.ready`` at a random phase of ``period``; (written, line arrived) stamps."""
    time.sleep(SETTLE)
    ctx.random_phase(period)
    written = sidecar.mark_ready()
    if main.expect("running", TIMEOUT) is None or main.first_line_ns is None:
        return None
    return written, main.first_line_ns


def _supervised(ctx: Context, breakdowns: list[dict[str, float]]) -> float | None:
    with _pod_with_sidecar(ctx, "ready") as (pod, sidecar):
        argv = commands.main(pod.dir / "shared", "--wait-ready", NAME, command=RUNNING)
        main = pod.start(argv, name="main", namespace=ctx.namespace)
        main.settled("waiting_for_gates")
        stamps = _opened(ctx, main, sidecar, READY_INTERVAL)
        if stamps is None:
            return None
        main.wait()
        written, arrived = stamps
        opened = ms(arrived - written)
        breakdowns.append({**_breakdown(main, written), "COMMAND's line arrived": opened})
        return opened


def _shell_loop(ctx: Context, period: float) -> float | None:
    with _pod_with_sidecar(ctx, "ready-base") as (pod, sidecar):
        ready = shlex.quote(str(sidecar.ready))
        script = f"until [ -f {ready} ]; do sleep {period:g}; done; exec {shlex.join(RUNNING)}"
        main = pod.start(["sh", "-c", script], name="loop", namespace=ctx.namespace)
        stamps = _opened(ctx, main, sidecar, period)
        return None if stamps is None else ms(stamps[1] - stamps[0])


def ready_gate(ctx: Context) -> Figure:
    s = ctx.settings
    breakdowns: list[dict[str, float]] = []
    subject = collect("sidecar-supervisor", s.samples, partial(_supervised, ctx, breakdowns))
    baselines: list[Series] = [
        collect(
            f"shell loop, sleep {period:g}",
            s.baseline_samples,
            partial(_shell_loop, ctx, period),
        )
        for period in (1.0, READY_INTERVAL)
    ]
    return Figure(
        SPEC,
        subject,
        baselines=baselines,
        notes=[
            "from just before the rename that makes NAME.ready visible (the sidecar emulated per "
            "docs/PROTOCOL.md, holding its lock) to the main's COMMAND line arriving on the pipe; "
            "steps are after .ready was written",
            f"baselines: the main's command is `until [ -f {NAME}.ready ]; do sleep 1; done; "
            "COMMAND` (and the same with sleep 0.5)",
            f"triggers land at a random phase of {READY_INTERVAL:g} s (--ready-interval's "
            "default) or of each loop's period",
        ],
        extra={"breakdowns_ms": breakdowns},
    )
