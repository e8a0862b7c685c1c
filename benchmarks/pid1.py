"""PID 1's duties next to tini and dumb-init: forwarding a signal, reaping orphans.

Each wrapper runs as PID 1 of its own PID namespace where the machine allows,
as it would in a container.

- Forwarding: the child blocks SIGTERM and takes it with ``sigwaitinfo``; the
  harness stamps the time, sends SIGTERM to the wrapper, and the child prints
  when it got it. Many signals per process, sent once the wrapper has logged
  ``child_started`` (its start-up work is over). "no wrapper" sends the signal
  to the child itself: the kernel's floor.
- Orphans: ``workloads/orphans.py`` under each wrapper makes orphans in batches
  and then looks at /proc until no zombie is left. The figure is PID 1's own
  CPU time (every thread's schedstat) over the run, per 10,000 orphans: what
  the reaping costs the wrapper. The wall time (from the workload's start to
  the moment no zombie is left) is shown beside it; it is mostly the
  workload's own forking, the same under every wrapper.
"""

from __future__ import annotations

import json
import os
import signal
import time

from benchmarks import commands
from benchmarks.commands import DUMB_INIT, SUPERVISED, TINI, UNWRAPPED, Wrapper
from benchmarks.context import Context
from benchmarks.harness import SAFETY, Pod, ms, need, now_ns, workload
from benchmarks.model import Check, Figure, Series, Spec
from benchmarks.procfs import cpu_ns

FORWARD = Spec(
    "signal_forwarding",
    "SIGTERM to the supervisor -> received by the child (forwarding, main role)",
    "ms",
    (Check("p50", 2.0),),
)
ORPHANS = Spec(
    "orphan_reaping",
    "PID 1's CPU to reap 10,000 orphans (per run; --quick: 300, scaled)",
    "ms",
    (Check("p50", factor=2.0, baseline="tini"),),
    budget="0 zombies left; PID 1's CPU p50 <= 2x tini's",
    plot=False,
)
PER = 10_000  # the figure is PID 1's CPU per this many orphans
WALL = "s wall"
SIGNAL_TIMEOUT = 10.0


def _unavailable(ctx: Context, wrapper: Wrapper) -> Series | None:
    missing = ctx.missing(wrapper.tool) if wrapper.tool else None
    return Series(wrapper.label, unavailable=missing) if missing else None


def _forwarding(ctx: Context, wrapper: Wrapper) -> Series:
    series = _unavailable(ctx, wrapper) or Series(wrapper.label)
    if not series.available:
        return series
    pid1 = ctx.namespace and wrapper is not UNWRAPPED
    child = [*commands.child(), "--loop"]
    for _ in range(ctx.settings.processes):
        with Pod(ctx.trial_dir("forward")) as pod:
            argv = wrapper.argv(ctx, pod.dir / "shared", child, pid1=pid1)
            proc = pod.start(argv, name="wrapper", namespace=pid1)
            child_pid = int(need(proc.expect("ready"), f"{wrapper.label}: no child")[1])
            if wrapper is SUPERVISED:
                proc.settled()
            time.sleep(0.05)
            target = child_pid if wrapper is UNWRAPPED else proc.pid
            for _ in range(ctx.settings.signals):
                sent = now_ns()
                os.kill(target, signal.SIGTERM)
                got = proc.stamp("signal", SIGNAL_TIMEOUT)
                if got is None:
                    series.timeouts += 1
                    break
                series.samples.append(ms(got - sent))
                time.sleep(0.005)
    return series


def signal_forwarding(ctx: Context) -> Figure:
    subject = _forwarding(ctx, SUPERVISED)
    baselines = [_forwarding(ctx, w) for w in (TINI, DUMB_INIT, UNWRAPPED)]
    baselines[-1].label = "no wrapper (kill the child directly)"
    s = ctx.settings
    return Figure(
        FORWARD,
        subject,
        baselines=baselines,
        notes=[
            f"{s.processes} process(es) x {s.signals} signals per wrapper, 5 ms apart; "
            f"wrappers are PID 1 of a PID namespace: {ctx.namespace}",
        ],
    )


def _orphan_run(ctx: Context, wrapper: Wrapper) -> dict[str, int | None]:
    n = ctx.settings.orphans
    timeout = max(5.0, n / 1000)
    with Pod(ctx.trial_dir("orphans")) as pod:
        command = workload("orphans", str(n), str(timeout))
        proc = pod.start(
            wrapper.argv(ctx, pod.dir / "shared", command, pid1=True), name="pid1", namespace=True
        )
        need(proc.expect("orphans-ready"), f"{wrapper.label}: the orphan maker never started")
        if wrapper is SUPERVISED:
            proc.settled()
        pid = proc.pid
        before = cpu_ns(pid)
        proc.send()
        words = need(proc.expect("result", SAFETY + n / 100), f"{wrapper.label}: no result")
        result: dict[str, int | None] = json.loads(words[1])
        result["pid1_cpu_ns"] = cpu_ns(pid) - before
        proc.send()
        proc.wait()
        return result


def orphan_reaping(ctx: Context) -> Figure:
    if not ctx.namespace:
        reason = "needs a PID namespace (unshare --pid) to be PID 1"
        return Figure(ORPHANS, Series(SUPERVISED.label, unavailable=reason))
    n = ctx.settings.orphans
    runs: dict[str, list[dict[str, int | None]]] = {}
    series: list[Series] = []
    for wrapper in (SUPERVISED, TINI, DUMB_INIT):
        missing = _unavailable(ctx, wrapper)
        if missing is not None:
            series.append(missing)
            continue
        found = runs[wrapper.label] = [
            _orphan_run(ctx, wrapper) for _ in range(ctx.settings.orphan_runs)
        ]
        one = Series(wrapper.label, timeout_s=max(5.0, n / 1000), also={WALL: []})
        for run in found:
            reaped, started, cpu = run["reaped_ns"], run["started_ns"], run["pid1_cpu_ns"]
            if reaped is None or started is None or cpu is None:
                one.timeouts += 1
            else:
                one.samples.append(cpu / 1e6 * PER / n)
                one.also[WALL].append((reaped - started) / 1e9)
        series.append(one)
    mine = runs.get(SUPERVISED.label, [])
    left = max((r["zombies_left"] or 0 for r in mine), default=0)
    return Figure(
        ORPHANS,
        series[0],
        baselines=series[1:],
        conditions=[("0 zombies left", left == 0)],
        notes=[
            f"{ctx.settings.orphan_runs} run(s) of {n} orphans per wrapper per round, each "
            "wrapper PID 1 of its own PID namespace",
            f"the value: PID 1's CPU time (all its threads) over the run, in ms per {PER:,} "
            "orphans"
            + (f" (scaled from {n})" if n != PER else "")
            + "; 's wall': from the workload's start to no zombie left, mostly its own forking",
        ],
        extra={"runs": [{"wrapper": k, **r} for k, found in runs.items() for r in found]},
    )
