"""A plain file marker appears -> the sidecar's child gets its stop signal.

``touch``: a sidecar with ``--marker`` on a folder that exists, so file events
(inotify through watchfiles) see the new file. The polling fallback: the
marker's folder does not exist when the sidecar starts, so nothing can watch
it and only the rescan every ``--poll-interval`` can find it; the folder and
the marker then appear together (renamed into place, so no rescan can see the
folder without the marker). The trigger's time is taken right before it.
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

from benchmarks import commands
from benchmarks.commands import WAITERS, Waiter, fast_poll
from benchmarks.context import Context
from benchmarks.harness import Pod, collect, ms, need, now_ns
from benchmarks.model import Check, Figure, Spec
from supervisor.filewatch import WATCH_PERIOD

TOUCH = Spec(
    "touched_marker",
    "a plain touched marker -> stop signal received",
    "ms",
    (Check("p50", 100.0),),
)
POLL_INTERVAL = 0.2
POLLING = Spec(
    "polling_fallback",
    f"polling fallback only (no file events), --poll-interval {POLL_INTERVAL:g}",
    "ms",
    (Check("max", POLL_INTERVAL * 1000 + 5),),
    budget=f"<= its interval + 5 ms (max <= {POLL_INTERVAL * 1000 + 5:g} ms)",
)
STOP_TIMEOUT = 10.0
SETTLE = 0.3  # seconds for the watchers to be up (watchfiles is imported in a thread)


def touch(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def appear_with_folder(marker: Path) -> None:
    """Make ``marker``'s folder and the marker in one rename."""
    staging = marker.parent.with_name(f".{marker.parent.name}.staging")
    staging.mkdir()
    touch(staging / marker.name)
    os.rename(staging, marker.parent)


def _trial(
    ctx: Context, argv: list[str], marker: Path, period: float, *, supervised: bool
) -> float | None:
    with Pod(marker.parent.parent) as pod:
        side = pod.start(argv, name="sidecar", namespace=ctx.namespace)
        need(side.expect("ready"), "the sidecar's child never started")
        if supervised:
            side.settled()
        time.sleep(SETTLE)
        ctx.random_phase(period)
        started = now_ns()
        if marker.parent.exists():
            touch(marker)
        else:
            appear_with_folder(marker)
        stopped = side.stamp("signal", STOP_TIMEOUT)
        return None if stopped is None else ms(stopped - started)


def _marker(ctx: Context, name: str, *, folder_exists: bool) -> Path:
    folder = ctx.trial_dir(name) / "markers"
    if folder_exists:
        folder.mkdir()
    return folder / "flag"


def _supervised(ctx: Context, *, folder_exists: bool, poll: float | None) -> float | None:
    marker = _marker(ctx, "marker", folder_exists=folder_exists)
    options = ["--marker", str(marker)]
    if poll is not None:
        options += ["--poll-interval", str(poll)]
    argv = commands.sidecar(marker.parent.parent / "shared", *options)
    # Without a rescan in play the sidecar's poller is its file watcher, which
    # looks at queued events every WATCH_PERIOD: a trigger at a fixed time after
    # the watcher started would be in step with it.
    period = poll if poll is not None else WATCH_PERIOD
    return _trial(ctx, argv, marker, period, supervised=True)


def _workaround(ctx: Context, waiter: Waiter, *, folder_exists: bool) -> float | None:
    marker = _marker(ctx, "marker-base", folder_exists=folder_exists)
    argv = waiter.build([marker], commands.child())
    return _trial(ctx, argv, marker, waiter.period, supervised=False)


def touched_marker(ctx: Context) -> Figure:
    s = ctx.settings
    subject = collect(
        "sidecar-supervisor",
        s.samples,
        partial(_supervised, ctx, folder_exists=True, poll=None),
    )
    baselines = [
        collect(w.label, s.baseline_samples, partial(_workaround, ctx, w, folder_exists=True))
        for w in WAITERS
    ]
    return Figure(
        TOUCH,
        subject,
        baselines=baselines,
        notes=[
            "from just before the marker is created (open O_CREAT, as touch does) to the "
            "sidecar child's SIGTERM; the sidecar runs with --marker and no --wait-for",
            "triggers land at a random phase of each poller's period (the sidecar's: its "
            f"file watcher's {WATCH_PERIOD * 1000:g} ms)",
        ],
    )


def polling_fallback(ctx: Context) -> Figure:
    s = ctx.settings
    subject = collect(
        "sidecar-supervisor",
        s.samples,
        partial(_supervised, ctx, folder_exists=False, poll=POLL_INTERVAL),
    )
    waiters = (fast_poll(POLL_INTERVAL), commands.POLL)
    baselines = [
        collect(w.label, s.baseline_samples, partial(_workaround, ctx, w, folder_exists=False))
        for w in waiters
    ]
    return Figure(
        POLLING,
        subject,
        baselines=baselines,
        notes=[
            "the marker's folder does not exist when the sidecar starts, so no file watcher can "
            "see it: only the rescan finds it; expect a uniform spread over one interval",
            "baselines: stat polling at the same interval and at Tekton/Argo's 1 s",
        ],
    )
