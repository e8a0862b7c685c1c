"""The README lists every event the tool can log, and nothing else.

The events are read from the source: the first argument of every
``log.debug/info/warning/error`` call, the second of ``log.log``, the ``event``
given to the calls that log for their caller, and the first argument of
``_report_once``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
LEVELS = {"debug", "info", "warning", "error"}


def emitted() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "supervisor").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            attr = func.attr if isinstance(func, ast.Attribute) else None
            owner = (
                func.value.id
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                else None
            )
            candidates: list[ast.expr] = []
            if owner == "log" and attr in LEVELS and node.args:
                candidates.append(node.args[0])
            elif owner == "log" and attr == "log" and len(node.args) > 1:
                candidates.append(node.args[1])
            elif attr == "_report_once" and node.args:
                candidates.append(node.args[0])
            candidates += [k.value for k in node.keywords if k.arg == "event"]
            names |= {
                c.value
                for c in candidates
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
    return names


def documented() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Log events", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


def test_the_readme_lists_every_event_and_no_other() -> None:
    code, docs = emitted(), documented()
    assert len(code) > 40, sorted(code)  # the reader found them
    assert code - docs == set(), f"not in the README's Log events: {sorted(code - docs)}"
    assert docs - code == set(), f"in the README but never logged: {sorted(docs - code)}"
