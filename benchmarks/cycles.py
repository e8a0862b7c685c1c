"""A long-lived sidecar through 1,000 start/stop cycles of its main: no growth in fds or RSS.

What it measures: a sidecar with ``--wait-for main --stop-on success`` (the
``restartPolicy: OnFailure`` set-up) whose main fails and is restarted 1,000
times. Each cycle the main (a ``FakeMain``, protocol.py) takes its lock and
writes ``.started``; the harness waits until the sidecar has noticed the new
attempt and blocks in flock on the lock (seen in /proc/locks); then the main
writes ``.done`` with exit code 1 and drops the lock, and the harness waits
for the sidecar to log ``completion_ignored``. So every cycle runs the
sidecar's whole path once: file-watcher start and stop, a lock thread, marker
reads, the decision. At checkpoints (after 10 warm-up cycles, then every
tenth of the run) the harness reads the sidecar's open fds, VmRSS and threads,
always in the same state (blocked on the lock). At the end the main succeeds
and the sidecar must stop and exit 0.

Growth is judged from the first checkpoint to the last: no more fds, no more
threads, and RSS within 64 KiB (a few pages of allocator noise; a leak of even
100 bytes a cycle shows as 100 KB over the run).
"""

from __future__ import annotations

import time

from benchmarks import commands
from benchmarks.context import Context
from benchmarks.harness import Pod, Proc, ms, need, now_ns, wait_until
from benchmarks.model import Figure, Series, Spec
from benchmarks.procfs import fd_count, lock_waiters, rss_mb, status_field
from benchmarks.protocol import FakeMain

RSS_NOISE_KIB = 64
SPEC = Spec(
    "restart_cycles",
    "1,000 start/stop cycles of the main (--quick: 6): long-lived sidecar's fds and RSS",
    "ms",
    budget=f"no growth in open fds or threads; RSS growth <= {RSS_NOISE_KIB} KiB",
    plot=False,
)
WARM_UP = 10
CYCLE_TIMEOUT = 10.0
POLL_INTERVAL = 0.5  # an attempt whose file events were lost is found by this rescan
SLOW_MS = 300.0  # longer than file events take (two watcher steps): the rescan found it
SLEEP = ["sleep", "100000"]


def _reading(pid: int, cycle: int) -> dict[str, float]:
    return {
        "cycle": cycle,
        "fds": fd_count(pid),
        "rss_mb": round(rss_mb(pid), 3),
        "threads": status_field(pid, "Threads"),
    }


def _cycle(
    side: Proc, main: FakeMain, cycle: int, checkpoint: bool
) -> tuple[float, dict[str, float] | None]:
    started = now_ns()
    main.start()
    need(
        wait_until(lambda: lock_waiters(main.lock) > 0, CYCLE_TIMEOUT),
        f"cycle {cycle}: the sidecar never blocked on the new attempt's lock",
    )
    seen = ms(now_ns() - started)
    reading = None
    if checkpoint:
        time.sleep(0.3)  # the file watcher thread has wound down
        reading = _reading(side.pid, cycle)
    main.finish(exit_code=1)
    need(
        wait_until(lambda: side.count("completion_ignored") >= cycle, CYCLE_TIMEOUT),
        f"cycle {cycle}: the sidecar never logged completion_ignored",
    )
    return seen, reading


def restart_cycles(ctx: Context) -> Figure:
    total = ctx.settings.cycles
    warm = min(WARM_UP, max(1, total // 2))
    every = max(1, total // 10)
    checkpoints = {warm, total} | {c for c in range(every, total, every) if c > warm}
    series = Series("sidecar-supervisor: main's new attempt -> sidecar blocked on its lock")
    readings: list[dict[str, float]] = []
    with Pod(ctx.trial_dir("cycles")) as pod:
        shared = pod.dir / "shared"
        shared.mkdir()
        main = FakeMain(shared, "main")
        options = ["--stop-on", "success", "--poll-interval", str(POLL_INTERVAL)]
        argv = commands.sidecar(shared, *options, command=SLEEP)
        side = pod.start(argv, name="sidecar", namespace=ctx.namespace)
        side.settled()
        began = time.monotonic()
        try:
            for cycle in range(1, total + 1):
                seen, reading = _cycle(side, main, cycle, cycle in checkpoints)
                series.samples.append(seen)
                if reading is not None:
                    readings.append(reading)
            elapsed = time.monotonic() - began
            main.start()
            need(wait_until(lambda: lock_waiters(main.lock) > 0), "no lock waiter at the end")
            main.finish(exit_code=0)
            code = side.wait()
        finally:
            main.release()
    first, last = readings[0], readings[-1]
    grew_kib = (last["rss_mb"] - first["rss_mb"]) * 1024
    span = max(1.0, last["cycle"] - first["cycle"])
    slow = sum(1 for v in series.samples if v > SLOW_MS)
    return Figure(
        SPEC,
        series,
        conditions=[
            ("no growth in open fds", last["fds"] <= first["fds"]),
            ("no growth in threads", last["threads"] <= first["threads"]),
            (f"RSS growth <= {RSS_NOISE_KIB} KiB", grew_kib <= RSS_NOISE_KIB),
            ("the sidecar exits 0 after the good attempt", code == 0),
        ],
        value_text=(
            f"{total} cycles: fds {first['fds']:.0f} -> {last['fds']:.0f}, threads "
            f"{first['threads']:.0f} -> {last['threads']:.0f}, RSS {first['rss_mb']:.2f} -> "
            f"{last['rss_mb']:.2f} MB: {grew_kib:+.0f} KiB in all "
            f"({grew_kib * 1024 / span:+.0f} B/cycle); "
            f"{slow} new attempts seen only by the rescan; exit {code}"
        ),
        notes=[
            f"checkpoints from cycle {first['cycle']:.0f} to {last['cycle']:.0f}, "
            f"{total / elapsed:.1f} cycles/s; the sidecar runs with --poll-interval "
            f"{POLL_INTERVAL:g} so that a cycle whose file events were lost costs 0.5 s, not 2",
            f"samples: how long the sidecar took to block on each new attempt's lock; over "
            f"{SLOW_MS:g} ms means its file events were lost and the rescan found it",
        ],
        extra={
            "checkpoints": readings,
            "sidecar_exit_code": code,
            "seconds": elapsed,
            "rss_growth_kib": round(grew_kib, 1),
        },
    )
