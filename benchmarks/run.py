"""One command for every figure.

    python -m benchmarks [--quick] [--out DIR] [--only NAME]...

Runs the families of figures on this machine and writes ``results.json``,
``results.md``, ``summary.md`` and ``latency.png`` to ``--out``
(``benchmarks/results`` by default). Latency families are measured in rounds,
interleaved (round 1 of every family, then round 2, ...), so that a drift of
the machine hits all alike; the others run once, after them. Timing never
fails the command; it exits 1 only when a figure could not be measured at all
(an error, not a slow value).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    completion,
    cycles,
    fanin,
    markers,
    pid1,
    plot,
    processwatch,
    readygate,
    report,
    resources,
    startup,
)
from benchmarks.cleanvenv import CleanVenv, clean_env
from benchmarks.context import (
    FULL,
    QUICK,
    Context,
    detect_tools,
    machine,
    namespaces_work,
)
from benchmarks.harness import ENV, PY, ROOT, SUPERVISOR, reap_all, workload
from benchmarks.model import Figure, Series, Spec, merge_rounds
from supervisor.harness import become_subreaper

DEFAULT_OUT = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Family:
    """Figures measured together by one module."""

    name: str
    specs: tuple[Spec, ...]
    measure: Callable[[Context], list[Figure]]
    rounds: bool = True  # measured once per round; False: once per run, after the rounds


def _one(measure: Callable[[Context], Figure]) -> Callable[[Context], list[Figure]]:
    return lambda ctx: [measure(ctx)]


FAMILIES: tuple[Family, ...] = (
    Family("main_exit", (completion.EXIT,), _one(completion.main_exit)),
    Family("main_killed", (completion.KILLED,), _one(completion.main_killed)),
    Family("touched_marker", (markers.TOUCH,), _one(markers.touched_marker)),
    Family("polling_fallback", (markers.POLLING,), _one(markers.polling_fallback)),
    Family("watch_process", (processwatch.SPEC,), _one(processwatch.watch_process)),
    Family("signal_forwarding", (pid1.FORWARD,), _one(pid1.signal_forwarding)),
    Family("orphan_reaping", (pid1.ORPHANS,), _one(pid1.orphan_reaping)),
    Family("exec_to_child", (startup.EXEC,), _one(startup.exec_to_child)),
    Family("whole_run", (startup.WHOLE,), _one(startup.whole_run)),
    Family("ready_gate", (readygate.SPEC,), _one(readygate.ready_gate)),
    Family("resources", resources.SPECS, resources.resources, rounds=False),
    Family("fan_in", (fanin.SPEC,), _one(fanin.fan_in)),
    Family("restart_cycles", (cycles.SPEC,), _one(cycles.restart_cycles), rounds=False),
)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="one round of a few samples of each (about 1 min)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds of each latency family (full: 3)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these families: {', '.join(f.name for f in FAMILIES)}",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the random trigger phases")
    parser.add_argument(
        "--no-namespace", action="store_true", help="never run containers in PID namespaces"
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=["tini", "dumb-init", "hyperfine", "pgrep"],
        help="act as if this tool were not installed (its baselines: not available)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.only) - {f.name for f in FAMILIES}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds: at least 1")
    return args


def bytecode_cache(work: Path) -> None:
    """Give every Python started from here a bytecode cache, as an installed package has.

    This machine sets PYTHONDONTWRITEBYTECODE=1, so an editable install would
    compile the supervisor's sources at every start; pip compiles them at
    install time. The cache lives in the run's scratch folder, never in the tree.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")


def warm_up(ctx: Context) -> None:
    """Start each kind of process once, so that caches (bytecode, page cache) are warm."""
    shared = ctx.work / "warm-up"
    shared.mkdir()
    (shared / "main.done").touch()
    commands = [
        [PY, "-c", "pass"],
        [PY, "-S", "-c", "pass"],
        [*SUPERVISOR, "--version"],
        [*SUPERVISOR, "main", "--dir", str(shared), "--name", "warm", "--", "true"],
        [*SUPERVISOR, "sidecar", "--dir", str(shared), "--", "true"],
        [PY, "-c", "import watchfiles, psutil, structlog"],
        workload("main_exit"),  # ends at once: its stdin is empty
    ]
    runs = [(argv, {**os.environ, **ENV}) for argv in commands]
    venv = ctx.venv_state
    if isinstance(venv, CleanVenv):  # started without the run's bytecode prefix, as measured
        clean = {**clean_env(), **ENV}
        runs += [
            ([str(venv.script), "--version"], clean),
            ([str(venv.python), "-c", "pass"], clean),
        ]
    for argv, env in runs:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=False,
            )


def _measure(family: Family, ctx: Context) -> list[Figure]:
    started = time.monotonic()
    load = os.getloadavg()
    try:
        figures = family.measure(ctx)
    except Exception as exc:  # noqa: BLE001 - one broken family must not lose the others
        detail = traceback.format_exc()
        figures = [
            Figure(spec, Series("sidecar-supervisor"), error=f"{type(exc).__name__}: {exc}")
            for spec in family.specs
        ]
        for figure in figures:
            figure.extra["traceback"] = detail
    finally:
        reap_all()
    seconds = time.monotonic() - started
    for figure in figures:
        figure.seconds = seconds / len(figures)
        figure.extra["load_average_at_start"] = load
    return figures


def _merged(family: Family, rounds: list[list[Figure]]) -> list[Figure]:
    """One figure per spec from the figures of each round."""
    merged = []
    for at, _spec in enumerate(family.specs):
        parts = [figures[at] for figures in rounds]
        figure = merge_rounds(parts)
        loads = [part.extra.get("load_average_at_start") for part in parts]
        figure.extra["load_average_at_start"] = loads[0]
        figure.extra["load_average_per_round"] = loads
        figure.extra.pop("load_average_at_start_per_round", None)
        figure.extra["rounds"] = len(parts)
        merged.append(figure)
    return merged


def _run_families(ctx: Context, chosen: list[Family], rounds: int) -> list[Figure]:
    """Every round of the latency families in turn, then the families measured once."""
    found: dict[str, list[list[Figure]]] = {f.name: [] for f in chosen}
    for number in range(1, rounds + 1):
        for family in (f for f in chosen if f.rounds):
            print(f"{family.name} (round {number} of {rounds}) ...", file=sys.stderr, flush=True)
            figures = _measure(family, ctx)
            for figure in figures:
                _progress(figure)
            found[family.name].append(figures)
    for family in (f for f in chosen if not f.rounds):
        print(f"{family.name} ...", file=sys.stderr, flush=True)
        figures = _measure(family, ctx)
        for figure in figures:
            _progress(figure)
        found[family.name].append(figures)
    return [figure for family in chosen for figure in _merged(family, found[family.name])]


def _progress(figure: Figure) -> None:
    subject = figure.subject
    value = figure.value_text or report.series_text(subject, figure.spec.unit, figure.spec.stats)
    if figure.error:
        value = figure.error
    print(
        f"  {figure.spec.key}: {figure.verdict}: {value} ({figure.seconds:.1f} s)", file=sys.stderr
    )


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = parse(given)
    become_subreaper()
    settings = QUICK if args.quick else FULL
    chosen = [f for f in FAMILIES if not args.only or f.name in args.only]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    figures: list[Figure] = []
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sidecar-bench-") as work:
        bytecode_cache(Path(work))
        ctx = Context(
            settings=settings,
            work=Path(work),
            namespace=namespaces_work() and not args.no_namespace,
            tools={k: None if k in args.without else v for k, v in detect_tools().items()},
            rng=random.Random(args.seed),  # noqa: S311 - trigger phases, not secrets
        )
        rounds = args.rounds or settings.rounds
        try:
            if any(f.name in ("exec_to_child", "whole_run") for f in chosen):
                print("making the clean venv ...", file=sys.stderr, flush=True)
                ctx.clean_venv()  # before any measurement, not inside the first round's
            warm_up(ctx)
            figures = _run_families(ctx, chosen, rounds)
        finally:
            leftovers = reap_all()
        results: dict[str, Any] = {
            "schema": 1,
            "command": shlex.join(["python", "-m", "benchmarks", *given]),
            "mode": "quick" if args.quick else "full",
            "rounds": rounds,
            "started_at": started_at,
            "seconds": round(time.monotonic() - started, 1),
            "machine": machine(ctx),
            "leftover_processes": leftovers,
            "load_average_start": load_at_start,
            "load_average_end": os.getloadavg(),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    why_not = plot.write(args.out / "latency.png", figures)
    results["plot"] = None if why_not else "latency.png"
    results["plot_unavailable"] = why_not
    report.write(args.out, results, figures)
    print(f"wrote {args.out}/results.json, results.md, summary.md", file=sys.stderr)
    return 1 if any(f.error for f in figures) else 0
