"""Start-up: from exec of the wrapper to its child running, and whole runs of ``-- true``.

Exec -> child running: the harness stamps the time right before it forks and
execs the wrapper, whose COMMAND is ``sh -c 'echo running'``; the moment that
line arrives on the pipe read here is when the child ran (dash starts in well
under a millisecond; "no wrapper" runs the same sh directly and shows the floor
of fork, exec and the pipe). Samples of all series are interleaved. No PID
namespace here: unshare's own fork would add the same few ms to all.

Whole runs: hyperfine (``-N``, no shell) times each command from exec to exit.

Both show this machine's interpreter floor: its site-packages carry ``.pth``
start-up hooks (see results.json, machine.site_pth_files) that every
``python`` start pays; the "clean interpreter" variant runs the same supervisor
with ``python -S`` and site-packages on PYTHONPATH, as in an image without them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from functools import partial

from benchmarks import commands
from benchmarks.commands import DUMB_INIT, SUPERVISED, TINI, UNWRAPPED, Wrapper
from benchmarks.context import Context, clean_interpreter_env
from benchmarks.harness import PY, SUPERVISOR, Pod, ms
from benchmarks.model import Check, Figure, Series, Spec

EXEC = Spec(
    "exec_to_child",
    "supervisor exec -> child running (main role)",
    "ms",
    (Check("p50", 100.0),),
)
WHOLE = Spec(
    "whole_run",
    "whole run of WRAPPER -- true, exec to exit (the interpreter floor)",
    "ms",
    budget="- (for information)",
)
RUNNING = ["sh", "-c", "echo running"]
HOLD = ["sh", "-c", "echo running; exec sleep 600"]
FLOOR = "import os; os.write(1, b'running\\n')"
CLEAN = "clean interpreter: python -S, no .pth hooks"


def _start(ctx: Context, argv: list[str], env: dict[str, str] | None = None) -> float | None:
    with Pod(ctx.trial_dir("start")) as pod:
        proc = pod.start(argv, name="start", env=env)
        if proc.expect("running") is None or proc.first_line_ns is None:
            return None
        return ms(proc.first_line_ns - proc.started_ns)


def _interleaved(n: int, trials: dict[str, Callable[[], float | None]]) -> dict[str, Series]:
    """n samples of each, taken in turns so that a drift of the machine hits all alike."""
    found = {label: Series(label) for label in trials}
    for _ in range(n):
        for label, trial in trials.items():
            value = trial()
            if value is None:
                found[label].timeouts += 1
            else:
                found[label].samples.append(value)
    return found


def _wrapped(ctx: Context, wrapper: Wrapper) -> list[str]:
    return wrapper.argv(ctx, ctx.work, RUNNING, pid1=False)


def exec_to_child(ctx: Context) -> Figure:
    main = commands.main(ctx.work / "start-main", command=RUNNING)
    clean_main = [PY, "-S", *commands.main(ctx.work / "start-clean", command=RUNNING)[1:]]
    # A sidecar waiting for a container that never comes: it starts its child and waits.
    sidecar = commands.sidecar(ctx.work / "start-sidecar", "--wait-for", "nobody", command=HOLD)
    trials: dict[str, Callable[[], float | None]] = {
        SUPERVISED.label: partial(_start, ctx, main),
        "sidecar role": partial(_start, ctx, sidecar),
        CLEAN: partial(_start, ctx, clean_main, clean_interpreter_env()),
        "no wrapper (sh directly)": partial(_start, ctx, _wrapped(ctx, UNWRAPPED)),
        "python -c (interpreter floor)": partial(_start, ctx, [PY, "-c", FLOOR]),
        "python -S -c (no site)": partial(_start, ctx, [PY, "-S", "-c", FLOOR]),
    }
    missing: list[Series] = []
    for wrapper in (TINI, DUMB_INIT):
        reason = ctx.missing(wrapper.tool or "")
        if reason:
            missing.append(Series(wrapper.label, unavailable=reason))
        else:
            trials[wrapper.label] = partial(_start, ctx, _wrapped(ctx, wrapper))
    found = _interleaved(ctx.settings.startups, trials)
    order = [TINI.label, DUMB_INIT.label, "no wrapper (sh directly)"]
    order += ["python -c (interpreter floor)", "python -S -c (no site)"]
    baselines = [found[label] for label in order if label in found] + missing
    return Figure(
        EXEC,
        found[SUPERVISED.label],
        variants=[found["sidecar role"], found[CLEAN]],
        baselines=baselines,
        notes=[
            "from just before fork+exec of the wrapper to the child's first line on the pipe",
            "the interpreter floor is python's exec -> first statement; this machine's "
            "site-packages .pth hooks are part of it",
        ],
    )


def _whole_commands(ctx: Context) -> dict[str, list[str]]:
    shared = str(ctx.work / "whole-shared")
    env = ["env", *(f"{k}={v}" for k, v in clean_interpreter_env().items())]
    found = {
        "sidecar-supervisor main -- true": [*SUPERVISOR, "main", "--dir", shared, "--", "true"],
        CLEAN: [*env, PY, "-S", "-m", "supervisor", "main", "--dir", shared, "--", "true"],
        "sidecar-supervisor --version": [*SUPERVISOR, "--version"],
        "python -c pass": [PY, "-c", "pass"],
        "python -S -c pass": [PY, "-S", "-c", "pass"],
        "true (no wrapper)": ["true"],
    }
    for wrapper in (TINI, DUMB_INIT):
        if not ctx.missing(wrapper.tool or ""):
            found[f"{wrapper.label} -- true"] = wrapper.argv(ctx, ctx.work, ["true"], pid1=False)
    return found


def _hyperfine(ctx: Context, cmds: dict[str, list[str]]) -> dict[str, list[float]]:
    out = ctx.work / "hyperfine.json"
    hyperfine = ctx.tools["hyperfine"]
    assert hyperfine is not None
    runs = ctx.settings.hyperfine_runs
    warmup = str(ctx.settings.hyperfine_warmup)
    argv = [hyperfine, "-N", "--style", "none", "--warmup", warmup, "--runs", str(runs)]
    argv += ["--export-json", str(out), *(shlex.join(c) for c in cmds.values())]
    env = {**os.environ, "SIDECAR_SUPERVISOR_LOG_FORMAT": "json"}
    subprocess.run(argv, check=True, capture_output=True, timeout=600, env=env)
    results = json.loads(out.read_text())["results"]
    return {label: [t * 1000 for t in r["times"]] for label, r in zip(cmds, results, strict=True)}


def _own_loop(ctx: Context, cmds: dict[str, list[str]]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {label: [] for label in cmds}
    for _ in range(ctx.settings.hyperfine_runs):
        for label, argv in cmds.items():
            started = time.monotonic_ns()
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
            found[label].append(ms(time.monotonic_ns() - started))
    return found


def whole_run(ctx: Context) -> Figure:
    cmds = _whole_commands(ctx)
    if ctx.tools["hyperfine"]:
        times, method = _hyperfine(ctx, cmds), "hyperfine -N"
    else:
        times, method = _own_loop(ctx, cmds), "own loop (hyperfine not installed)"
    series = [Series(label, samples=values) for label, values in times.items()]
    missing = [
        Series(f"{w.label} -- true", unavailable=ctx.missing(w.tool or ""))
        for w in (TINI, DUMB_INIT)
        if ctx.missing(w.tool or "")
    ]
    return Figure(
        WHOLE,
        series[0],
        variants=[series[1]],
        baselines=series[2:] + missing,
        notes=[
            f"{method}, {ctx.settings.hyperfine_runs} runs each after "
            f"{ctx.settings.hyperfine_warmup} warm-up runs"
        ],
    )
