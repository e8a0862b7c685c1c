"""``inject``: the seed's Job rewritten, validated against the schemas, and run."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.example_runner import run_pod
from tests.support import SUPERVISOR, TIMEOUT
from tests.test_examples import KUBERNETES, kubernetes_versions, minor

SEED = (KUBERNETES / "job-cannot-complete.yaml").read_text()
FAST = {"sleep 3": "sleep 0.05", "sleep 1": "sleep 0.1"}
EXECUTABLE = "/run/sidecar-supervisor/sidecar-supervisor/sidecar-supervisor"


def inject(*args: str, stdin: str = SEED) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUPERVISOR, "inject", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def injected(*args: str, stdin: str = SEED) -> str:
    result = inject(*args, stdin=stdin)
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
    assert init["image"].startswith("sidecar-supervisor:")
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
