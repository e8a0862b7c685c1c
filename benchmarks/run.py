"""One command for every figure.

    python -m benchmarks [--quick] [--out DIR] [--only NAME]...

Runs each family of figures in turn on this machine, then writes
``results.json``, ``results.md`` and ``latency.png`` to ``--out``
(``benchmarks/results`` by default). Timing never fails the command; it exits
1 only when a figure could not be measured at all (an error, not a slow value).
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
    report,
    resources,
    startup,
)
from benchmarks.context import (
    FULL,
    QUICK,
    Context,
    clean_interpreter_env,
    detect_tools,
    machine,
    namespaces_work,
)
from benchmarks.harness import ENV, PY, ROOT, SUPERVISOR, reap_all, workload
from benchmarks.model import Figure, Series, Spec
from supervisor.harness import become_subreaper

DEFAULT_OUT = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Family:
    """Figures measured together by one module."""

    name: str
    specs: tuple[Spec, ...]
    measure: Callable[[Context], list[Figure]]


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
    Family("resources", resources.SPECS, resources.resources),
    Family("fan_in", (fanin.SPEC,), _one(fanin.fan_in)),
    Family("restart_cycles", (cycles.SPEC,), _one(cycles.restart_cycles)),
)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a few samples of each (< 60 s)")
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
        [PY, "-S", "-m", "supervisor", "--version"],
        workload("main_exit"),  # ends at once: its stdin is empty
    ]
    env = {**os.environ, **ENV, **clean_interpreter_env()}
    for argv in commands:
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
        try:
            warm_up(ctx)
            for family in chosen:
                print(f"{family.name} ...", file=sys.stderr, flush=True)
                for figure in _measure(family, ctx):
                    _progress(figure)
                    figures.append(figure)
        finally:
            leftovers = reap_all()
        results: dict[str, Any] = {
            "schema": 1,
            "command": shlex.join(["python", "-m", "benchmarks", *given]),
            "mode": "quick" if args.quick else "full",
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
    print(f"wrote {args.out}/results.json, results.md", file=sys.stderr)
    return 1 if any(f.error for f in figures) else 0
