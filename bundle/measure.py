"""Measure the bundle next to the pip-installed tool: size, start-up time, RSS.

    python bundle/measure.py --bundle build/bundle/sidecar-supervisor --venv .venv

``--venv`` is a virtual environment with the tool pip-installed (``pip install .``).
The bundle is first published with its own ``copy`` into a temporary folder and run
from there, through the link, as a sidecar would. Prints a Markdown table.

- start-up: exec of the wrapper -> its child running, for ``main -- sh -c 'echo
  running'``: the time is taken right before the fork and exec, and again when
  the line ``running`` arrives on the pipe (the method of benchmarks/startup.py);
  the series are interleaved so a drift of the machine hits all alike;
- whole run: ``main --dir D -- true`` from exec to exit, and the CPU time it
  used (user + system, from wait4: hardly moved by other load on the machine);
- RSS: VmRSS and Pss (/proc/PID/smaps_rollup) of a sidecar whose child runs and
  whose main never comes, read once it has settled.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

NAME = "sidecar-supervisor"
RUNNING = ["sh", "-c", "echo running"]
HOLD = ["sh", "-c", "echo running; exec sleep 600"]
QUIET = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2)]
SETTLE = 2.0  # seconds after the child runs before RSS is read


def exec_to_running(argv: list[str]) -> float:
    """Milliseconds from exec of ``argv`` to its child printing ``running``."""
    start = time.perf_counter_ns()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    seen = time.perf_counter_ns()
    proc.stdout.read()
    proc.wait(60)
    if line.strip() != b"running":
        raise RuntimeError(f"{argv}: no 'running' line (got {line!r})")
    return (seen - start) / 1e6


def whole_run(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Milliseconds from exec to exit of ``argv``, and its CPU time (user + system)."""
    walls, cpus = [], []
    for _ in range(runs + 3):  # the first three warm the caches
        start = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=QUIET)
        _, status, usage = os.wait4(pid, 0)
        walls.append((time.perf_counter_ns() - start) / 1e6)
        cpus.append((usage.ru_utime + usage.ru_stime) * 1000)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{argv}: exit status {os.waitstatus_to_exitcode(status)}")
    return walls[3:], cpus[3:]


def memory(argv: list[str], shared: Path) -> tuple[float, float]:
    """VmRSS and Pss in MB of a settled sidecar whose main never comes."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"running":
            raise RuntimeError(f"{argv}: the child did not start")
        time.sleep(SETTLE)  # the first log event loads structlog; let it happen
        rss = _kb(Path(f"/proc/{proc.pid}/status"), "VmRSS:")
        pss = _kb(Path(f"/proc/{proc.pid}/smaps_rollup"), "Pss:")
    finally:
        (shared / "main.done").write_text("0")
        proc.wait(60)
    return rss / 1024, pss / 1024


def _kb(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in {path}")


def size(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir())


def gzipped(root: Path) -> int:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        tar.add(root, arcname=root.name)
    return len(data.getvalue())


def site_packages(venv: Path) -> int:
    """The tool and its dependencies, without pip and setuptools."""
    (lib,) = venv.glob("lib/python3*/site-packages")
    skip = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence")
    return sum(
        size(p) if p.is_dir() else p.stat().st_size
        for p in lib.iterdir()
        if not p.name.startswith(skip)
    )


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=10)
    return (
        f"{statistics.median(samples):.0f} ms (min {min(samples):.0f}, p90 {cuts[8]:.0f}, "
        f"n={len(samples)})"
    )


def measure(bundle: Path, venv: Path, runs: int) -> str:
    work = Path(tempfile.mkdtemp(prefix="measure-"))
    try:
        tools = work / "tools"
        tools.mkdir()
        published = subprocess.run(
            [str(bundle / NAME), "copy", str(tools)], check=True, capture_output=True, text=True
        ).stdout.strip()
        variants = {
            "bundle": [published],
            "pip-installed (console script)": [str(venv / "bin" / NAME)],
            "pip-installed (python -m supervisor)": [
                str(venv / "bin" / "python"),
                "-m",
                "supervisor",
            ],
        }

        def argv(label: str, role: str, folder: str, *rest: str) -> list[str]:
            path = work / f"{list(variants).index(label)}-{folder}"
            path.mkdir(exist_ok=True)
            return [*variants[label], role, "--dir", str(path), *rest]

        starts: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(runs):
            for label in variants:
                starts[label].append(exec_to_running(argv(label, "main", "start", "--", *RUNNING)))
        rows = []
        for label in variants:
            walls, cpus = whole_run(argv(label, "main", "whole", "--", "/bin/true"), runs)
            rss, pss = memory(
                argv(label, "sidecar", "memory", "--", *HOLD),
                work / f"{list(variants).index(label)}-memory",
            )
            rows.append(
                f"| {label} | {percentiles(starts[label])} | {percentiles(walls)} "
                f"| {statistics.median(cpus):.0f} ms (min {min(cpus):.0f}) "
                f"| {rss:.1f} MB / {pss:.1f} MB |"
            )
        head = [
            f"bundle: {size(bundle) / 1e6:.1f} MB on disk, {gzipped(bundle) / 1e6:.1f} MB "
            f"gzipped; pip-installed: {site_packages(venv) / 1e6:.1f} MB of packages "
            "(the tool, psutil, watchfiles, structlog and theirs) plus a Python",
            "",
            "| | exec -> child running (main) | whole run of `main -- true` "
            "| its CPU time | sidecar VmRSS / Pss |",
            "|---|---|---|---|---|",
        ]
        return "\n".join(head + rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("build/bundle") / NAME)
    parser.add_argument("--venv", type=Path, required=True, help="with the tool pip-installed")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(measure(args.bundle.resolve(), args.venv.resolve(), args.runs))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{os.cpu_count()} CPUs, load average {load}, {time.strftime('%Y-%m-%d %H:%M')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
