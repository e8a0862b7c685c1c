"""Fixtures: a shared dir per test, containers that clean up, and a leak check.

The test process makes itself a child subreaper, so any process a test leaves
behind (an orphaned grandchild included) is re-parented to it and can be
found; the autouse ``no_leaked_processes`` fixture kills such leftovers and
fails the test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from supervisor.harness import become_subreaper
from tests.kubelet import NAMESPACE, RawContainer
from tests.support import Container


def pytest_configure(config: pytest.Config) -> None:
    become_subreaper()


def _reap_zombies() -> None:
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError):
            continue


def _alive_descendants(before: set[int]) -> list[psutil.Process]:
    _reap_zombies()
    alive = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid not in before and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    leaked = []
    # A process that is exiting right now gets a moment; then it is a leak.
    _, alive = psutil.wait_procs(_alive_descendants(before), timeout=5)
    for proc in alive:
        try:
            leaked.append(f"{proc.pid} {proc.cmdline()}")
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=5)
    _reap_zombies()
    assert not leaked, f"processes left running: {leaked}"


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A folder other users can enter (mode 0755): pytest's tmp_path is root's, 0700."""
    path = Path(tempfile.mkdtemp(prefix="sidecar-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """The emptyDir every container of the pod mounts."""
    path = tmp_path / "shared"
    path.mkdir()
    return path


StartContainer = Callable[..., Container]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[StartContainer]:
    """Start a supervisor as a container: ``start("sidecar", "--dir", d, "--", *cmd)``."""
    started: list[Container] = []

    def factory(
        *args: str | os.PathLike[str], namespace: bool = True, env: dict[str, str] | None = None
    ) -> Container:
        argv: Sequence[str] = [os.fspath(a) for a in args]
        log = tmp_path / f"container-{len(started)}-{argv[0]}.log"
        container = Container(argv, log, namespace=namespace, env=env)
        started.append(container)
        return container

    yield factory
    for container in started:
        container.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Container]]:
    """A container whose process is ``argv`` as given (a launcher, a shell, ``setpriv``)."""
    started: list[Container] = []

    def factory(argv: Sequence[str | os.PathLike[str]], *, namespace: bool) -> Container:
        args = [os.fspath(a) for a in argv]
        log = tmp_path / f"launched-{len(started)}.log"
        if namespace:
            container: Container = RawContainer([*NAMESPACE, *args], log)
        else:
            container = Container(args, log, namespace=False, argv=args)
        started.append(container)
        return container

    yield factory
    for container in started:
        container.close()
