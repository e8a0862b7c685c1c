"""The two log formats: JSON lines for collectors, one short line per event for people."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor import log
from tests.support import SUPERVISOR, TIMEOUT

NOW = 1_800_000_000.25
SCRIPT = "\n".join(f"echo line {number}" for number in range(200))  # a 200-line script


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    log.configure()


def test_json_carries_severity_and_message() -> None:
    log.configure("json", role="sidecar", name="proxy")

    record = json.loads(
        log.json_line("warning", "child_exited", {"exit_code": 143, "signal": "SIGTERM"}, NOW)
    )

    assert list(record)[:5] == ["timestamp", "level", "event", "role", "name"]
    assert record["level"] == "warning"
    assert record["severity"] == "WARNING"
    assert record["message"] == "child_exited exit_code=143 signal=SIGTERM"
    assert log.message("child_ready", {"pid": 3, "probe": None}) == "child_ready pid=3"


@pytest.mark.parametrize(
    ("level", "severity"),
    [("debug", "DEBUG"), ("info", "INFO"), ("warning", "WARNING"), ("error", "ERROR")],
)
def test_severity_is_cloud_loggings_name(level: str, severity: str) -> None:
    assert json.loads(log.json_line(level, "x", {}, NOW))["severity"] == severity


def test_a_long_script_is_one_bounded_line() -> None:
    line = log.command_line(["sh", "-c", SCRIPT])

    assert "\n" not in line
    assert line.startswith("sh -c 'echo line 0\\necho line 1\\n")
    assert len(line) < log.COMMAND_LIMIT + 40
    assert line.endswith("more characters)")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["true"], "true"),
        (["python", "job.py", "--out=/data/x"], "python job.py --out=/data/x"),
        (["sh", "-c", "echo 'hi' $HOME"], "sh -c 'echo '\"'\"'hi'\"'\"' $HOME'"),
        (["printf", ""], "printf ''"),
    ],
)
def test_commands_are_written_as_a_shell_would_read_them(argv: list[str], line: str) -> None:
    assert log.command_line(argv) == line


def test_console_line_is_short_and_plain_without_colour() -> None:
    log.configure("console", role="sidecar", name="proxy")

    line = log.console_line(
        "info", "child_started", {"pid": 12, "command": "envoy -c /etc/envoy.yaml"}, NOW, False
    )

    assert re.fullmatch(
        r'\d\d:\d\d:\d\d\.250 info  proxy child_started pid=12 command="envoy -c /etc/envoy.yaml"',
        line,
    )


def _stderr_on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """Run the supervisor with a pseudo-terminal as stderr: what a person sees."""
    controller, terminal = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_SUPERVISOR_")}
    clean.pop("NO_COLOR", None)
    try:
        result = subprocess.run(
            [*SUPERVISOR, *args],
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            stdin=subprocess.DEVNULL,
            env={**clean, **env},
            timeout=TIMEOUT,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert result.returncode == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_on_a_terminal_the_log_is_one_short_coloured_line_per_event(tmp_path: Any) -> None:
    text = _stderr_on_a_terminal("main", "--dir", str(tmp_path), "--", "sh", "-c", SCRIPT, env={})

    lines = text.splitlines()
    assert [re.sub(r"\033\[[0-9;]*m", "", ln).split()[3] for ln in lines] == [
        "supervisor_started",
        "child_started",
        "child_exited",
        "supervisor_exiting",
    ]
    assert "\033[" in text
    # Short lines, but for the first: the whole effective configuration, on purpose.
    assert all(len(re.sub(r"\033\[[0-9;]*m", "", ln)) < 300 for ln in lines[1:])


def test_no_color_is_honoured(tmp_path: Any) -> None:
    text = _stderr_on_a_terminal(
        "main", "--dir", str(tmp_path), "--", "true", env={"NO_COLOR": "1"}
    )

    assert "\033[" not in text
    assert re.search(
        r"^\d\d:\d\d:\d\d\.\d{3} info  main child_started pid=\d+ command=true", text, re.M
    )


def test_json_lines_from_a_real_run(tmp_path: Any) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_SUPERVISOR_")}
    result = subprocess.run(
        [*SUPERVISOR, "main", "--dir", str(tmp_path), "--", "sh", "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=clean,
        timeout=TIMEOUT,
        check=False,
    )

    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert events[0]["event"] == "supervisor_started"  # the effective configuration first
    started = events[1]
    assert started["event"] == "child_started"
    assert started["severity"] == "INFO"
    assert started["message"].startswith(f"child_started pid={started['pid']} command=")
    assert isinstance(started["command"], str)
    assert len(started["command"]) < log.COMMAND_LIMIT + 40
    assert all(len(line) < 1000 for line in result.stderr.splitlines())
