"""Memory and idle CPU of each supervisor in a running pod, next to the alternatives.

One pod, everything running at once: a sidecar supervisor (started first, so
it went through the file-watcher phase before the main appeared, the costlier
order), a main supervisor whose COMMAND runs, a second sidecar started after
the main (it never needs the file watcher), a third that waits for a
``--marker`` only (its file watcher runs all the time), and the baselines,
each with a ``sleep`` child: tini and dumb-init (as PID 1), the shell loop, a
1 s stat poller and a watchfiles waiter (waiting for a file that never comes),
and an idle ``python`` for the interpreter's floor. After the pod has settled,
VmRSS is read every second and CPU time (every thread's schedstat, plus reaped
children's) over the window, normalised to ms per 10 s.
"""

from __future__ import annotations

import time

import psutil

from benchmarks import commands
from benchmarks.commands import DUMB_INIT, POLL, SHELL, TINI, WATCHFILES
from benchmarks.context import Context
from benchmarks.harness import PY, Pod, Proc, need, wait_until
from benchmarks.model import Check, Figure, Series, Spec
from benchmarks.procfs import cpu_ns, lock_waiters, rss_mb

RSS_SIDECAR = Spec(
    "rss_sidecar",
    "RSS of the sidecar supervisor in a running pod",
    "MB",
    (Check("max", 25.0),),
    plot=False,
)
RSS_MAIN = Spec(
    "rss_main",
    "RSS of the main supervisor in a running pod",
    "MB",
    (Check("max", 25.0),),
    plot=False,
)
CPU_SIDECAR = Spec(
    "cpu_sidecar",
    "CPU of the sidecar supervisor while the main runs and it waits",
    "ms/10 s",
    (Check("mean", 10.0),),
    budget="<= 10 ms per 10 s (the window's mean)",
    stats=("mean", "max"),
    plot=False,
)
CPU_MAIN = Spec(
    "cpu_main",
    "CPU of the main supervisor while its COMMAND runs",
    "ms/10 s",
    (Check("mean", 10.0),),
    budget="<= 10 ms per 10 s (the window's mean)",
    stats=("mean", "max"),
    plot=False,
)
SPECS = (RSS_SIDECAR, RSS_MAIN, CPU_SIDECAR, CPU_MAIN)
SLEEP = ["sleep", "100000"]
SETTLE = 1.0
FLOOR = "idle python (interpreter floor)"
LATE = "sidecar started after the main"
MARKER = "sidecar waiting for a --marker only (file watcher runs)"


def _start_pod(ctx: Context, pod: Pod) -> dict[str, Proc]:
    shared = pod.dir / "shared"
    ns = ctx.namespace
    procs = {
        "sidecar": pod.start(commands.sidecar(shared, command=SLEEP), name="sidecar", namespace=ns)
    }
    procs["sidecar"].settled()
    procs["main"] = pod.start(commands.main(shared, command=SLEEP), name="main", namespace=ns)
    procs["main"].settled()
    need(wait_until(lambda: lock_waiters(shared / "main.lock") > 0), "no lock waiter")
    late = commands.sidecar(shared, "--name", "sidecar2", command=SLEEP)
    procs[LATE] = pod.start(late, name="late", namespace=ns)
    procs[LATE].settled()
    never = [pod.dir / "never" / "main.done"]
    (pod.dir / "never").mkdir()
    marker = commands.sidecar(
        shared, "--name", "sidecar3", "--marker", str(never[0]), command=SLEEP
    )
    procs[MARKER] = pod.start(marker, name="marker", namespace=ns)
    procs[MARKER].settled()
    for waiter in (SHELL, POLL, WATCHFILES):
        procs[waiter.label] = pod.start(waiter.build(never, SLEEP), name="waiter")
    for wrapper in (TINI, DUMB_INIT):
        if not ctx.missing(wrapper.tool or ""):
            argv = wrapper.argv(ctx, shared, SLEEP, pid1=ns)
            procs[wrapper.label] = pod.start(argv, name=wrapper.label, namespace=ns)
    floor = [PY, "-c", "import time; time.sleep(100000)"]
    procs[FLOOR] = pod.start(floor, name="floor")
    return procs


def _measure(ctx: Context, procs: dict[str, Proc]) -> tuple[dict[str, Series], dict[str, Series]]:
    pids = {label: proc.pid for label, proc in procs.items()}
    wrappers = [pid for label, pid in pids.items() if label != FLOOR]
    need(wait_until(lambda: all(_has_child(pid) for pid in wrappers)), "a child is missing")
    time.sleep(SETTLE)
    rss = {label: Series(label) for label in pids}
    cpu = {label: Series(label) for label in pids}
    last = {label: cpu_ns(pid, children=True) for label, pid in pids.items()}
    seconds = max(1, round(ctx.settings.cpu_window))
    for _ in range(seconds):
        time.sleep(1.0)
        for label, pid in pids.items():
            now = cpu_ns(pid, children=True)
            cpu[label].samples.append((now - last[label]) / 1e6 * 10)  # ms per 10 s
            last[label] = now
            rss[label].samples.append(rss_mb(pid))
    return rss, cpu


def _has_child(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).children())
    except psutil.Error:
        return False


def _figure(spec: Spec, key: str, found: dict[str, Series], ctx: Context) -> Figure:
    baselines = [found[k] for k in found if k not in ("sidecar", "main", LATE, MARKER)]
    baselines += [
        Series(w.label, unavailable=ctx.missing(w.tool or ""))
        for w in (TINI, DUMB_INIT)
        if ctx.missing(w.tool or "")
    ]
    subject = found[key]
    subject.label = f"sidecar-supervisor {key}"
    variants = [found[LATE], found[MARKER]] if key == "sidecar" else []
    what = "VmRSS, read every second" if spec.unit == "MB" else "CPU time, per 1 s, as ms per 10 s"
    return Figure(
        spec,
        subject,
        variants=variants,
        baselines=baselines,
        notes=[f"{what} over a {ctx.settings.cpu_window:g} s window, all processes at once"],
    )


def resources(ctx: Context) -> list[Figure]:
    with Pod(ctx.trial_dir("resources")) as pod:
        rss, cpu = _measure(ctx, _start_pod(ctx, pod))
    build: list[tuple[Spec, str, dict[str, Series]]] = [
        (RSS_SIDECAR, "sidecar", rss),
        (RSS_MAIN, "main", rss),
        (CPU_SIDECAR, "sidecar", cpu),
        (CPU_MAIN, "main", cpu),
    ]
    return [_figure(spec, key, _copy(found), ctx) for spec, key, found in build]


def _copy(found: dict[str, Series]) -> dict[str, Series]:
    """Each figure gets its own series (their labels are set per figure)."""
    return {key: Series(s.label, list(s.samples)) for key, s in found.items()}
