"""How much to measure (quick or full), which tools are here, and what machine this is."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import random
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import cleanvenv
from benchmarks.cleanvenv import CleanVenv
from benchmarks.harness import PY, ROOT
from supervisor.harness import UNSHARE

TOOLS = ("tini", "dumb-init", "hyperfine", "pgrep", "unshare")


@dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int  # rounds of each latency family, interleaved (the spread of their p50s)
    samples: int  # subject samples of each latency figure, per round
    baseline_samples: int  # samples of each baseline per round (pollers take about a second)
    processes: int  # signal forwarding: processes per wrapper, per round
    signals: int  # signal forwarding: signals per process
    startups: int  # exec -> child running: starts per command, per round
    orphans: int  # orphans made per run
    orphan_runs: int  # runs per wrapper, per round
    fanin_mains: int
    fanin_samples: int  # per round
    cycles: int
    cpu_window: float  # seconds of one idle CPU sample
    cpu_samples: int  # idle CPU samples (windows) per process
    hang_timeout: float  # seconds a waiter that cannot see a death is given
    hyperfine_runs: int  # per command, per round
    hyperfine_warmup: int


QUICK = Settings(
    quick=True,
    rounds=1,
    samples=3,
    baseline_samples=1,
    processes=1,
    signals=5,
    startups=2,
    orphans=300,
    orphan_runs=1,
    fanin_mains=100,
    fanin_samples=1,
    cycles=6,
    cpu_window=1.0,
    cpu_samples=1,
    hang_timeout=1.2,
    hyperfine_runs=2,
    hyperfine_warmup=1,
)
FULL = Settings(
    quick=False,
    rounds=3,
    samples=20,
    baseline_samples=4,
    processes=2,
    signals=40,
    startups=15,
    orphans=10_000,
    orphan_runs=1,
    fanin_mains=100,
    fanin_samples=4,
    cycles=1000,
    cpu_window=10.0,
    cpu_samples=3,
    hang_timeout=3.0,
    hyperfine_runs=10,
    hyperfine_warmup=2,
)


@dataclass
class Context:
    settings: Settings
    work: Path  # scratch space of this run; every trial gets its own folder in it
    namespace: bool  # PID namespaces can be made here (unshare --pid works)
    tools: dict[str, str | None]
    rng: random.Random
    _venv: CleanVenv | str | None = None  # built on first use: the venv, or why not

    def trial_dir(self, name: str) -> Path:
        """A fresh, empty folder: the emptyDir of one trial."""
        path = self.work / f"{name}-{time.monotonic_ns()}"
        path.mkdir(parents=True)
        return path

    def missing(self, tool: str) -> str | None:
        """Why a baseline that needs ``tool`` cannot run, or None if it can."""
        if self.tools.get(tool) is None:
            return f"{tool} not installed"
        return None

    def random_phase(self, interval: float) -> None:
        """Sleep a random part of ``interval``: a trigger must not be in step with a poller."""
        time.sleep(self.rng.uniform(0, interval))

    @property
    def venv_state(self) -> CleanVenv | str | None:
        """The clean venv, why there is none, or None if no figure asked for it."""
        return self._venv

    def clean_venv(self) -> CleanVenv | str:
        """The run's clean venv (built once, on first use), or why there is none."""
        if self._venv is None:
            try:
                self._venv = cleanvenv.build(self.work)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                self._venv = f"no clean venv: {exc}"
        return self._venv


def detect_tools() -> dict[str, str | None]:
    return {tool: shutil.which(tool) for tool in TOOLS}


@functools.cache
def namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        result = subprocess.run([*UNSHARE, "true"], capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _first_line(argv: list[str]) -> str | None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else None


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _os_release() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release") as release:
        for line in release:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError), open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> dict[str, Any]:
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = _first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--", "supervisor"])
    return {"commit": commit, "supervisor_dirty": bool(dirty)}


def machine(ctx: Context) -> dict[str, Any]:
    """What the figures were measured on."""
    import supervisor  # noqa: PLC0415 - only for its version

    site = Path(sysconfig.get_path("purelib"))
    venv = ctx.venv_state
    tools = {
        "tini": ctx.tools["tini"] and _first_line([ctx.tools["tini"], "--version"]),
        "dumb-init": ctx.tools["dumb-init"] and _first_line([ctx.tools["dumb-init"], "--version"]),
        "hyperfine": ctx.tools["hyperfine"] and _first_line([ctx.tools["hyperfine"], "--version"]),
    }
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "kernel": f"{platform.system()} {platform.release()} {platform.version()}",
        "os": _os_release(),
        "python": sys.version.split()[0],
        "python_executable": PY,
        "site_pth_files": sorted(p.name for p in site.glob("*.pth")),
        "pid_namespaces": ctx.namespace,
        "tools": tools,
        "packages": {
            "sidecar-supervisor": supervisor.__version__,
            **{name: _version(name) for name in ("watchfiles", "psutil", "structlog")},
        },
        "git": _git(),
        "settings": asdict(ctx.settings),
        "clean_venv": venv.describe() if isinstance(venv, CleanVenv) else venv,
    }
