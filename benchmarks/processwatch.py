"""The main's process exits -> the sidecar's child gets its stop signal (``--watch-process``).

A pod with ``shareProcessNamespace: true``, emulated: one PID namespace whose
PID 1 is a small reaper (``workloads/pod.py``, what /pause is), holding the
unwrapped main process and the sidecar's supervisor. The trigger waits until
the supervisor has logged ``process_found`` (it then blocks on the process's
pidfd). The baseline is what people write by hand in such a pod: a shell loop
``while pgrep -f PATTERN; do sleep 1; done; kill ...``.
"""

from __future__ import annotations

import json
import shlex
import time
from functools import partial

from benchmarks import commands
from benchmarks.context import Context
from benchmarks.harness import PY, Pod, Proc, collect, ms, need, workload
from benchmarks.model import Check, Figure, Series, Spec

SPEC = Spec(
    "watch_process",
    "main process exit -> stop signal received (--watch-process, shared PID namespace)",
    "ms",
    (Check("p50", 10.0),),
)
STOP_TIMEOUT = 10.0
SETTLE = 0.3
# Matches the main's command line, but no command line that quotes the pattern.
PATTERN = r"[m]ain_exit\.py"


def _pod(ctx: Context, pod: Pod, sidecar: list[str]) -> Proc:
    spec = pod.dir / "pod.json"
    spec.write_text(json.dumps([commands.main_command(), sidecar]))
    return pod.start(workload("pod", spec), name="pod", namespace=ctx.namespace)


def _supervised(ctx: Context) -> float | None:
    with Pod(ctx.trial_dir("process")) as pod:
        sidecar = commands.sidecar(pod.dir / "shared", "--watch-process", PATTERN)
        proc = _pod(ctx, pod, sidecar)
        need(proc.expect("main-ready"), "the main never started")
        need(proc.expect("ready"), "the sidecar's child never started")
        proc.settled("process_found")
        time.sleep(0.02)  # from the log line to the poll() on the pidfd
        proc.send()
        exited = need(proc.stamp("exit"), "the main never exited")
        stopped = proc.stamp("signal", STOP_TIMEOUT)
        return None if stopped is None else ms(stopped - exited)


def _shell_loop(ctx: Context) -> float | None:
    with Pod(ctx.trial_dir("process-base")) as pod:
        child = shlex.join(commands.child())
        script = (
            f"{child} & pid=$!; while pgrep -f {shlex.quote(PATTERN)} >/dev/null; "
            'do sleep 1; done; kill "$pid"; wait "$pid"'
        )
        proc = _pod(ctx, pod, ["sh", "-c", script])
        need(proc.expect("main-ready"), "the main never started")
        need(proc.expect("ready"), "the waiter's child never started")
        time.sleep(SETTLE)
        ctx.random_phase(1.0)
        proc.send()
        exited = need(proc.stamp("exit"), "the main never exited")
        stopped = proc.stamp("signal", STOP_TIMEOUT)
        return None if stopped is None else ms(stopped - exited)


def watch_process(ctx: Context) -> Figure:
    s = ctx.settings
    subject = collect("sidecar-supervisor", s.samples, partial(_supervised, ctx))
    label = "shell loop, pgrep + sleep 1"
    missing = ctx.missing("pgrep")
    baseline = (
        Series(label, unavailable=missing)
        if missing
        else collect(label, s.baseline_samples, partial(_shell_loop, ctx))
    )
    return Figure(
        SPEC,
        subject,
        baselines=[baseline],
        notes=[
            "from the main process's own exit stamp to the sidecar child's SIGTERM; the main is "
            f"not wrapped; the pod shares one PID namespace: {ctx.namespace} ({PY} runs both)",
        ],
    )
