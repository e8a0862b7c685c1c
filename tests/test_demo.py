"""The demo, both ways, and its clean-up when interrupted."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

from tests.support import SUPERVISOR, TIMEOUT


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUPERVISOR, "demo", "--task-seconds", "0.1", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def shared_dir(output: str) -> Path:
    match = re.search(r"shared emptyDir: (\S+);", output)
    assert match, output
    return Path(match.group(1))


def test_with_the_supervisor_the_job_succeeds() -> None:
    result = run_demo()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^main +\| main container completed its tasks and exits$", out, re.M)
    assert re.search(r"^sidecar +\| \[supervisor\] completion_detected target=main", out, re.M)
    assert re.search(r"main +0 ", out)
    assert re.search(r"sidecar +0 ", out)
    assert re.search(r"the sidecar stopped [0-9.]+ ms after the main completed", out)
    assert "Job: Succeeded" in out
    assert "\033[" not in out  # no colours when not on a TTY
    assert not shared_dir(out).exists()


def test_the_demo_speaks_to_a_newcomer() -> None:
    """No project history; the 143 explained; the policy it reasons with; the next step."""
    out = run_demo().stdout
    assert "seed" not in out.lower()
    assert out.startswith("A Job that cannot complete on its own")
    assert re.search(
        r"^sidecar +\| \[supervisor\] child_exited exit_code=143 signal=SIGTERM"
        r"  \(143 = 128 \+ 15: it ended on the SIGTERM the supervisor sent; "
        r"the container exits 0\)$",
        out,
        re.M,
    )
    assert "stop_requested actions=SIGTERM\n" in out  # a list shown as a list, not repr
    assert "as in a pod with restartPolicy: Never" in out
    assert "what a pod with restartPolicy: Never needs" in out
    next_steps = out.split("Next, for a cluster:", 1)[1]
    for step in ("examples/kubernetes/job-fixed.yaml", "sidecar-supervisor inject", "check -f"):
        assert step in next_steps
    assert not shared_dir(out).exists()


def test_without_the_supervisor_the_sidecar_outlives_the_main() -> None:
    result = run_demo("--without-supervisor")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    tail = out.split("main container completed its tasks and exits", 1)[1]
    assert "sidecar container is collecting logs" in tail  # still logging after the main
    assert re.search(r"sidecar +- .* still running", out)
    assert "Job: never completes" in out
    assert "Next: 'sidecar-supervisor demo' runs the same pair with the supervisor" in out
    assert not shared_dir(out).exists()


def test_interrupted_demo_leaves_nothing_behind() -> None:
    proc = subprocess.Popen(
        [*SUPERVISOR, "demo", "--task-seconds", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "main container is doing task 2/5" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130
    assert "interrupted" in rest
    assert not shared_dir("".join(seen)).exists()
    # The autouse fixture fails the test if any container process is left.
