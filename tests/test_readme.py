"""The README is tested: its commands run as written, and it documents every option."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from supervisor.config import OPTIONS
from tests.support import SUPERVISOR, TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def shell_lines() -> list[str]:
    """Every command line of the README's ``sh`` blocks, comments dropped."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        lines += [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    return lines


def test_every_option_and_variable_is_documented() -> None:
    missing = [
        name
        for options in OPTIONS.values()
        for option in options
        for name in (option.flag, option.env)
        if f"`{name}" not in README
    ]
    assert not missing


def test_the_two_set_up_commands_are_the_documented_ones() -> None:
    lines = shell_lines()
    demo = (
        "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/sidecar-supervisor demo"
    )
    tests = (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' "
        "&& .venv/bin/python -m pytest"
    )
    assert demo in lines
    assert tests in lines
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def by_hand(pod: Path, *flags: str) -> list[list[str]]:
    """The README's three by-hand commands as written, on ``pod`` and with 0.1 s sleeps;
    ``flags`` go right after the command's name."""
    lines = [ln for ln in shell_lines() if "--dir /tmp/pod" in ln]
    assert len(lines) == 3
    argvs = []
    for written in lines:
        line = written.replace("/tmp/pod", str(pod)).replace("sleep 1", "sleep 0.1")  # noqa: S108
        words = line.split(" ", 2)
        assert words[0] == ".venv/bin/sidecar-supervisor"
        argvs.append([*SUPERVISOR, words[1], *flags, *shlex.split(words[2])])
    return argvs


def run_the_pair(
    sidecar_argv: list[str],
    main_argv: list[str],
    sidecar_stderr: IO[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Terminal 1, then terminal 2 once the sidecar's child runs; the sidecar must end 0."""
    sidecar = subprocess.Popen(
        sidecar_argv, stdout=subprocess.PIPE, stderr=sidecar_stderr, text=True, env=env
    )
    try:
        assert sidecar.stdout is not None
        assert sidecar.stdout.readline().strip() == "collecting logs"
        main = subprocess.run(
            main_argv, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False
        )
        assert sidecar.wait(TIMEOUT) == 0
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()
        if sidecar.stdout is not None:
            sidecar.stdout.close()
    return main


def test_the_by_hand_example_runs_as_written(tmp_path: Path) -> None:
    """The two-terminal example, run twice as written on the same directory: the
    sidecar stops when the main is done, status shows both."""
    assert "rm -rf /tmp/pod && mkdir /tmp/pod" in [ln.split("#")[0].strip() for ln in shell_lines()]
    pod = tmp_path / "pod"
    sidecar, main, status = by_hand(pod)
    for _run in range(2):
        shutil.rmtree(pod, ignore_errors=True)  # the recipe's rm -rf and mkdir
        pod.mkdir()
        ran = run_the_pair(sidecar, main)
        assert ran.returncode == 0
        assert ran.stdout.splitlines()[-1] == "task 5/5"
        shown = subprocess.run(status, capture_output=True, text=True, timeout=TIMEOUT, check=True)
        rows = {line.split()[0]: line.split()[1] for line in shown.stdout.splitlines()[1:]}
        assert rows == {"main": "done", "sidecar": "done"}


@pytest.mark.slow
def test_the_first_command_installs_and_runs_the_demo(tmp_path: Path) -> None:
    """Run the README's first command as written, in a fresh copy of the project."""
    project = tmp_path / "project"
    shutil.copytree(
        ROOT,
        project,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "__pycache__", ".*_cache", "build", "results"
        ),
    )
    command = next(ln for ln in shell_lines() if ln.endswith("sidecar-supervisor demo"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_SUPERVISOR_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Job: Succeeded" in result.stdout


def console_samples() -> list[list[str]]:
    """The README's console log samples (section "Logs"): the sidecar's, then the main's."""
    logs = README.split("\n## Logs\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", logs, re.S)
    return [block.splitlines() for block in blocks[:2]]


CONSOLE_LINE = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) (info |warn |error|debug) (\S+) (\w+)(.*)")


def shape(line: str) -> tuple[str, str, str, list[str]]:
    """Level, name, event and the keys of one console line: what does not vary by run."""
    match = CONSOLE_LINE.fullmatch(line)
    assert match, line
    keys = re.findall(r" (\w+)=", re.sub(r'"[^"]*"', '""', match.group(5)))
    return match.group(2), match.group(3), match.group(4), keys


def test_the_console_sample_is_what_the_console_format_prints(tmp_path: Path) -> None:
    """The by-hand example with ``--log-format console``: the README's sample, line by line."""
    sidecar_sample, main_sample = console_samples()
    pod = tmp_path / "pod"
    sidecar, main_argv, _status = by_hand(pod, "--log-format", "console")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_SUPERVISOR_")}
    pod.mkdir()  # the recipe's mkdir
    sidecar_log = tmp_path / "sidecar.log"
    with sidecar_log.open("w") as stderr:
        main = run_the_pair(sidecar, main_argv, sidecar_stderr=stderr, env=env)
    assert main.returncode == 0

    assert [shape(ln) for ln in sidecar_log.read_text().splitlines()] == [
        shape(ln) for ln in sidecar_sample
    ]
    assert [shape(ln) for ln in main.stderr.splitlines()] == [shape(ln) for ln in main_sample]
