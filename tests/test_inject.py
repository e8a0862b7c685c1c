"""``inject``: the seed's Job rewritten, validated against the schemas, and run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from supervisor import __version__
from tests.example_runner import IMAGE, run_pod
from tests.support import HERE, SUPERVISOR, TIMEOUT
from tests.test_examples import KUBERNETES, kubernetes_versions, minor

SEED = (KUBERNETES / "job-cannot-complete.yaml").read_text()
FAST = {"sleep 3": "sleep 0.05", "sleep 1": "sleep 0.1"}
EXECUTABLE = "/run/sidecar-supervisor/sidecar-supervisor/sidecar-supervisor"
IMAGE_TAG = f"{IMAGE}:{__version__}"


def inject(*args: str, stdin: str = SEED, image: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUPERVISOR, "inject", *(["--image", IMAGE_TAG] if image else []), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def injected(*args: str, stdin: str = SEED, image: bool = True) -> str:
    result = inject(*args, stdin=stdin, image=image)
    assert result.returncode == 0, result.stderr
    return result.stdout


def containers(document: dict[str, Any], key: str = "containers") -> dict[str, Any]:
    spec = document["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get(key, [])}


@pytest.mark.parametrize("native", [False, True], ids=["default", "native"])
def test_injected_seed_validates_against_the_schemas(native: bool) -> None:
    document = yaml.safe_load(injected(*(["--native"] if native else [])))
    floor = (1, 29) if native else (1, 25)
    versions = [v for v in kubernetes_versions() if minor(v) >= floor]
    assert versions
    for version in versions:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{version}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_default_mode_wraps_every_container_and_adds_the_bundle() -> None:
    document = yaml.safe_load(injected())
    spec = document["spec"]["template"]["spec"]
    main, sidecar = containers(document).values()
    assert main["command"] == [EXECUTABLE, "main", "--name", "main-container-1", "--", "sh", "-c"]
    assert sidecar["command"][:8] == [
        EXECUTABLE, "sidecar", "--name", "sidecar-container-1",
        "--wait-for", "main-container-1", "--stop-on", "success",  # restartPolicy: OnFailure
    ]  # fmt: skip
    assert {"name": "sidecar-supervisor", "emptyDir": {}} in spec["volumes"]
    for container in (main, sidecar):
        assert {"name": "sidecar-supervisor", "mountPath": "/run/sidecar-supervisor"} in container[
            "volumeMounts"
        ]
    init = spec["initContainers"][0]
    assert init["command"] == ["sidecar-supervisor", "copy", "/run/sidecar-supervisor"]
    assert init["image"] == IMAGE_TAG
    annotations = document["spec"]["template"]["metadata"]["annotations"]
    assert annotations["sidecar-supervisor/mains"] == "main-container-1"


def test_native_mode_moves_sidecars_to_init_containers() -> None:
    with_probe = SEED.replace(
        "        - name: sidecar-container-1\n",
        "        - name: sidecar-container-1\n"
        "          readinessProbe:\n"
        "            exec: {command: [true]}\n",
    )
    document = yaml.safe_load(injected("--native", stdin=with_probe))
    assert list(containers(document)) == ["main-container-1"]
    sidecar = containers(document, "initContainers")["sidecar-container-1"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"] == sidecar["readinessProbe"]
    assert sidecar["command"] == ["sh", "-c"]  # not wrapped: the kubelet does the work


@pytest.mark.parametrize("native", [False, True], ids=["default", "native"])
def test_injecting_twice_changes_nothing(native: bool) -> None:
    flags = ["--native"] if native else []
    once = injected(*flags)
    assert injected(*flags, stdin=once) == once


def test_comments_and_field_order_survive() -> None:
    out = injected()
    assert "# Problem 1 of the four" in out
    original_keys = list(yaml.safe_load(SEED)["spec"]["template"]["spec"])
    new_keys = list(yaml.safe_load(out)["spec"]["template"]["spec"])
    assert new_keys[: len(original_keys)] == original_keys


def test_multi_document_input_passes_other_kinds_through() -> None:
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n"
    cron = yaml.safe_load(SEED)
    cron_job = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": cron["spec"]}},
    }
    seed = SEED.removeprefix("---\n")
    stream = f"{config_map}---\n{seed}---\n{yaml.safe_dump(cron_job)}"
    documents = list(yaml.safe_load_all(injected(stdin=stream)))
    assert documents[0] == yaml.safe_load(config_map)
    assert containers(documents[1])["main-container-1"]["command"][0] == EXECUTABLE
    template = documents[2]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["containers"][1]["command"][1] == "sidecar"


def test_mains_from_the_flag_or_the_annotation() -> None:
    by_flag = yaml.safe_load(injected("--main", "sidecar-container-1"))
    assert containers(by_flag)["sidecar-container-1"]["command"][1] == "main"
    assert containers(by_flag)["main-container-1"]["command"][1] == "sidecar"
    annotated = SEED.replace(
        "  template:\n    spec:\n",
        "  template:\n    metadata:\n      annotations:\n"
        "        sidecar-supervisor/mains: sidecar-container-1\n    spec:\n",
    )
    by_annotation = yaml.safe_load(injected(stdin=annotated))
    assert containers(by_annotation)["sidecar-container-1"]["command"][1] == "main"
    overridden = yaml.safe_load(injected("--main", "main-container-1", stdin=annotated))
    assert containers(overridden)["main-container-1"]["command"][1] == "main"


@pytest.mark.parametrize(
    ("args", "stdin", "names"),
    [
        ((), "kind: Job\nspec: [unclosed\n", "not YAML"),
        (("--main", "nope"), SEED, "'nope'"),
        ((), SEED.replace('          command: ["sh", "-c"]\n', "", 1), "--entrypoint"),
        (("--entrypoint", "no-equals-sign"), SEED, "--entrypoint"),
        (("-f", "/nonexistent/job.yaml"), "", "-f"),
    ],
    ids=["not-yaml", "unknown-main", "no-command", "bad-entrypoint", "missing-file"],
)
def test_bad_input_is_one_line_and_nothing_on_stdout(
    args: tuple[str, ...], stdin: str, names: str
) -> None:
    result = inject(*args, stdin=stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert names in result.stderr
    assert "Traceback" not in result.stderr


def test_entrypoint_supplies_a_missing_command() -> None:
    no_command = SEED.replace('          command: ["sh", "-c"]\n', "", 1)
    document = yaml.safe_load(
        injected("--entrypoint", "main-container-1=/bin/sh -c", stdin=no_command)
    )
    assert containers(document)["main-container-1"]["command"][-3:] == ["--", "/bin/sh", "-c"]


def fake_bundle(tmp_path: Path) -> Path:
    """What ``copy`` needs to find: a folder with the bundle's executable."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    program = bundle / "sidecar-supervisor"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return bundle


@pytest.mark.parametrize("code", [0, 3])
def test_injected_seed_completes_with_the_mains_exit_code(tmp_path: Path, code: int) -> None:
    seed = SEED.replace('echo "main: all 5 tasks done, exiting"', f'echo "main: done"; exit {code}')
    document = yaml.safe_load(injected(stdin=seed.replace("OnFailure", "Never")))
    outcome = run_pod(
        document,
        tmp_path / "pod",
        substitutions=FAST,
        env={"sidecar-supervisor-copy": {"SIDECAR_SUPERVISOR_BUNDLE": str(fake_bundle(tmp_path))}},
    )
    assert outcome.exit_codes == {
        "sidecar-supervisor-copy": 0,
        "main-container-1": code,
        "sidecar-container-1": 0,
    }
    assert outcome.phase == ("Succeeded" if code == 0 else "Failed")
    assert outcome.leftovers == []


# --- the manifests people have (tests/manifests/) ----------------------------------------

SHAPED = HERE / "manifests"  # real-world shaped, for inject and check
REAL_WORLD = sorted(p.name for p in SHAPED.glob("*.yaml"))
FLAGS = {"no-command.yaml": ("--entrypoint", "tor=/usr/bin/tor")}


def objects(document: Any) -> list[dict[str, Any]]:
    """A document, or the items of a List (which has no schema of its own)."""
    if document.get("kind") == "List":
        return list(document["items"])
    return [document]


def check(text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUPERVISOR, "check", "-f", "-", *args],
        input=text,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_a_dozen_real_world_manifests_are_here() -> None:
    assert len(REAL_WORLD) + len(EXAMPLES) >= 12


EXAMPLES = ["job-fixed.yaml", "job-bundle.yaml", "job-istio.yaml", "job-log-shipper.yaml"]


@pytest.mark.parametrize("name", REAL_WORLD + [f"examples/{n}" for n in EXAMPLES] + ["seed"])
def test_real_world_output_validates_passes_check_and_is_stable(name: str) -> None:
    if name == "seed":
        text = SEED
    elif name.startswith("examples/"):
        text = (KUBERNETES / name.removeprefix("examples/")).read_text()
    else:
        text = (SHAPED / name).read_text()
    out = injected(*FLAGS.get(name, ()), stdin=text)
    versions = kubernetes_versions()
    for document in yaml.safe_load_all(out):
        for obj in objects(document):
            for version in (versions[0], versions[-1]):  # the oldest and newest supported
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{version}: {'.'.join(map(str, exc.path))}: {exc.message}")
    checked = check(out)
    assert checked.returncode == 0, checked.stdout
    assert injected(stdin=out, image=False) == out  # idempotent, and no image needed again


def pod_containers(document: dict[str, Any]) -> dict[str, Any]:
    spec = document["spec"] if document["kind"] == "Pod" else document["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def test_without_an_image_it_says_so_and_writes_nothing() -> None:
    result = inject(image=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--image" in result.stderr
    assert "SIDECAR_SUPERVISOR_IMAGE" in result.stderr


def test_the_image_comes_from_its_variable_too() -> None:
    result = subprocess.run(
        [*SUPERVISOR, "inject"],
        input=SEED,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "SIDECAR_SUPERVISOR_IMAGE": "registry.example/tool:1"},
    )
    assert result.returncode == 0, result.stderr
    init = yaml.safe_load(result.stdout)["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == "registry.example/tool:1"


@pytest.mark.parametrize(
    ("name", "mesh"),
    [("airflow-pod-istio.yaml", "istio"), ("airflow-pod-istio-running.yaml", "istio")],
)
def test_istio_pods_get_the_preset_and_no_wrapped_proxy(name: str, mesh: str) -> None:
    document = yaml.safe_load(injected(stdin=(SHAPED / name).read_text()))
    found = pod_containers(document)
    command = found["base"]["command"]
    assert command[command.index("--preset") + 1] == mesh
    if "istio-proxy" in found:
        assert "command" not in found["istio-proxy"]  # the mesh's, left alone


def test_linkerd_cronjob_gets_the_preset_and_the_shutdown_annotation() -> None:
    document = yaml.safe_load(injected(stdin=(SHAPED / "cronjob-linkerd.yaml").read_text()))
    template = document["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["annotations"]["config.linkerd.io/proxy-admin-shutdown"] == (
        "enabled"
    )
    report = {c["name"]: c for c in template["spec"]["containers"]}["report"]["command"]
    assert report[report.index("--preset") + 1] == "linkerd"
    assert report[report.index("--stop-on") + 1] == "success"  # OnFailure: a retry keeps it


def test_preset_flag_forces_the_mesh_the_manifest_cannot_show() -> None:
    document = yaml.safe_load(injected("--preset", "istio"))
    main = containers(document)["main-container-1"]["command"]
    assert main[main.index("--preset") + 1] == "istio"


def test_already_wrapped_containers_are_not_wrapped_again() -> None:
    """job-fixed.yaml used to come out as ``main -- sidecar-supervisor main ...``."""
    original = (KUBERNETES / "job-fixed.yaml").read_text()
    document = yaml.safe_load(injected(stdin=original))
    for name, container in containers(document).items():
        assert container["command"] == containers(yaml.safe_load(original))[name]["command"]
        assert container["command"].count("--") == 1
    assert "initContainers" not in document["spec"]["template"]["spec"]  # pip-installed tool


def test_a_hand_wrapped_main_keeps_its_record_name_and_volume() -> None:
    document = yaml.safe_load(injected(stdin=(SHAPED / "half-wrapped.yaml").read_text()))
    found = containers(document)
    assert found["app"]["command"] == ["sidecar-supervisor", "main", "--"]
    metrics = found["metrics"]["command"]
    assert metrics[metrics.index("--wait-for") + 1] == "main"  # what the app's records are named
    assert {"name": "shared", "mountPath": "/run/sidecar-supervisor"} in found["metrics"][
        "volumeMounts"
    ]


def test_readiness_probes_become_ready_flags_and_the_mains_wait() -> None:
    out = injected(stdin=(SHAPED / "cloud-sql-proxy.yaml").read_text())
    found = containers(yaml.safe_load(out))
    proxy = found["cloud-sql-proxy"]["command"]
    assert proxy[proxy.index("--ready-http") + 1] == "http://127.0.0.1:9090/readiness"
    export = found["export"]["command"]
    assert export[export.index("--wait-ready") + 1] == "cloud-sql-proxy"
    assert found["cloud-sql-proxy"]["securityContext"] == {  # kept as it was
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
    }
    documents = list(yaml.safe_load_all(injected(stdin=(SHAPED / "probes-tcp-exec.yaml")
                                                 .read_text())))  # fmt: skip
    found = containers(documents[1])
    bouncer, vault = found["pgbouncer"]["command"], found["vault-agent"]["command"]
    assert bouncer[bouncer.index("--ready-tcp") + 1] == "127.0.0.1:6432"
    assert vault[vault.index("--ready-command") + 1] == "test -f /vault/secrets/db"
    main = found["reindex"]["command"]
    assert [main[i + 1] for i, w in enumerate(main) if w == "--wait-ready"] == [
        "pgbouncer",
        "vault-agent",
    ]


def test_shutdown_budget_is_set_or_the_flags_are_lowered() -> None:
    result = inject()
    spec = yaml.safe_load(result.stdout)["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 35
    assert "set terminationGracePeriodSeconds: 35" in result.stderr
    result = inject(stdin=(SHAPED / "distroless-sidecar.yaml").read_text())
    spec = yaml.safe_load(result.stdout)["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 20  # the user's, kept
    agent = {c["name"]: c for c in spec["containers"]}["otel-agent"]["command"]
    assert agent[agent.index("--term-hold") + 1] == "10"
    assert "lowered to --term-hold 10" in result.stderr


def test_the_init_container_satisfies_the_restricted_standard() -> None:
    init = yaml.safe_load(injected())["spec"]["template"]["spec"]["initContainers"][0]
    assert init["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_an_image_without_glibc_gets_a_warning_naming_the_container() -> None:
    result = inject(stdin=(SHAPED / "distroless-sidecar.yaml").read_text())
    warning = [line for line in result.stderr.splitlines() if "glibc" in line]
    assert len(warning) == 1
    assert "'otel-agent'" in warning[0]
    assert "--native" in warning[0]


def test_a_list_is_rewritten_item_by_item_and_the_summary_says_what() -> None:
    result = inject(stdin=(SHAPED / "list.yaml").read_text())
    document = yaml.safe_load(result.stdout)
    job, config_map = document["items"]
    assert containers(job)["statsd-exporter"]["command"][1] == "sidecar"
    assert config_map == yaml.safe_load((SHAPED / "list.yaml").read_text())["items"][1]
    summary = result.stderr.strip().splitlines()[-1]
    assert "rewrote Job migrate" in summary
    assert "left ConfigMap app-settings" in summary


@pytest.mark.parametrize(
    ("stdin", "names"),
    [
        (SEED.replace("        - name: sidecar-container-1\n", "        - just-a-name\n"
                      "        - name: sidecar-container-1\n"), "containers[1]"),
        ("kind: Job\nspec:\n  template: [unclosed\n", "line 4, column 1"),
    ],
    ids=["scalar-container", "bad-yaml-line"],
)  # fmt: skip
def test_bad_shapes_are_one_line_with_where(stdin: str, names: str) -> None:
    result = inject(stdin=stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert names in result.stderr


def test_entrypoint_help_and_error_mention_the_images_cmd() -> None:
    help_text = subprocess.run(
        [*SUPERVISOR, "inject", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "CMD" in help_text
    assert "args" in help_text
    result = inject(stdin=(SHAPED / "no-command.yaml").read_text())
    assert result.returncode == 2
    assert "CMD" in result.stderr
