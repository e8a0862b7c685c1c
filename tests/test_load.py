"""Load: many pods at once on a small machine, and a fork storm under one supervisor.

Nothing here measures speed: the timeouts are safety nets sized for a loaded
2-core machine, and every assertion is about the outcome (exit statuses,
records, zombies), never about how long it took.
"""

from __future__ import annotations

import functools
import signal
from pathlib import Path

import pytest

from tests.conftest import StartContainer
from tests.helpers.procfs import zombies_of
from tests.support import Container, can_unshare, read_json, wait_until

PAIRS = 50
BATCH = 10  # sidecars started at a time: 2 cores start ~10 interpreters in a few seconds
LOAD_TIMEOUT = 180.0  # a safety net for 100 supervisors on 2 cores, never a measurement
EXPECTED_FILES = {"started", "ready", "done", "lock"}


def all_exist(paths: list[Path]) -> bool:
    return all(path.exists() for path in paths)


@pytest.mark.timeout(600)
def test_fifty_pods_at_once_all_complete(start: StartContainer, shared: Path) -> None:
    """50 sidecar/main pairs share one volume, each pair under its own names."""
    sidecars: list[Container] = []
    for first in range(0, PAIRS, BATCH):
        batch = [
            start(
                "sidecar",
                "--dir",
                shared,
                "--name",
                f"side-{i}",
                "--wait-for",
                f"main-{i}",
                "--",
                "sleep",
                "600",
            )
            for i in range(first, first + BATCH)
        ]
        sidecars += batch
        readies = [shared / f"side-{i}.ready" for i in range(first, first + BATCH)]
        wait_until(
            functools.partial(all_exist, readies),
            timeout=LOAD_TIMEOUT,
            what=f"sidecars {first}..{first + BATCH - 1} ready",
        )
    codes = [i % 5 for i in range(PAIRS)]
    mains = [
        start("main", "--dir", shared, "--name", f"main-{i}", "--", "sh", "-c", f"exit {code}")
        for i, code in enumerate(codes)
    ]

    assert [main.wait(LOAD_TIMEOUT) for main in mains] == codes
    assert [side.wait(LOAD_TIMEOUT) for side in sidecars] == [0] * PAIRS
    for i, (side, code) in enumerate(zip(sidecars, codes, strict=True)):
        assert read_json(shared / f"main-{i}.done")["exit_code"] == code
        done = read_json(shared / f"side-{i}.done")
        assert (done["reason"], done["exit_code"]) == ("Stopped", 0)
        detected = [e for e in side.events() if e["event"] == "completion_detected"]
        assert [(d["target"], d["exit_code"]) for d in detected] == [(f"main-{i}", code)]
    names = sorted(p.name for p in shared.iterdir())
    # No .ready: it leaves with the sidecar (no gate may open on one that is gone).
    kinds = EXPECTED_FILES - {"ready"}
    expected = sorted(
        f"{role}-{i}.{kind}" for i in range(PAIRS) for role in ("main", "side") for kind in kinds
    )
    assert names == expected  # and no temporary file left behind


FORKS = 10_000
# 100 shells each start 100 short-lived processes and exit without waiting for
# them: every one of the 10,000 is orphaned (alive or already a zombie) and
# re-parented to the supervisor, which must reap it. Then COMMAND waits for
# SIGUSR1, so the test can look for zombies while the supervisor still runs.
FORK_STORM = f"""
trap 'exit 7' USR1
for batch in $(seq {FORKS // 100}); do sh -c 'for i in $(seq 100); do true & done'; done
echo "forked: {FORKS}"
sleep 600 & wait $!
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "as_pid1",
    [
        pytest.param(
            True,
            id="pid1",
            marks=pytest.mark.skipif(not can_unshare(), reason="needs unshare --pid"),
        ),
        pytest.param(False, id="subreaper"),
    ],
)
def test_ten_thousand_orphans_are_all_reaped(
    start: StartContainer, shared: Path, as_pid1: bool
) -> None:
    main = start("main", "--dir", shared, "--", "sh", "-c", FORK_STORM, namespace=as_pid1)
    main.expect(f"forked: {FORKS}", timeout=LOAD_TIMEOUT)
    supervisor = main.supervisor_pid

    wait_until(lambda: not zombies_of(supervisor), what="every orphan reaped")
    assert main.running

    main.signal(signal.SIGUSR1)
    assert main.wait() == 7
    assert read_json(shared / "main.done")["exit_code"] == 7
    assert main.event("supervisor_exiting")["exit_code"] == 7
