"""Memory and idle CPU of the supervisor in every configuration, next to the alternatives.

One pod, everything running at once, each wrapper with a ``sleep`` child:

- the sidecar in each phase of its wait: before its main starts (no
  ``main.lock`` yet: the file watcher runs), in lock wait (started before the
  main, so it went through the first phase), one started after the main, one
  waiting for a ``--marker`` only (its file watcher runs all the time), one
  waiting on 100 mains (emulated per the protocol, ``protocol.py``: a hundred
  lock waits), and one with ``--ready-http`` on a local server answering 200
  (its probe passed, then lock wait);
- the main while its COMMAND runs, and a main waiting at its ``--wait-ready``
  gate for a sidecar that never gets ready;
- the baselines: tini and dumb-init (PID 1), the shell loop, a 1 s stat poller
  and a watchfiles waiter (waiting for a file that never comes), and three
  idle Pythons: one that sleeps for good (the interpreter's floor), one that
  wakes every 2 s (what any rescan every 2 s costs here) and one that wakes
  every 50 ms (the rhythm of watchfiles' default step).

After the pod has settled, VmRSS is read every second and CPU time (every
thread's schedstat, plus reaped children's) and wakeups (every thread's
voluntary and involuntary context switches) are read over windows of
``cpu_window`` seconds, both given per 10 s. On this VM a thread is charged
CPU time per wakeup, and the charge grows with the sleep before it (see
benchmarks/README.md), so the wakeups say why a number is what it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from benchmarks import commands
from benchmarks.commands import DUMB_INIT, POLL, SHELL, TINI, WATCHFILES
from benchmarks.context import Context
from benchmarks.harness import PY, Pod, Proc, need, wait_until, workload
from benchmarks.model import Check, Figure, Series, Spec
from benchmarks.procfs import cpu_ns, lock_waiters, locks_waited_on, rss_mb, wakeups
from benchmarks.protocol import FakeMain

RSS_LIMIT = 20.0
CPU_LIMIT = 10.0
WAKEUPS = "wakeups/10 s"
SLEEP = ["sleep", "100000"]
SETTLE = 1.0
TARGETS = 100

SC_LOCK = "sidecar, lock wait (main running)"
SC_BEFORE = "sidecar, before its main starts (file watcher)"
SC_LATE = "sidecar started after the main, lock wait"
SC_MARKER = "sidecar, --marker only (file watcher)"
SC_100 = f"sidecar, {TARGETS} targets (--wait-for x {TARGETS}, lock waits)"
SC_HTTP = "sidecar with --ready-http (probe passed), lock wait"
MAIN = "main, COMMAND running"
MAIN_GATED = "main at its --wait-ready gate"
SUPERVISORS = (SC_LOCK, SC_BEFORE, SC_LATE, SC_MARKER, SC_100, SC_HTTP, MAIN, MAIN_GATED)
FLOOR = "idle python (sleeps for good)"
EVERY_2S = "python waking every 2 s"
EVERY_50MS = "python waking every 50 ms"
WAITER_LABELS = (POLL.label, WATCHFILES.label, SHELL.label)
CPU_ORDER = (EVERY_2S, EVERY_50MS, *WAITER_LABELS, TINI.label, DUMB_INIT.label, FLOOR)
RSS_ORDER = (FLOOR, TINI.label, DUMB_INIT.label, *WAITER_LABELS, EVERY_2S, EVERY_50MS)
CALIBRATION = {
    FLOOR: "import time; time.sleep(1e6)",
    EVERY_2S: "import time\nwhile True: time.sleep(2)",
    EVERY_50MS: "import time\nwhile True: time.sleep(0.05)",
}

RSS = Spec(
    "rss",
    "RSS of the supervisor in every configuration (max over the window)",
    "MB",
    (
        Check("max", RSS_LIMIT),
        *(Check("max", RSS_LIMIT, series=s) for s in SUPERVISORS if s != SC_LOCK),
    ),
    budget=f"max <= {RSS_LIMIT:g} MB in every configuration",
    stats=("max", "p50"),
    plot=False,
)


@dataclass(frozen=True)
class Phase:
    """One idle CPU row: the process measured and the variants shown with it."""

    key: str
    subject: str
    title: str
    variants: tuple[str, ...] = ()

    @property
    def spec(self) -> Spec:
        return Spec(
            self.key,
            self.title,
            "ms/10 s",
            (Check("mean", CPU_LIMIT),),
            budget=f"<= {CPU_LIMIT:g} ms per 10 s (mean of the windows)",
            stats=("mean", "max"),
            plot=False,
        )


PHASES = (
    Phase(
        "cpu_sidecar_before_main",
        SC_BEFORE,
        "idle CPU of a waiting sidecar: before its main starts (file watcher)",
    ),
    Phase(
        "cpu_sidecar_lock_wait",
        SC_LOCK,
        "idle CPU of a waiting sidecar: lock wait (its main running)",
        (SC_LATE, SC_HTTP),
    ),
    Phase(
        "cpu_sidecar_marker",
        SC_MARKER,
        "idle CPU of a waiting sidecar: --marker only (file watcher)",
    ),
    Phase(
        "cpu_sidecar_100_targets",
        SC_100,
        f"idle CPU of a waiting sidecar: {TARGETS} targets (--wait-for x {TARGETS})",
    ),
    Phase(
        "cpu_main", MAIN, "idle CPU of the main supervisor while its COMMAND runs", (MAIN_GATED,)
    ),
)
SPECS = (RSS, *(phase.spec for phase in PHASES))


def _sidecars(ctx: Context, pod: Pod, procs: dict[str, Proc], mains: list[FakeMain]) -> None:
    ns = ctx.namespace
    shared = pod.dir / "shared"
    procs[SC_LOCK] = pod.start(commands.sidecar(shared, command=SLEEP), name="lock", namespace=ns)
    procs[SC_LOCK].settled()
    procs[MAIN] = pod.start(commands.main(shared, command=SLEEP), name="main", namespace=ns)
    procs[MAIN].settled()
    need(wait_until(lambda: lock_waiters(shared / "main.lock") > 0), "no lock waiter")
    late = commands.sidecar(shared, "--name", "sidecar2", command=SLEEP)
    procs[SC_LATE] = pod.start(late, name="late", namespace=ns)
    before = commands.sidecar(pod.dir / "shared-before", command=SLEEP)
    procs[SC_BEFORE] = pod.start(before, name="before", namespace=ns)
    (pod.dir / "never").mkdir()
    marker = ["--name", "sidecar3", "--marker", str(pod.dir / "never" / "flag")]
    procs[SC_MARKER] = pod.start(
        commands.sidecar(shared, *marker, command=SLEEP), name="marker", namespace=ns
    )
    many = pod.dir / "shared-100"
    many.mkdir()
    mains.extend(FakeMain(many, f"main{i}") for i in range(TARGETS))
    for main in mains:
        main.start()
    waits = [word for m in mains for word in ("--wait-for", m.name)]
    procs[SC_100] = pod.start(
        commands.sidecar(many, *waits, command=SLEEP), name="100", namespace=ns
    )
    server = pod.start(workload("http_ok"), name="http")
    port = need(server.expect("listening"), "the HTTP server never listened")[1]
    ready = ["--name", "sidecar-http", "--ready-http", f"http://127.0.0.1:{port}/"]
    procs[SC_HTTP] = pod.start(
        commands.sidecar(shared, *ready, command=SLEEP), name="http-sidecar", namespace=ns
    )
    gated = ["--wait-ready", "nobody", "--ready-timeout", "1h"]
    procs[MAIN_GATED] = pod.start(
        commands.main(pod.dir / "shared-gated", *gated, command=SLEEP), name="gated", namespace=ns
    )
    for label in (SC_LATE, SC_BEFORE, SC_MARKER, SC_100, SC_HTTP):
        procs[label].settled()
    procs[SC_HTTP].settled("child_ready")
    procs[MAIN_GATED].settled("waiting_for_gates")
    locks = [m.lock for m in mains]
    need(wait_until(lambda: locks_waited_on(locks) == len(locks)), "not every lock waited on")


def _start_pod(ctx: Context, pod: Pod, mains: list[FakeMain]) -> dict[str, Proc]:
    procs: dict[str, Proc] = {}
    _sidecars(ctx, pod, procs, mains)
    never = [pod.dir / "never" / "main.done"]
    for waiter in (SHELL, POLL, WATCHFILES):
        procs[waiter.label] = pod.start(waiter.build(never, SLEEP), name="waiter")
    for wrapper in (TINI, DUMB_INIT):
        if not ctx.missing(wrapper.tool or ""):
            argv = wrapper.argv(ctx, pod.dir, SLEEP, pid1=ctx.namespace)
            procs[wrapper.label] = pod.start(argv, name=wrapper.label, namespace=ctx.namespace)
    for label, code in CALIBRATION.items():
        procs[label] = pod.start([PY, "-S", "-c", code], name="calibration")
    return procs


def _measure(ctx: Context, procs: dict[str, Proc]) -> tuple[dict[str, Series], dict[str, Series]]:
    pids = {label: proc.pid for label, proc in procs.items()}
    childless = (*CALIBRATION, MAIN_GATED)  # MAIN_GATED: COMMAND not started at its gate
    wrappers = [pid for label, pid in pids.items() if label not in childless]
    need(wait_until(lambda: all(_has_child(pid) for pid in wrappers)), "a child is missing")
    time.sleep(SETTLE)
    rss = {label: Series(label) for label in pids}
    cpu = {label: Series(label, also={WAKEUPS: []}) for label in pids}
    window = ctx.settings.cpu_window
    per_10s = 10 / window
    for _ in range(ctx.settings.cpu_samples):
        cpu_before = {label: cpu_ns(pid, children=True) for label, pid in pids.items()}
        woken_before = {label: wakeups(pid) for label, pid in pids.items()}
        began = time.monotonic()
        for second in range(1, max(1, round(window)) + 1):
            time.sleep(max(0.0, began + min(second, window) - time.monotonic()))
            for label, pid in pids.items():
                rss[label].samples.append(rss_mb(pid))
        for label, pid in pids.items():
            used = cpu_ns(pid, children=True) - cpu_before[label]
            cpu[label].samples.append(used / 1e6 * per_10s)
            woken = max(0, wakeups(pid) - woken_before[label])
            cpu[label].also[WAKEUPS].append(woken * per_10s)
    return rss, cpu


def _has_child(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).children())
    except psutil.Error:
        return False


def _baselines(ctx: Context, found: dict[str, Series], order: tuple[str, ...]) -> list[Series]:
    """The baselines, in ``order`` (the most telling first), then any missing tool."""
    baselines = [_copy(found[label]) for label in order if label in found]
    baselines += [
        Series(w.label, unavailable=ctx.missing(w.tool or ""))
        for w in (TINI, DUMB_INIT)
        if ctx.missing(w.tool or "")
    ]
    return baselines


def _copy(series: Series) -> Series:
    """Each figure gets its own series."""
    also = {key: list(values) for key, values in series.also.items()}
    return Series(series.label, list(series.samples), also=also)


def resources(ctx: Context) -> list[Figure]:
    mains: list[FakeMain] = []
    try:
        with Pod(ctx.trial_dir("resources")) as pod:
            rss, cpu = _measure(ctx, _start_pod(ctx, pod, mains))
    finally:
        for main in mains:
            main.release()
    s = ctx.settings
    window = (
        f"{s.cpu_samples} window(s) of {s.cpu_window:g} s, all processes at once, "
        f"pods in PID namespaces: {ctx.namespace}"
    )
    figures = [
        Figure(
            RSS,
            _copy(rss[SC_LOCK]),
            variants=[_copy(rss[label]) for label in SUPERVISORS if label != SC_LOCK],
            baselines=_baselines(ctx, rss, RSS_ORDER),
            notes=[f"VmRSS read every second over {window}; the value is the highest reading"],
        )
    ]
    cpu_notes = [
        f"CPU time (every thread's schedstat, plus reaped children's) over {window}, as ms "
        f"per 10 s; {WAKEUPS}: context switches of every thread (a shell loop's sleep "
        "processes not included)",
        "on this VM each wakeup is charged CPU, more the longer the sleep before it: compare "
        "with the Pythons waking every 2 s and every 50 ms",
    ]
    figures.extend(
        Figure(
            phase.spec,
            _copy(cpu[phase.subject]),
            variants=[_copy(cpu[label]) for label in phase.variants],
            baselines=_baselines(ctx, cpu, CPU_ORDER),
            notes=cpu_notes,
        )
        for phase in PHASES
    )
    return figures
