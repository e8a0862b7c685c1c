"""docs/PROTOCOL.md stays true to the code: names, fields, limits, and the citations of it.

The records are produced by the real commands (a sidecar stopped by its main,
the ``done`` command), so a field the code starts writing fails this test until
the document describes it.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from supervisor import markers
from tests.conftest import StartContainer
from tests.support import HERE, SUPERVISOR, TIMEOUT, wait_until

ROOT = HERE.parent
DOC = ROOT / "docs" / "PROTOCOL.md"
CITATION = re.compile(r'PROTOCOL\.md,?[ (]*((?:"[^"]+"(?:,| and| or)?\s?)+)')


def sections() -> dict[str, str]:
    """The document's ``##`` sections: heading -> text."""
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def documented_fields() -> dict[str, set[str]]:
    """The fields of each record's table in "Records", by kind (started, ready, done)."""
    fields: dict[str, set[str]] = {}
    kind = None
    for line in sections()["Records"].splitlines():
        heading = re.match(r"`NAME\.(\w+)`", line)
        if heading:
            kind = heading.group(1)
            fields[kind] = set()
        row = re.match(r"\| `(\w+)` \|", line)
        if row and kind is not None:
            fields[kind].add(row.group(1))
    return fields


def records_written(start: StartContainer, shared: Path) -> dict[str, list[dict[str, object]]]:
    """Every kind of record the commands write: a main at its gates and after, a sidecar
    ready and stopped, ``done``. Records that change are read at each stage."""
    found: dict[str, list[dict[str, object]]] = {"started": [], "ready": [], "done": []}

    def take(path: Path) -> None:
        found[path.suffix.lstrip(".")].append(json.loads(path.read_text()))

    # The main's COMMAND ends only when told: the sidecar removes its .ready as soon
    # as the main completes, which with a COMMAND of ``true`` is a few ms after the
    # gate opened, too soon for a test to see it.
    go = shared.parent / "go"
    until_go = f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.01; done"
    main = start(
        "main", "--dir", shared, "--name", "m", "--wait-ready", "s", "--", "sh", "-c", until_go
    )
    wait_until((shared / "m.started").exists, what="m.started")
    take(shared / "m.started")  # at its gates
    side = start("sidecar", "--dir", shared, "--name", "s", "--wait-for", "m", "--", "sleep", "60")
    wait_until((shared / "s.ready").exists, what="s.ready")
    take(shared / "s.ready")  # removed once the sidecar's COMMAND ends
    go.touch()
    assert main.wait() == 0
    assert side.wait() == 0
    subprocess.run(
        [*SUPERVISOR, "done", "--dir", shared, "--name", "x", "--exit-code", "3"],
        check=True,
        timeout=TIMEOUT,
    )
    for path in sorted(shared.iterdir()):
        if path.suffix in (".started", ".done"):
            take(path)
    assert [len(found[k]) for k in ("started", "ready", "done")] == [3, 1, 3], found
    assert "gates" in found["started"][0]
    assert "gates" not in found["started"][1]  # m.started once COMMAND started
    return found


def test_every_field_written_is_documented_and_no_other(
    start: StartContainer, shared: Path
) -> None:
    documented = documented_fields()
    written = records_written(start, shared)
    assert set(documented) == set(written)
    for kind, records in written.items():
        keys = {key for record in records for key in record}
        assert keys <= documented[kind], f"NAME.{kind}: undocumented {keys - documented[kind]}"
        assert documented[kind] <= keys, f"NAME.{kind}: never written {documented[kind] - keys}"
    stopped = next(r for r in written["done"] if r["reason"] == "Stopped")
    assert stopped["why"] == "completed"


def test_the_name_pattern_is_the_code_s() -> None:
    block = re.search(r"^    (\S+)$", sections()["Names"], flags=re.M)
    assert block is not None
    assert block.group(1) == markers.NAME_PATTERN.pattern


def test_the_limits_and_modes_are_the_code_s() -> None:
    assert markers.MAX_MARKER_BYTES == 64 * 1024
    assert "64 KiB (65,536 bytes)" in sections()["Reading"]
    assert f"mode {markers.FILE_MODE:04o}" in sections()["Modes"]
    assert f"gives it mode {markers.DIR_MODE:04o}" in sections()["Modes"]
    for kind in markers.KINDS:
        assert f"`NAME.{kind}`" in sections()["Files"], kind
    assert "1 to 9 digits" in sections()["Reading .done"]


def test_the_sections_cited_by_tests_and_benchmarks_exist() -> None:
    headings = set(sections())
    cited: list[tuple[str, str]] = []
    for folder in ("tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")) + sorted((ROOT / folder).glob("*.md")):
            if path == Path(__file__):
                continue
            for match in CITATION.finditer(path.read_text()):
                cited += [(path.name, name) for name in re.findall(r'"([^"]+)"', match.group(1))]
    assert cited, "nothing cites docs/PROTOCOL.md"
    missing = [(file, name) for file, name in cited if name not in headings]
    assert not missing, missing
