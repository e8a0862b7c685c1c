"""Start-up: from exec of the wrapper to its child running, and whole runs of ``-- true``.

Exec -> child running: the harness stamps the time right before it forks and
execs the wrapper, whose COMMAND is ``sh -c 'echo running'``; the moment that
line arrives on the pipe read here is when the child ran (dash starts in well
under a millisecond; "no wrapper" runs the same sh directly and shows the floor
of fork, exec and the pipe). Samples of all series are interleaved, after one
unrecorded start of each. No PID namespace here: unshare's own fork would add
the same few ms to all.

Whole runs: hyperfine (``-N``, no shell) times each command from exec to exit.

The headline is measured in the run's clean venv (``cleanvenv.py``: no
``.pth`` hooks, a regular install with compiled bytecode), where the
supervisor's console script, the interpreter floor (``python -c``) and a bare
Python spawn wrapper (``workloads/bare_wrapper.py``: ``posix_spawn`` and
``waitpid``, nothing else) all start from the same interpreter; the budget is
a ratio to that bare wrapper. The same figures from this machine's
interpreter (the benchmark's own venv: an editable install and this site's
``.pth`` hooks, see results.json machine.site_pth_files) are variants.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from functools import partial

from benchmarks import commands
from benchmarks.cleanvenv import UNSET, CleanVenv, clean_env
from benchmarks.commands import DUMB_INIT, TINI, UNWRAPPED, Wrapper
from benchmarks.context import Context
from benchmarks.harness import ENV, PY, SUPERVISOR, WORKLOADS, Pod, ms
from benchmarks.model import Check, Figure, Series, Spec

BARE = "bare Python spawn wrapper (clean venv)"
STDLIB = "bare wrapper + the stdlib a supervisor needs (clean venv)"
MAIN = "sidecar-supervisor main (clean venv)"
SIDECAR = "sidecar-supervisor sidecar (clean venv)"
FLOOR_CLEAN = "python -c (interpreter floor, clean venv)"
MAIN_HERE = "main role, this machine's python (.pth hooks, editable install)"
SIDECAR_HERE = "sidecar role, this machine's python (.pth hooks, editable install)"
FLOOR_HERE = "python -c, this machine's python (.pth hooks)"
SH = "no wrapper (sh directly)"
EXEC = Spec(
    "exec_to_child",
    "supervisor exec -> child running (main and sidecar roles, clean venv)",
    "ms",
    (
        Check("p50", factor=2.0, baseline=BARE),
        Check("p50", factor=2.0, baseline=BARE, series=SIDECAR),
    ),
    budget="p50 <= 2.0x the bare Python spawn wrapper, main and sidecar (stretch 1.4x)",
)
WHOLE = Spec(
    "whole_run",
    "whole run of WRAPPER -- true, exec to exit (clean venv)",
    "ms",
    budget="- (for information)",
)
STRETCH = 1.4
RUNNING = ["sh", "-c", "echo running"]
HOLD = ["sh", "-c", "echo running; exec sleep 600"]
FLOOR = "import os; os.write(1, b'running\\n')"


def _start(ctx: Context, argv: Sequence[str], unset: Sequence[str] = ()) -> float | None:
    with Pod(ctx.trial_dir("start")) as pod:
        proc = pod.start(argv, name="start", unset=unset)
        if proc.expect("running") is None or proc.first_line_ns is None:
            return None
        return ms(proc.first_line_ns - proc.started_ns)


def _interleaved(n: int, trials: dict[str, Callable[[], float | None]]) -> dict[str, Series]:
    """n samples of each, taken in turns so that a drift of the machine hits all alike.

    One unrecorded start of each comes first: page cache and bytecode are warm.
    """
    for trial in trials.values():
        trial()
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


def bare_wrapper(python: str | os.PathLike[str], command: Sequence[str]) -> list[str]:
    return [os.fspath(python), str(WORKLOADS / "bare_wrapper.py"), *command]


def _clean_trials(ctx: Context, venv: CleanVenv) -> dict[str, Callable[[], float | None]]:
    script = str(venv.script)
    main = [script, "main", "--dir", str(ctx.work / "start-clean-main"), "--", *RUNNING]
    # A sidecar waiting for a container that never comes: it starts its child and waits.
    sidecar = [script, "sidecar", "--dir", str(ctx.work / "start-clean-sidecar")]
    sidecar += ["--wait-for", "nobody", "--", *HOLD]
    return {
        MAIN: partial(_start, ctx, main, UNSET),
        SIDECAR: partial(_start, ctx, sidecar, UNSET),
        BARE: partial(_start, ctx, bare_wrapper(venv.python, RUNNING), UNSET),
        STDLIB: partial(_start, ctx, bare_wrapper(venv.python, ["--stdlib", *RUNNING]), UNSET),
        FLOOR_CLEAN: partial(_start, ctx, [str(venv.python), "-c", FLOOR], UNSET),
    }


def _venv_notes(venv: CleanVenv | str) -> list[str]:
    if isinstance(venv, str):
        return [f"clean venv not available: {venv}"]
    deps = ", ".join(f"{k} {v}" for k, v in venv.copied.items())
    return [
        "the floor, the bare wrapper and the supervisor are measured in one clean venv made "
        f"for this run ({venv.how}; runtime dependencies copied from this environment: {deps}; "
        f"bytecode compiled: {venv.bytecode}; no .pth files); the supervisor starts through "
        "its console script",
    ]


def exec_to_child(ctx: Context) -> Figure:
    venv = ctx.clean_venv()
    main = commands.main(ctx.work / "start-main", command=RUNNING)
    sidecar = commands.sidecar(ctx.work / "start-sidecar", "--wait-for", "nobody", command=HOLD)
    trials: dict[str, Callable[[], float | None]] = {}
    if isinstance(venv, CleanVenv):
        trials.update(_clean_trials(ctx, venv))
    trials[MAIN_HERE] = partial(_start, ctx, main)
    trials[SIDECAR_HERE] = partial(_start, ctx, sidecar)
    trials[FLOOR_HERE] = partial(_start, ctx, [PY, "-c", FLOOR])
    trials[SH] = partial(_start, ctx, _wrapped(ctx, UNWRAPPED))
    missing: list[Series] = []
    for wrapper in (TINI, DUMB_INIT):
        reason = ctx.missing(wrapper.tool or "")
        if reason:
            missing.append(Series(wrapper.label, unavailable=reason))
        else:
            trials[wrapper.label] = partial(_start, ctx, _wrapped(ctx, wrapper))
    found = _interleaved(ctx.settings.startups, trials)
    if isinstance(venv, str):
        for label in (MAIN, SIDECAR, BARE, STDLIB, FLOOR_CLEAN):
            found[label] = Series(label, unavailable=venv)
    order = [BARE, STDLIB, FLOOR_CLEAN, TINI.label, DUMB_INIT.label, SH, FLOOR_HERE]
    baselines = [found[label] for label in order if label in found] + missing
    figure = Figure(
        EXEC,
        found[MAIN],
        variants=[found[SIDECAR], found[MAIN_HERE], found[SIDECAR_HERE]],
        baselines=baselines,
        notes=[
            "from just before fork+exec of the wrapper to the child's first line on the pipe",
            *_venv_notes(venv),
            f"'{STDLIB}' imports fcntl, json, pathlib, queue, re, select, signal, threading and "
            "typing before its spawn: the floor of any supervisor written in Python",
            f"budget as ratios in this run: p50 <= 2.0x the bare Python spawn wrapper for the "
            f"main and the sidecar role (stretch {STRETCH:g}x); this machine's python "
            f"({PY}) is shown as variants, its floor as a baseline",
        ],
    )
    figure.extra["stretch_factor"] = STRETCH
    return figure


WHOLE_MAIN = "sidecar-supervisor main -- true (clean venv)"
WHOLE_CLEAN = (
    WHOLE_MAIN,
    "bare Python spawn wrapper -- true (clean venv)",
    "python -c pass (clean venv)",
    "sidecar-supervisor --version (clean venv)",
)
WHOLE_HERE = "main -- true, this machine's python"


def _clean_commands(ctx: Context, venv: CleanVenv) -> dict[str, list[str]]:
    script = str(venv.script)
    argvs = [
        [script, "main", "--dir", str(ctx.work / "whole-clean"), "--", "true"],
        bare_wrapper(venv.python, ["true"]),
        [str(venv.python), "-c", "pass"],
        [script, "--version"],
    ]
    return dict(zip(WHOLE_CLEAN, argvs, strict=True))


def _here_commands(ctx: Context) -> dict[str, list[str]]:
    main = [*SUPERVISOR, "main", "--dir", str(ctx.work / "whole-shared"), "--", "true"]
    found = {
        WHOLE_HERE: main,
        "python -c pass, this machine's python": [PY, "-c", "pass"],
        "true (no wrapper)": ["true"],
    }
    for wrapper in (TINI, DUMB_INIT):
        if not ctx.missing(wrapper.tool or ""):
            found[f"{wrapper.label} -- true"] = wrapper.argv(ctx, ctx.work, ["true"], pid1=False)
    return found


def _hyperfine(
    ctx: Context, cmds: dict[str, list[str]], env: dict[str, str]
) -> dict[str, list[float]]:
    out = ctx.work / f"hyperfine-{time.monotonic_ns()}.json"
    hyperfine = ctx.tools["hyperfine"]
    assert hyperfine is not None
    runs = ctx.settings.hyperfine_runs
    warmup = str(ctx.settings.hyperfine_warmup)
    argv = [hyperfine, "-N", "--style", "none", "--warmup", warmup, "--runs", str(runs)]
    argv += ["--export-json", str(out), *(shlex.join(c) for c in cmds.values())]
    subprocess.run(argv, check=True, capture_output=True, timeout=600, env=env)
    results = json.loads(out.read_text())["results"]
    return {label: [t * 1000 for t in r["times"]] for label, r in zip(cmds, results, strict=True)}


def _own_loop(
    ctx: Context, cmds: dict[str, list[str]], env: dict[str, str]
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {label: [] for label in cmds}
    for _ in range(ctx.settings.hyperfine_runs):
        for label, argv in cmds.items():
            started = time.monotonic_ns()
            subprocess.run(argv, check=True, capture_output=True, timeout=60, env=env)
            found[label].append(ms(time.monotonic_ns() - started))
    return found


def whole_run(ctx: Context) -> Figure:
    venv = ctx.clean_venv()
    time_them = _hyperfine if ctx.tools["hyperfine"] else _own_loop
    method = "hyperfine -N" if ctx.tools["hyperfine"] else "own loop (hyperfine not installed)"
    times: dict[str, list[float]] = {}
    if isinstance(venv, CleanVenv):
        times.update(time_them(ctx, _clean_commands(ctx, venv), {**clean_env(), **ENV}))
    times.update(time_them(ctx, _here_commands(ctx), {**os.environ, **ENV}))
    series = {label: Series(label, samples=values) for label, values in times.items()}
    if isinstance(venv, str):
        series.update({label: Series(label, unavailable=venv) for label in WHOLE_CLEAN})
    missing = [
        Series(f"{w.label} -- true", unavailable=ctx.missing(w.tool or ""))
        for w in (TINI, DUMB_INIT)
        if ctx.missing(w.tool or "")
    ]
    return Figure(
        WHOLE,
        series[WHOLE_MAIN],
        variants=[series[WHOLE_HERE]],
        baselines=[s for k, s in series.items() if k not in (WHOLE_MAIN, WHOLE_HERE)] + missing,
        notes=[
            f"{method}, {ctx.settings.hyperfine_runs} runs each per round after "
            f"{ctx.settings.hyperfine_warmup} warm-up runs",
            *_venv_notes(venv),
        ],
    )
