"""Security: what the supervisor writes, where, with which mode, and what it trusts.

The shared volume is writable by every container of the pod, so anything on it
may have been planted: a symlink to a file outside the volume, content that
looks like a command. The supervisor writes with explicit modes, never through
a symlink and never outside ``--dir``, refuses names that could escape it, and
only ever reads a marker as data.

Covered elsewhere and not repeated here: markers over 64 KiB are not read whole
(``test_markers``), the image runs as a non-root user (``test_examples``).
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import resolve
from supervisor.errors import UsageError
from tests.conftest import StartContainer
from tests.kubelet import NAMESPACE, RawContainer, logged
from tests.support import PRINT_SIGNALS, SUPERVISOR, TIMEOUT, Container, read_json, wait_until

READY = r"ready \(pid: \d+\)"
ENV_PREFIX = "SIDECAR_SUPERVISOR_"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def with_umask(umask: int, log: Path, *args: str | os.PathLike[str]) -> RawContainer:
    """A supervisor container whose process starts with ``umask``."""
    argv = [os.fspath(a) for a in args]
    script = f'umask {umask:03o} && exec "$@"'
    return RawContainer(["sh", "-c", script, "sh", *NAMESPACE, *SUPERVISOR, *argv], log)


@pytest.fixture
def raw_containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.close()


def test_records_are_0644_whatever_the_umask(
    shared: Path, tmp_path: Path, raw_containers: list[Container]
) -> None:
    """Peers in other containers (maybe other users) must be able to read every record
    and open every lock to probe it, whatever umask the image or the runtime set."""
    side = with_umask(
        0o077, tmp_path / "sidecar.log", "sidecar", "--dir", shared, "--", *PRINT_SIGNALS
    )
    raw_containers.append(side)
    side.expect(READY)
    wait_until((shared / "sidecar.ready").exists, what="sidecar.ready")
    assert oct(mode(shared / "sidecar.ready")) == oct(0o644)  # it leaves with the sidecar
    main = with_umask(0o077, tmp_path / "main.log", "main", "--dir", shared, "--", "true")
    raw_containers.append(main)
    assert main.wait() == 0
    assert side.wait() == 0

    modes = {path.name: mode(path) for path in shared.iterdir()}
    expected = {f"main.{kind}": 0o644 for kind in ("started", "done", "lock")}
    expected |= {f"sidecar.{kind}": 0o644 for kind in ("started", "done", "lock")}
    assert {name: oct(m) for name, m in modes.items()} == {
        name: oct(m) for name, m in expected.items()
    }


@pytest.mark.parametrize("role", ["main", "sidecar"])
def test_planted_symlinks_are_never_followed(
    start: StartContainer, shared: Path, tmp_path: Path, role: str
) -> None:
    """Before the container starts, each of its four files is a link out of the volume:
    two to files that exist (they must not change), two to paths that do not (they
    must not appear)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    existing = {"started": outside / "passwd", "ready": outside / "shadow"}
    for path in existing.values():
        path.write_text(f"the real {path.name}\n")
        path.chmod(0o600)
    missing = {"done": outside / "created-by-done", "lock": outside / "created-by-lock"}
    for kind, target in {**existing, **missing}.items():
        (shared / f"{role}.{kind}").symlink_to(target)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns, mode(p)) for p in outside.iterdir()}

    if role == "main":
        container = start("main", "--dir", shared, "--", "sh", "-c", "exit 3")
        assert container.wait() == 3
    else:
        container = start("sidecar", "--dir", shared, "--", *PRINT_SIGNALS)
        container.expect(READY)
        assert start("main", "--dir", shared, "--", "true").wait() == 0
        assert container.wait() == 0

    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns, mode(p)) for p in outside.iterdir()}
    assert after == before
    for kind in ("started", "done"):  # replaced by a regular file with the record
        path = shared / f"{role}.{kind}"
        assert stat.S_ISREG(path.lstat().st_mode), kind
        assert read_json(path)["name"] == role
    # The link removed, not followed (a sidecar's own .ready leaves with it too).
    assert not os.path.lexists(shared / f"{role}.ready")
    # The lock cannot be taken through a link: said once, and the work goes on.
    unavailable = logged(container, "lock_unavailable")
    assert [e["path"] for e in unavailable] == [str(shared / f"{role}.lock")]
    assert (shared / f"{role}.lock").is_symlink()


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


def test_a_pod_writes_nothing_outside_the_dir(start: StartContainer, tmp_path: Path) -> None:
    """A sidecar, a main, ``done`` and ``status`` run against a volume whose parent,
    $HOME and $TMPDIR are watched: only the volume changes."""
    pod = tmp_path / "pod"
    shared = pod / "volume"
    (pod / "home").mkdir(parents=True)
    (pod / "tmp").mkdir()
    shared.mkdir()
    (pod / "neighbour").write_text("not yours\n")
    env = {"HOME": str(pod / "home"), "TMPDIR": str(pod / "tmp")}
    termination_log = Path("/dev/termination-log")
    had_termination_log = termination_log.exists()
    before = tree(pod)

    side = start("sidecar", "--dir", shared, "--", *PRINT_SIGNALS, env=env)
    side.expect(READY)
    assert start("main", "--dir", shared, "--", "true", env=env).wait() == 0
    assert side.wait() == 0
    for args in (["done", "--name", "script"], ["status", "--json"]):
        result = subprocess.run(
            [*SUPERVISOR, *args, "--dir", str(shared)],
            capture_output=True,
            env={**os.environ, **env},
            check=False,
            timeout=TIMEOUT,
        )
        assert result.returncode == 0, result.stderr

    after = tree(pod)
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    assert changed, "the pod wrote nothing at all"
    assert all(path.startswith("volume") for path in changed), sorted(changed)
    assert termination_log.exists() == had_termination_log


HOSTILE_STARTED = {
    # One more than this has 4,301 digits: more than Python will turn into text.
    "huge-attempt": b'{"attempt": ' + b"9" * 4300 + b"}",
    "boolean-attempt": b'{"attempt": true}',
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,
    "not-json": b"\xff\xfe attempt",
}


@pytest.mark.parametrize("content", HOSTILE_STARTED.values(), ids=HOSTILE_STARTED.keys())
def test_hostile_started_record_cannot_stop_the_main(
    start: StartContainer, shared: Path, content: bytes
) -> None:
    """The previous attempt's .started is read for its number: whatever it holds, the
    main still runs COMMAND, writes its records and exits with COMMAND's status."""
    (shared / "main.started").write_bytes(content)
    main = start("main", "--dir", shared, "--", "sh", "-c", "echo COMMAND-ran; exit 3")

    assert main.wait() == 3
    assert main.rest_of_output() == ["COMMAND-ran"]
    assert "Traceback" not in main.log_path.read_text()
    started, done = read_json(shared / "main.started"), read_json(shared / "main.done")
    assert done["exit_code"] == 3
    assert started["attempt"] == done["attempt"]
    assert type(done["attempt"]) is int
    assert done["attempt"] >= 1


# --- names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["main", "--name", ".."], id="main-name-dotdot"),
        pytest.param(["main", "--name", "."], id="main-name-dot"),
        pytest.param(["sidecar", "--name", "/etc/cron.d/x"], id="sidecar-name-absolute"),
        pytest.param(["sidecar", "--wait-for", ".."], id="sidecar-wait-for-dotdot"),
        pytest.param(["done", "--name", "../escape"], id="done-name-dotdot"),
        pytest.param(["done", "--name", "a/../../b"], id="done-name-slashes"),
    ],
)
def test_names_that_leave_the_dir_are_usage_errors_and_nothing_is_written(
    tmp_path: Path, args: list[str]
) -> None:
    volume = tmp_path / "pod" / "volume"
    command = ["--", "touch", str(tmp_path / "command-ran")] if args[0] != "done" else []
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    result = subprocess.run(
        [*SUPERVISOR, *args, "--dir", str(volume), *command],
        capture_output=True,
        text=True,
        env=clean,
        check=False,
        timeout=TIMEOUT,
    )

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert args[1] in lines[0]
    assert list(tmp_path.iterdir()) == []  # no volume, no COMMAND, no escaped file


NUL_CASES = [
    pytest.param("main", {"name": "main\0x"}, {}, "--name", id="main-flag"),
    pytest.param("sidecar", {"wait_for": ["main\0"]}, {}, "--wait-for", id="sidecar-wait-for"),
    pytest.param("done", {"name": "\0"}, {}, "--name", id="done-flag"),
    pytest.param("main", {}, {ENV_PREFIX + "NAME": "a\0/b"}, ENV_PREFIX + "NAME", id="main-env"),
    pytest.param(
        "sidecar", {}, {ENV_PREFIX + "WAIT_FOR": "main,x\0"}, ENV_PREFIX + "WAIT_FOR", id="env"
    ),
]


@pytest.mark.parametrize(("command", "given", "env", "named"), NUL_CASES)
def test_name_with_nul_is_a_usage_error(
    command: str, given: dict[str, Any], env: dict[str, str], named: str
) -> None:
    """NUL cannot travel in argv or the environment of a real process, so ``resolve``,
    which both feed, is asked directly."""
    argv_command = ("true",) if command in ("main", "sidecar") else ()
    with pytest.raises(UsageError) as raised:
        resolve(command, given, argv_command, env=env)
    message = str(raised.value)
    assert named in message
    assert "\n" not in message


# --- markers are data --------------------------------------------------------------------


HOSTILE = {
    "subshell": b"$(touch {trace})\n",
    "backticks": b"`touch {trace}`",
    "semicolon": b"0; touch {trace}",
    "json-field": b'{"exit_code": 0, "reason": "$(touch {trace})"}',
}


def test_marker_content_is_never_executed(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    """Each awaited container's .done holds shell that would leave a trace if run."""
    traces = {name: tmp_path / f"executed-{name}" for name in HOSTILE}
    wait_for = [arg for name in HOSTILE for arg in ("--wait-for", name)]
    side = start("sidecar", "--dir", shared, *wait_for, "--", *PRINT_SIGNALS)
    side.expect(READY)
    for name, content in HOSTILE.items():
        (shared / f"{name}.done").write_bytes(content.replace(b"{trace}", bytes(traces[name])))

    assert side.wait() == 0
    detected = {e["target"] for e in logged(side, "completion_detected")}
    assert detected == set(HOSTILE)
    status = subprocess.run(
        [*SUPERVISOR, "status", "--json", "--dir", str(shared)],
        capture_output=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert status.returncode == 0, status.stderr
    assert not [trace.name for trace in traces.values() if trace.exists()]
