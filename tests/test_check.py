"""``check``: every reason a Job would hang because of its sidecars, one line each."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from supervisor.check import check_text
from tests.support import HERE
from tests.test_examples import KUBERNETES
from tests.test_inject import SHAPED, check

SEED_DIR = HERE.parent.parent / "shared" / "seed"
SEED = (KUBERNETES / "job-cannot-complete.yaml").read_text()
FIXED = (KUBERNETES / "job-fixed.yaml").read_text()
TOOL = "sidecar-supervisor"


def codes(text: str) -> list[tuple[str, str]]:
    return [(f.container, f.code) for f in check_text(text)]


def job(containers: list[dict[str, Any]], **spec: Any) -> str:
    """A Job with these containers, the shared volume mounted in each, a sufficient budget."""
    for container in containers:
        container.setdefault("image", "registry.example/app:1")
        container.setdefault(
            "volumeMounts", [{"name": "shared", "mountPath": "/run/sidecar-supervisor"}]
        )
    pod_spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 35,
        "volumes": [{"name": "shared", "emptyDir": {}}],
        "containers": containers,
        **spec,
    }
    document = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": pod_spec}},
    }
    return yaml.safe_dump(document)


MAIN: dict[str, Any] = {"name": "app", "command": [TOOL, "main", "--name", "app", "--", "run"]}


def sidecar(*flags: str, name: str = "proxy") -> dict[str, Any]:
    return {"name": name, "command": [TOOL, "sidecar", "--name", name, *flags, "--", "serve"]}


def test_the_seeds_job_fails_with_a_finding_that_names_the_sidecar() -> None:
    result = check(SEED)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert "sidecar-container-1" in lines[0]
    assert "unwrapped-sidecar" in lines[0]
    assert "fix:" in lines[0]


def test_the_seed_as_published_fails_too() -> None:
    """The article's Job (shared/seed), cut out of its Markdown."""
    sources = sorted(SEED_DIR.glob("*.txt")) if SEED_DIR.is_dir() else []
    if not sources:
        pytest.skip("shared/seed is not beside this checkout")
    text = sources[0].read_text()
    manifest = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert [c for c, code in codes(manifest) if code == "unwrapped-sidecar"] == [
        "sidecar-container-1"
    ]


@pytest.mark.parametrize("name", sorted(p.name for p in KUBERNETES.glob("*.yaml")))
def test_the_examples_pass_except_the_problem(name: str) -> None:
    found = codes((KUBERNETES / name).read_text())
    if name == "job-cannot-complete.yaml":
        assert found == [("sidecar-container-1", "unwrapped-sidecar")]
    else:
        assert found == []


def test_the_real_world_manifests_fail_before_inject() -> None:
    for path in sorted(SHAPED.glob("*.yaml")):
        assert check_text(path.read_text()), path.name


def test_a_good_job_passes_with_exit_0_and_json_lists_findings() -> None:
    assert check(FIXED).returncode == 0
    assert check(FIXED).stdout == ""
    result = check(SEED, "--format", "json")
    assert result.returncode == 1
    (finding,) = json.loads(result.stdout)
    assert finding["object"] == "Job seed-cannot-complete"
    assert finding["container"] == "sidecar-container-1"
    assert finding["code"] == "unwrapped-sidecar"
    assert finding["fix"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (job([{**MAIN, "command": ["run"]}, {"name": "proxy", "command": ["serve"]}]),
         [("proxy", "unwrapped-sidecar")]),
        (job([{"name": "app", "command": ["run"]}],
             ), []),
        (job([{**MAIN, "command": ["run"]}], template_labels=None)
         .replace("    spec:\n      containers", "    metadata:\n      labels:\n"
                  "        sidecar.istio.io/inject: 'true'\n    spec:\n      containers"),
         [("app", "mesh-no-quit")]),
        (job([MAIN, sidecar("--wait-for", "app")], restartPolicy="OnFailure"),
         [("proxy", "stops-on-failure")]),
        (job([MAIN, sidecar("--wait-for", "app", "--stop-on", "success")],
             restartPolicy="OnFailure"), []),
        (job([MAIN, sidecar("--wait-for", "app")], terminationGracePeriodSeconds=30),
         [("proxy", "shutdown-budget")]),
        (job([MAIN, sidecar("--wait-for", "app", "--term-hold", "15")],
             terminationGracePeriodSeconds=30), []),
        (job([MAIN, {**sidecar("--wait-for", "app"), "volumeMounts": []}]),
         [("proxy", "no-shared-volume")]),
        (job([MAIN, {**sidecar("--wait-for", "app"),
                     "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}]),
         [("proxy", "no-shared-volume")]),
        (job([MAIN, sidecar("--wait-for", "ap")]), [("proxy", "unknown-name")]),
        (job([{**MAIN, "command": [TOOL, "main", "--wait-ready", "prxy", "--", "run"]},
              sidecar("--wait-for", "main")]),
         [("app", "unknown-name")]),
        (job([{**MAIN, "command": [TOOL, "main", "--", "run"]}, sidecar("--wait-for", "app")]),
         [("proxy", "unknown-name")]),
        (job([MAIN, sidecar("--wait-for", "app", name="a"),
              {**sidecar("--wait-for", "app", name="b"),
               "command": [TOOL, "sidecar", "--name", "a", "--wait-for", "app", "--", "x"]}]),
         [("a, b", "duplicate-name")]),
        (job([{**MAIN, "command": [f"/run/sidecar-supervisor/{TOOL}/{TOOL}", "main", "--name",
                                   "app", "--", "run"]}]),
         [("app", "bundle-not-copied")]),
        (job([MAIN], initContainers=[{
            "name": "sidecar-supervisor-copy", "image": "registry.example/sidecar-supervisor:1",
            "command": [TOOL, "copy", "/run/sidecar-supervisor"]}]),
         [("sidecar-supervisor-copy", "not-restricted")]),
        (job([MAIN, sidecar("--wait-for", "app", "--stop-after", "3")]),
         [("proxy", "bad-flags")]),
        (job([MAIN, sidecar("--wait-for", "app"),
              sidecar("--wait-for", "app", "--wait-ready", "prxy", name="logs")]),
         [("logs", "unknown-name")]),
        (job([MAIN, sidecar("--wait-for", "app"),
              sidecar("--wait-for", "app", "--wait-ready", "proxy", name="logs")]), []),
    ],
    ids=[
        "unwrapped-sidecar", "lone-main", "mesh-no-quit", "stops-on-failure",
        "stop-on-success", "shutdown-budget", "budget-fits", "no-volume", "volume-elsewhere",
        "wait-for-typo", "wait-ready-typo", "wait-for-unnamed-main", "duplicate-name",
        "bundle-not-copied", "not-restricted", "bad-flags", "sidecar-wait-ready-typo",
        "sidecar-wait-ready",
    ],
)  # fmt: skip
def test_each_finding(text: str, expected: list[tuple[str, str]]) -> None:
    assert codes(text) == expected


def test_lists_cronjobs_and_only_pods_that_complete() -> None:
    items = [yaml.safe_load(SEED), yaml.safe_load(SEED)]
    items[1] = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": items[1]["spec"]}},
    }
    template = items[0]["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server"}, **template}
    pod["spec"] = {**pod["spec"], "restartPolicy": "Always"}  # a server: never completes
    listed = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [*items, pod]})
    assert [f.object for f in check_text(listed)] == [
        "Job seed-cannot-complete",
        "CronJob nightly",
    ]


def test_bad_yaml_names_the_line_and_column() -> None:
    result = check("kind: Job\nspec:\n  template: [unclosed\n")
    assert result.returncode == 2
    assert "line 4, column 1" in result.stderr
    assert "Traceback" not in result.stderr
