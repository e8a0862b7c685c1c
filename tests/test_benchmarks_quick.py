"""The benchmark suite still runs: ``python -m benchmarks --quick`` writes every figure.

A smoke test so that the suite cannot rot. It checks what was written, never a
timing: a slow machine changes the values and the verdicts, not the outcome.
Baselines whose tools are missing (tini, dumb-init, hyperfine) are reported as
not available, and that is checked too.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    "main_exit",
    "main_killed",
    "touched_marker",
    "polling_fallback",
    "watch_process",
    "signal_forwarding",
    "orphan_reaping",
    "exec_to_child",
    "whole_run",
    "ready_gate",
    "rss",
    "cpu_sidecar_before_main",
    "cpu_sidecar_lock_wait",
    "cpu_sidecar_marker",
    "cpu_sidecar_100_targets",
    "cpu_main",
    "fan_in",
    "restart_cycles",
)
CPU = [key for key in FIGURES if key.startswith("cpu_")]
VERDICTS = {"pass", "fail", "n/a", "not available"}


def run_quick(out: Path, *extra: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=540,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    for figure in data["figures"]:
        assert figure["error"] is None, f"{figure['key']}: {figure['error']}"
        assert figure["verdict"] in VERDICTS, figure["key"]
    assert data["leftover_processes"] == 0
    return data


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results"
    data = run_quick(out)

    figures = {f["key"]: f for f in data["figures"]}
    assert set(figures) == set(FIGURES)
    for key, figure in figures.items():
        subject = figure["subject"]
        if figure["verdict"] != "not available":
            assert subject["samples"] or subject["timeout_s"], key
        for series in [subject, *figure["variants"], *figure["baselines"]]:
            assert series["available"] or series["unavailable"], (key, series["label"])
    machine = data["machine"]
    for field in ("cpu_model", "cores", "kernel", "python"):
        assert machine[field], field

    # start-up is measured in the run's clean venv, with compiled bytecode
    venv = machine["clean_venv"]
    assert isinstance(venv, dict), venv
    assert venv["supervisor_bytecode_compiled"]
    assert venv["pth_files"] == []
    labels = {v["label"] for v in figures["exec_to_child"]["variants"]}
    assert "sidecar-supervisor sidecar (clean venv)" in labels
    bases = {b["label"]: b for b in figures["exec_to_child"]["baselines"]}
    assert bases["bare Python spawn wrapper (clean venv)"]["summary"]["n"]
    # every phase of the waiting sidecar has its CPU time and its wakeups
    for key in CPU:
        assert figures[key]["subject"]["also"]["wakeups/10 s"], key
    cpu_bases = {b["label"] for b in figures["cpu_main"]["baselines"]}
    assert {"python waking every 2 s", "python waking every 50 ms"} <= cpu_bases
    rss = figures["rss"]
    assert len(rss["checks"]) == 1 + len(rss["variants"])  # every configuration is judged
    assert any("--ready-http" in v["label"] for v in rss["variants"])

    table = (out / "results.md").read_text()
    assert "| figure | value p50 / p95 | budget | result |" in table
    summary = (out / "summary.md").read_text()
    assert "| figure | sidecar-supervisor | budget | result |" in summary
    assert data["machine"]["git"]["commit"][:12] in summary
    for figure in figures.values():
        assert figure["title"] in table
        assert figure["title"] in summary

    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert data["plot"] is None
        assert "matplotlib" in data["plot_unavailable"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_rounds_are_merged_with_their_spread(tmp_path: Path) -> None:
    out = tmp_path / "results"
    data = run_quick(out, "--rounds", "2", "--only", "signal_forwarding")

    assert data["rounds"] == 2
    (figure,) = data["figures"]
    for series in [figure["subject"], *figure["baselines"]]:
        if series["available"]:
            assert len(series["rounds"]) == 2, series["label"]
            assert sum(series["rounds"]) == len(series["samples"])
            assert len(series["summary"]["round_p50s"]) == 2
    assert "2 rounds, p50 " in (out / "results.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_missing_tools_are_reported_not_available(tmp_path: Path) -> None:
    out = tmp_path / "results"
    hidden = ["--without", "tini", "--without", "dumb-init", "--without", "hyperfine"]
    chosen = ["--only", "signal_forwarding", "--only", "whole_run"]
    data = run_quick(out, *hidden, *chosen)

    figures = {f["key"]: f for f in data["figures"]}
    assert set(figures) == {"signal_forwarding", "whole_run"}
    baselines = {b["label"]: b for b in figures["signal_forwarding"]["baselines"]}
    for tool in ("tini", "dumb-init"):
        assert not baselines[tool]["available"]
        assert baselines[tool]["unavailable"] == f"{tool} not installed"
    assert "not installed" in figures["whole_run"]["notes"][0]
    assert "not available (tini not installed)" in (out / "results.md").read_text()
