"""On a real container engine: the image, the compose lab, a base-layer image, the bundle.

Marked ``engine``; every test skips, with the reason, when no engine answers
(``docker`` missing, or ``docker info`` failing), so a run without one stays fast:
``python -m pytest -m engine`` runs only these. What they need beyond the engine:

- ``docker build`` of the repository's ``Dockerfile`` (its base images local or
  reachable; pip reaches a package index) and Compose v2 (``docker compose``);
- a glibc image without Python for the bundle: ``SIDECAR_SUPERVISOR_TEST_GLIBC_IMAGE``
  (default ``local/busybox:glibc``), used only if it is already there: nothing is
  ever pulled.

Every container runs with ``--network none`` (or in another container's
namespace), and builds use ``--network host``, so an engine without a bridge
network does; containers, volumes, projects and tags are named per test and
removed in teardown. Polling the engine (``docker logs``) is the only way to
watch it, so it is done every half second with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor import __version__

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "examples" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
BUNDLE = "/opt/sidecar-supervisor"
SHARED = "/run/sidecar-supervisor"  # the default --dir, owned by the image's user
BUNDLED_TOOL = f"{SHARED}/sidecar-supervisor/sidecar-supervisor"
USER = "10001"
GLIBC_IMAGE = os.environ.get("SIDECAR_SUPERVISOR_TEST_GLIBC_IMAGE", "local/busybox:glibc")
BUILD_TIMEOUT = 900.0  # a first build: two base images, pip, PyInstaller
RUN_TIMEOUT = 120.0
POLL = 0.5

pytestmark = [pytest.mark.engine, pytest.mark.timeout(BUILD_TIMEOUT + 300)]


def run(*args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI to the end, whatever its status."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=timeout
    )


def docker(*args: str, timeout: float = RUN_TIMEOUT, check: bool = True) -> str:
    """Run the docker CLI to the end; its stdout, stripped. Fails the test on an error."""
    result = run(*args, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)}: exit {result.returncode}\n{result.stderr}")
    return result.stdout.strip()


@cache
def why_no_engine() -> str | None:
    """None when an engine answers; otherwise the reason to skip."""
    if shutil.which("docker") is None:
        return "no container engine: the docker CLI is not installed"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return "no container engine answers: `docker info` timed out"
    if result.returncode != 0:
        error = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no container engine answers: `docker info` failed: {error}"
    return None


@pytest.fixture(scope="session")
def engine() -> None:
    reason = why_no_engine()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def compose(engine: None) -> None:
    if run("compose", "version").returncode:
        pytest.skip("Compose v2 is missing: `docker compose version` failed")


def name(kind: str) -> str:
    return f"sstest-{kind}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def image(engine: None) -> Iterator[str]:
    """The image built from the Dockerfile, under a tag of this session's own."""
    tag = f"{name('image')}:{__version__}"
    # --network host: for pip in the build stages, on engines without a bridge too.
    docker("build", "--network", "host", "--tag", tag, str(ROOT), timeout=BUILD_TIMEOUT)
    yield tag
    docker("rmi", "--no-prune", tag, check=False)  # keep the layers: the next build is cached


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = RUN_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)
    return value


def events(logs: str) -> list[dict[str, Any]]:
    """The supervisor's JSON log lines among a container's output."""
    found = []
    for line in logs.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if "event" in event:
                found.append(event)
    return found


def event_time(found: list[dict[str, Any]], event: str) -> float:
    (stamp,) = [e["timestamp"] for e in found if e["event"] == event]
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(
        "0" + stamp[19:].rstrip("Z")
    )


# --- the image -----------------------------------------------------------------------


def test_image_prints_its_version_and_runs_as_a_non_root_user(image: str) -> None:
    assert docker("run", "--rm", "--network", "none", image, "--version") == (
        f"sidecar-supervisor {__version__}"
    )
    assert docker("image", "inspect", "--format", "{{.Config.User}}", image) == "10001:10001"
    assert docker("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u") == USER
    assert json.loads(docker("image", "inspect", "--format", "{{json .Config.Entrypoint}}", image))
    assert docker("image", "inspect", "--format", "{{.Config.StopSignal}}", image) == "SIGTERM"


def test_image_holds_no_build_leftovers(image: str) -> None:
    script = "for p in /wheels /staging /src; do [ -e $p ] && echo $p; done; true"
    assert (
        docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script) == ""
    )


def test_image_imports_the_tool_from_compiled_bytecode(image: str) -> None:
    """As the non-root user nothing can be written, so nothing may need compiling."""
    modules = "supervisor.cli, supervisor.sidecar_role, supervisor.main_role, structlog, psutil"
    result = run(
        *("run", "--rm", "--network", "none", "--entrypoint", "python3", image),
        *("-v", "-c", f"import {modules}, watchfiles"),
    )
    assert result.returncode == 0, result.stderr
    loaded = re.findall(r"^# code object from '?([^'\n]+)'?$", result.stderr, re.MULTILINE)
    tool = [path for path in loaded if "/supervisor/" in path]
    assert len(tool) >= 3, result.stderr[-2000:]
    assert [path for path in loaded if not path.endswith(".pyc")] == []


def test_bundle_needs_the_documented_glibc(image: str) -> None:
    cat = ("run", "--rm", "--network", "none", "--entrypoint", "cat", image)
    manifest = json.loads(docker(*cat, f"{BUNDLE}/_internal/bundle.json"))
    assert manifest["version"] == __version__
    docs = (ROOT / "bundle" / "README.md").read_text()
    assert f"needs **glibc {manifest['glibc']}**" in docs
    assert f"glibc {manifest['glibc']} or later" in docs  # the launcher's message
    assert manifest["glibc_needed_by"].split(".so")[0] in docs


# --- the compose lab -------------------------------------------------------------------


@dataclass
class Project:
    """The compose lab under a project name of its own, with the test image."""

    name: str
    files: list[Path]
    created: bool = field(default=False)

    def __call__(self, *args: str, timeout: float = RUN_TIMEOUT, check: bool = True) -> str:
        self.created = True
        files = [arg for path in self.files for arg in ("--file", str(path))]
        return docker(
            "compose", "--project-name", self.name, *files, *args, timeout=timeout, check=check
        )

    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.created = True
        files = [arg for path in self.files for arg in ("--file", str(path))]
        return run("compose", "--project-name", self.name, *files, "up", *args)

    def exit_codes(self) -> dict[str, int]:
        rows = self("ps", "--all", "--format", "{{.Service}} {{.ExitCode}}").splitlines()
        return {service: int(code) for service, code in (row.split() for row in rows)}

    def logs(self, service: str) -> str:
        return self("logs", "--no-color", "--no-log-prefix", service)

    def container(self, service: str) -> str:
        return self("ps", "--all", "--quiet", service)


def lab_services() -> list[str]:
    return list(yaml.safe_load(COMPOSE_FILE.read_text())["services"])


@pytest.fixture
def lab(compose: None, image: str, tmp_path: Path) -> Iterator[Project]:
    override = tmp_path / "image.yml"
    override.write_text(
        yaml.safe_dump({"services": {service: {"image": image} for service in lab_services()}})
    )
    project = Project(name("lab"), [COMPOSE_FILE, override])
    yield project
    if project.created:
        project("down", "--volumes", "--timeout", "0", "--remove-orphans", check=False)


def test_compose_lab_returns_by_itself_with_every_service_at_zero(lab: Project) -> None:
    result = lab.up()

    assert result.returncode == 0, result.stderr[-3000:]
    assert lab.exit_codes() == {"main": 0, "proxy": 0, "log-collector": 0, "flaky": 0}
    main = lab.logs("main")
    assert "main: the proxy answered 200" in main
    collector = lab.logs("log-collector")
    assert "log-collector: shipped: main: all 5 tasks done, exiting" in collector
    shipped = events(collector)
    delay = event_time(shipped, "stop_requested") - event_time(shipped, "stop_delayed")
    assert delay >= 2.0, f"--stop-delay 2 cut short: {delay:.3f} s"
    proxy = events(lab.logs("proxy"))
    assert event_time(proxy, "stop_requested") >= event_time(shipped, "supervisor_exiting")
    flaky = events(lab.logs("flaky"))
    assert any(e["event"] == "child_restarting" for e in flaky)
    assert flaky[-1]["event"] == "supervisor_exiting"
    assert flaky[-1]["exit_code"] == 0


def test_docker_stop_of_every_service_at_once(lab: Project) -> None:
    """The kubelet and `docker stop` send SIGTERM to every container at once: the main's
    COMMAND gets it (143), the sidecars outlive the main, then stop and exit 0."""
    result = lab.up("--detach")
    assert result.returncode == 0, result.stderr[-3000:]
    wait_for(lambda: "main: task 2/5" in lab.logs("main"), "the main's second task")
    containers = [lab.container(service) for service in lab_services()]

    docker("stop", *containers, timeout=RUN_TIMEOUT)  # in parallel, each its stop_grace_period

    assert lab.exit_codes() == {"main": 143, "proxy": 0, "log-collector": 0, "flaky": 0}
    collector = events(lab.logs("log-collector"))
    assert collector[-1]["event"] == "supervisor_exiting"
    proxy = events(lab.logs("proxy"))
    assert event_time(proxy, "stop_requested") >= event_time(collector, "supervisor_exiting")
    # Which comes first, the SIGTERM or the main's completion, is a race here; the
    # delay is honoured either way (a SIGTERM during it is noted, not obeyed).
    delay = event_time(collector, "stop_requested") - event_time(collector, "stop_delayed")
    assert delay >= 2.0, f"--stop-delay 2 cut short: {delay:.3f} s"


def test_exit_code_from_main_gives_a_failing_main_s_status(lab: Project, tmp_path: Path) -> None:
    failing = tmp_path / "failing.yml"
    command = ["main", "--wait-ready", "proxy", "--", "sh", "-c", "echo main: failing; exit 3"]
    failing.write_text(yaml.safe_dump({"services": {"main": {"command": command}}}))
    lab.files.append(failing)

    result = lab.up("--exit-code-from", "main")

    assert result.returncode == 3, result.stderr[-3000:]
    assert lab.exit_codes() == {"main": 3, "proxy": 0, "log-collector": 0, "flaky": 0}
    collector = events(lab.logs("log-collector"))
    detected = [e for e in collector if e["event"] == "completion_detected"]
    assert [(e["target"], e["exit_code"]) for e in detected] == [("main", 3)]
    # compose's SIGTERM comes right after the main's exit, during the stop delay:
    # it is noted, and the collector still gets its two seconds.
    delay = event_time(collector, "stop_requested") - event_time(collector, "stop_delayed")
    assert delay >= 2.0, f"--stop-delay 2 cut short: {delay:.3f} s"


def test_compose_builds_the_image_without_a_registry(
    compose: None, engine: None, tmp_path: Path
) -> None:
    """`docker compose build` (BuildKit through the engine): no frontend image to fetch."""
    tag = f"{name('compose-image')}:{__version__}"
    override = tmp_path / "build.yml"
    # network: host only because this test's engine may have no bridge network
    override.write_text(
        yaml.safe_dump({"services": {"main": {"image": tag, "build": {"network": "host"}}}})
    )
    project = Project(name("build"), [COMPOSE_FILE, override])
    try:
        project("build", "main", timeout=BUILD_TIMEOUT)
        assert docker("run", "--rm", "--network", "none", tag, "--version") == (
            f"sidecar-supervisor {__version__}"
        )
    finally:
        docker("rmi", "--no-prune", tag, check=False)


# --- the image as a base layer, and the bundle ---------------------------------------------


@pytest.fixture
def cleanup(engine: None) -> Iterator[Callable[..., str]]:
    """Registers containers, volumes and images by name; removes them all at teardown."""
    made: dict[str, list[str]] = {"container": [], "volume": [], "image": []}

    def register(kind: str, value: str) -> str:
        made[kind].append(value)
        return value

    yield register
    if made["container"]:
        docker("rm", "--force", "--volumes", *made["container"], check=False)
    if made["volume"]:
        docker("volume", "rm", "--force", *made["volume"], check=False)
    for tag in made["image"]:
        docker("rmi", "--no-prune", tag, check=False)


def logs(container: str) -> str:
    """A container's output: its stdout, then its stderr (the supervisor's log)."""
    result = run("logs", container)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def wait_exit(container: str) -> int:
    return int(docker("wait", container, timeout=RUN_TIMEOUT))


def test_base_layer_image_runs_its_helper_as_a_sidecar(
    image: str, tmp_path: Path, cleanup: Callable[..., str]
) -> None:
    """The README's base-layer Dockerfile: FROM the tool, a helper, CMD the sidecar role."""
    (tmp_path / "my-helper").write_text(
        "#!/bin/sh\necho 'helper: serving'\nwhile true; do sleep 1; done\n"
    )
    (tmp_path / "my-helper").chmod(0o755)
    (tmp_path / "Dockerfile").write_text(
        f"FROM {image}\n"
        "COPY my-helper /usr/local/bin/my-helper\n"
        'CMD ["sidecar", "--name", "helper", "--", "my-helper"]\n'
    )
    derived = cleanup("image", f"{name('derived')}:1")
    docker("build", "--network", "none", "--tag", derived, str(tmp_path), timeout=BUILD_TIMEOUT)
    volume = cleanup("volume", name("shared"))
    docker("volume", "create", volume)
    mount = f"{volume}:{SHARED}"
    helper = cleanup("container", name("helper"))
    docker("run", "--detach", "--name", helper, "--network", "none", "-v", mount, derived)
    wait_for(lambda: "helper: serving" in docker("logs", helper), "the helper")

    main = docker(
        *("run", "--rm", "--network", "none", "-v", mount, image),
        *("main", "--wait-ready", "helper", "--", "sh", "-c", "echo main: done"),
    )

    assert "main: done" in main
    assert wait_exit(helper) == 0
    found = events(logs(helper))
    assert [e["source"] for e in found if e["event"] == "completion_detected"] == ["marker"]


def glibc_image() -> str:
    if run("image", "inspect", GLIBC_IMAGE).returncode:
        pytest.skip(
            f"no local glibc image without Python ({GLIBC_IMAGE}); nothing is pulled: "
            "set SIDECAR_SUPERVISOR_TEST_GLIBC_IMAGE to one that is there"
        )
    return GLIBC_IMAGE


def test_copy_into_a_named_volume_then_the_bundle_runs_without_python(
    image: str, cleanup: Callable[..., str]
) -> None:
    """The init-container pattern on Docker: `copy` as the image's user into a new volume
    at the image's /run/sidecar-supervisor, then main and sidecar run from the bundle in
    a glibc image with no Python, read-only, as a non-root user."""
    target = glibc_image()
    no_python = "! command -v python3 && ! command -v python"
    assert docker("run", "--rm", "--network", "none", target, "sh", "-c", no_python) == ""
    volume = cleanup("volume", name("bundle"))
    docker("volume", "create", volume)
    mount = f"{volume}:{SHARED}"

    printed = docker("run", "--rm", "--network", "none", "-v", mount, image, "copy", SHARED)

    assert printed.splitlines()[-1] == BUNDLED_TOOL
    locked = ("--network", "none", "--read-only", "--user", f"{USER}:{USER}", "-v", mount)
    sidecar = cleanup("container", name("sidecar"))
    loop = "echo sidecar: up; while true; do sleep 1; done"
    docker(
        *("run", "--detach", "--name", sidecar, *locked, target),
        *(BUNDLED_TOOL, "sidecar", "--", "sh", "-c", loop),
    )
    wait_for(lambda: "sidecar: up" in docker("logs", sidecar), "the bundled sidecar")

    result = run(
        *("run", "--rm", *locked, target),
        *(BUNDLED_TOOL, "main", "--", "sh", "-c", "echo main: done; exit 3"),
    )

    assert result.returncode == 3, result.stderr
    assert "main: done" in result.stdout
    assert wait_exit(sidecar) == 0
    found = events(logs(sidecar))
    detected = [e for e in found if e["event"] == "completion_detected"]
    assert [(e["target"], e["exit_code"]) for e in detected] == [("main", 3)]


def test_copy_elsewhere_needs_root_or_the_image_s_directory(
    image: str, cleanup: Callable[..., str]
) -> None:
    """As documented: a new volume at another path is root's, so the non-root copy says
    so in one line; run as root (`--user 0`), it works."""
    volume = cleanup("volume", name("tools"))
    docker("volume", "create", volume)
    mount = f"{volume}:/tools"
    refused = run("run", "--rm", "--network", "none", "-v", mount, image, "copy", "/tools")
    assert refused.returncode == 1
    assert "Permission denied" in refused.stderr
    assert "Traceback" not in refused.stderr

    printed = docker(
        "run", "--rm", "--network", "none", "--user", "0", "-v", mount, image, "copy", "/tools"
    )

    assert printed.splitlines()[-1] == "/tools/sidecar-supervisor/sidecar-supervisor"
