"""The code stays linted, formatted and type-checked: the tools run as tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "tool",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_is_clean(tool: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *tool],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_class_patterns_name_their_attributes() -> None:
    """``case Signal(signum=signum)``, never ``case Signal(signum)``.

    On CPython 3.11 a positional class pattern builds a new ``"__match_args__"``
    string at every match, and the type attribute cache, keyed by the string's
    address, keeps up to 4,096 of them: a sidecar's memory grew with each event.
    """
    positional = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted((ROOT / "supervisor").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.MatchClass) and node.patterns
    ]
    assert not positional, positional
