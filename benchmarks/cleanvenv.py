"""A clean venv in the run's scratch folder, where start-up is measured.

The interpreter floor and the supervisor are started from one venv made for
the run with ``python -m venv --without-pip`` (no system site-packages, no
``.pth`` file at all): the project is installed into it as a regular wheel
(not editable), the runtime dependencies are copied from the distributions
installed here (same versions, files as their RECORD lists them), and every
module is compiled to bytecode in its ``__pycache__``, as ``pip install``
leaves a package. So the floor and the tool pay the same interpreter, and
neither pays this machine's site hooks.

The wheel is built with ``pip wheel`` from a copy of the sources (nothing is
written in the work tree): first without build isolation (offline, needs
setuptools and wheel here), else with it (pip fetches the build backend as
it does for any install). If no venv can be made, the figures that need it
report "not available" with the reason.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import PY, ROOT

PROJECT = "sidecar-supervisor"
SOURCES = ("pyproject.toml", "README.md", "supervisor")
# Variables that would make the venv's Python read or write bytecode elsewhere than
# its __pycache__ (the run sets PYTHONPYCACHEPREFIX), or find other packages.
UNSET = ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONHOME")
TIMEOUT = 300


@dataclass
class CleanVenv:
    path: Path
    python: Path
    script: Path  # the console script, sidecar-supervisor
    site: Path
    how: str  # how the project was installed
    copied: dict[str, str] = field(default_factory=dict)  # dependency -> version
    bytecode: bool = False  # supervisor/__pycache__ holds compiled modules

    def describe(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "python": str(self.python),
            "installed": self.how,
            "dependencies_copied": self.copied,
            "supervisor_bytecode_compiled": self.bytecode,
            "pth_files": sorted(p.name for p in self.site.glob("*.pth")),
        }


def clean_env() -> dict[str, str]:
    """This environment without the variables of ``UNSET``."""
    return {k: v for k, v in os.environ.items() if k not in UNSET}


def _run(argv: list[str | os.PathLike[str]], cwd: Path | None = None) -> None:
    result = subprocess.run(
        argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))} ...: {' / '.join(tail)}")


def _wheel(work: Path) -> tuple[Path, str]:
    src, out = work / "clean-src", work / "clean-wheel"
    src.mkdir()
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / name)
    base = [PY, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out)]
    errors = []
    for extra, how in (
        (["--no-build-isolation", "--no-index"], "wheel built without build isolation"),
        ([], "wheel built by pip with build isolation"),
    ):
        try:
            _run([*base, *extra, "./clean-src"], cwd=work)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
            continue
        wheels = sorted(out.glob("*.whl"))
        if wheels:
            return wheels[0], how
    raise RuntimeError("no wheel could be built: " + " | ".join(errors))


def _requirements(name: str) -> list[str]:
    """Names of ``name``'s runtime requirements (no extras; markers are not evaluated)."""
    found = []
    for requirement in importlib.metadata.requires(name) or []:
        if "extra ==" in requirement.replace("extra==", "extra =="):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match:
            found.append(match.group(0))
    return found


def _closure() -> dict[str, importlib.metadata.Distribution]:
    """Every installed distribution the project needs at run time, itself excluded."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = _requirements(PROJECT)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement of another Python version (its marker is not evaluated)
        found[key] = dist
        todo.extend(_requirements(name))
    return found


def _copy(dist: importlib.metadata.Distribution, site: Path) -> None:
    for item in dist.files or []:
        if item.parts[0] == ".." or "__pycache__" in item.parts:
            continue  # scripts outside site-packages; bytecode is compiled afresh
        origin = Path(str(dist.locate_file(item)))
        if not origin.is_file():
            continue
        target = site / Path(*item.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)


def build(work: Path) -> CleanVenv:
    """Make the venv in ``work``; raises RuntimeError (or OSError) when it cannot."""
    path = work / "clean-venv"
    wheel, how = _wheel(work)
    _run([PY, "-m", "venv", "--without-pip", str(path)])
    python = path / "bin" / "python"
    pip = [PY, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps"]
    _run([*pip, "--no-index", str(wheel)])
    found = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    site = Path(found.stdout.strip())
    closure = _closure()
    for dist in closure.values():
        _copy(dist, site)
    # pip compiles at install time; compile again so that nothing is left uncompiled
    # (a copied dependency, or an install whose compile step was turned off).
    _run([python, "-m", "compileall", "-q", "-j", "0", str(site)])
    script = path / "bin" / "sidecar-supervisor"
    if not script.exists():
        raise RuntimeError(f"no console script at {script}")
    venv = CleanVenv(
        path=path,
        python=python,
        script=script,
        site=site,
        how=f"{how}, installed with pip install --no-deps (not editable)",
        copied={d.metadata["Name"]: d.version for d in closure.values()},
    )
    venv.bytecode = any((site / "supervisor" / "__pycache__").glob("cli.*.pyc"))
    if not venv.bytecode:
        raise RuntimeError("supervisor/__pycache__ has no compiled modules")
    return venv
