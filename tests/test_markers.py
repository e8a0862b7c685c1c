"""The shared-volume files: tolerant ``.done`` reads, atomic writes, the liveness lock.

docs/PROTOCOL.md, "Reading .done", "Writing" and "Reading": readers take an empty
``.done``, a decimal integer or the JSON object; anything else (a file over 64 KiB,
something that is not a regular file, a symlink) still counts as completion with an
unknown exit code, and a marker never causes a hang. Writes are atomic and never go
through a symlink.
"""

from __future__ import annotations

import json
import os
import re
import stat
import string
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.errors import LockBusyError
from supervisor.markers import (
    MAX_MARKER_BYTES,
    DoneRecord,
    OwnLock,
    RecordFile,
    decimal_code,
    lock_is_held,
    parse_done,
    read_marker,
    stale_record_files,
    valid_name,
    wait_lock_released,
    write_json,
)
from tests.support import wait_until

NAME_CHARS = string.ascii_letters + string.digits + "._-"


def done_of(path: Path) -> DoneRecord:
    return parse_done(read_marker(path))


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --- the three accepted forms -----------------------------------------------------


@pytest.mark.parametrize("content", [b"", b" ", b"\n", b" \t\r\n "], ids=repr)
def test_empty_or_blank_marker_means_success_with_unknown_exit_code(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "main.done"
    path.write_bytes(content)

    record = done_of(path)

    assert record == DoneRecord(exit_code=None)
    assert not record.failed


@pytest.mark.parametrize(
    ("content", "exit_code"),
    [(b"0", 0), (b"3\n", 3), (b" 7 ", 7), (b"-1", -1), (b"255\r\n", 255)],
    ids=repr,
)
def test_decimal_integer_is_the_exit_code(tmp_path: Path, content: bytes, exit_code: int) -> None:
    path = tmp_path / "main.done"
    path.write_bytes(content)

    record = done_of(path)

    assert record == DoneRecord(exit_code=exit_code)
    assert record.failed is (exit_code != 0)


def test_json_record_is_read_field_by_field(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    record: dict[str, Any] = {
        "name": "main",
        "exit_code": 3,
        "signal": None,
        "reason": "Error",
        "attempt": 2,
        "started_at": "2024-01-01T00:00:00.000Z",
        "finished_at": "2024-01-01T00:00:01.000Z",
    }
    path.write_text(json.dumps(record))

    done = done_of(path)

    assert done == DoneRecord(
        exit_code=3,
        signal=None,
        reason="Error",
        attempt=2,
        name="main",
        started_at="2024-01-01T00:00:00.000Z",
        finished_at="2024-01-01T00:00:01.000Z",
    )
    assert done.failed
    assert done.to_json() == record  # one record type: what is read is what was written


def test_json_record_with_exit_code_zero_is_success(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    path.write_text('{"name": "main", "exit_code": 0, "signal": null, "reason": "Completed"}')

    done = done_of(path)

    assert done.exit_code == 0
    assert done.problem is None
    assert not done.failed


def test_json_record_with_a_signal_counts_as_failed(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    path.write_text('{"name": "main", "exit_code": null, "signal": 9, "reason": "Signaled"}')

    done = done_of(path)

    assert done == DoneRecord(exit_code=None, signal=9, reason="Signaled", name="main")
    assert done.failed


# --- everything else: completion, unknown exit code, a problem ------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"hello",
        b"\xff\xfe\x00garbage",
        b"1.5",
        b"0x10",
        b"3 4",
        b"[1, 2]",
        b'"3"',
        b"[" * 60000,  # nesting deep enough to break a recursive parser
        b'{"exit_code": "3"}',
        b'{"exit_code": true}',
        b'{"exit_code": 3.5}',
        b'{"exit_code": null, "signal": "KILL"}',
    ],
    ids=lambda b: repr(b[:40]),
)
def test_anything_else_is_completion_with_unknown_exit_code_and_a_problem(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "main.done"
    path.write_bytes(content)

    done = done_of(path)

    assert done.exit_code is None
    assert done.problem, f"no problem reported for {content[:40]!r}"
    assert not done.failed  # an unknown exit code counts as success


def test_marker_of_exactly_64_kib_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    path.write_bytes(b" " * (MAX_MARKER_BYTES - 2) + b"0\n")

    assert done_of(path) == DoneRecord(exit_code=0)


def test_marker_over_64_kib_is_a_problem_and_not_read(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    path.write_bytes(b" " * MAX_MARKER_BYTES + b"0")

    snapshot = read_marker(path)

    assert snapshot.exists
    assert snapshot.problem
    assert snapshot.data == b""
    assert parse_done(snapshot) == DoneRecord(exit_code=None, problem=snapshot.problem)


@pytest.mark.timeout(10)
def test_huge_sparse_marker_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    path.touch()
    os.truncate(path, 64 * 2**30)  # 64 GiB of holes: reading it whole would never end

    snapshot = read_marker(path)

    assert snapshot.exists
    assert snapshot.problem
    assert snapshot.data == b""


def test_directory_is_not_a_marker_record(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    path.mkdir()

    snapshot = read_marker(path)
    done = parse_done(snapshot)

    assert snapshot.exists
    assert done.exit_code is None
    assert done.problem


@pytest.mark.timeout(10)
def test_fifo_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    os.mkfifo(path)

    snapshot = read_marker(path)  # no writer: a blocking open would hang here
    done = parse_done(snapshot)

    assert snapshot.exists
    assert done.exit_code is None
    assert done.problem


def test_symlink_to_a_valid_record_is_never_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "real.done"
    target.write_text("3\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    path = shared / "main.done"
    path.symlink_to(target)

    snapshot = read_marker(path)
    done = parse_done(snapshot)

    assert snapshot.exists
    assert snapshot.data == b""
    assert done == DoneRecord(exit_code=None, problem="is a symlink")


def test_dangling_symlink_is_completion_with_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    path.symlink_to(tmp_path / "nowhere")

    snapshot = read_marker(path)
    done = parse_done(snapshot)

    assert snapshot.exists
    assert done == DoneRecord(exit_code=None, problem="is a symlink")


@pytest.mark.timeout(10)
def test_character_device_is_not_a_marker_record(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # like /dev/null
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")

    snapshot = read_marker(path)
    done = parse_done(snapshot)

    assert snapshot.exists
    assert done.exit_code is None
    assert done.problem


def test_missing_marker_does_not_exist(tmp_path: Path) -> None:
    snapshot = read_marker(tmp_path / "main.done")

    assert not snapshot.exists
    assert snapshot.problem is None


def test_marker_below_a_regular_file_does_not_exist(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    assert not read_marker(tmp_path / "file" / "main.done").exists


# --- properties -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "exit_code": json_values,
        "signal": json_values,
        "reason": json_values,
        "attempt": json_values,
    },
)
marker_bytes = st.one_of(
    st.binary(max_size=70000),
    st.integers().map(lambda i: str(i).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    record_like.map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=80, deadline=None)
@given(marker_bytes)
def test_any_content_parses_to_a_done_record(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "main.done"
        path.write_bytes(data)
        done = parse_done(read_marker(path))

    assert isinstance(done, DoneRecord)
    if done.problem is not None:
        assert done.exit_code is None
    if len(data) > MAX_MARKER_BYTES:
        assert done.problem
    for value in (done.exit_code, done.signal, done.attempt):
        assert value is None or type(value) is int
    assert done.reason is None or isinstance(done.reason, str)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=12)
    | st.from_regex(rb"\A[+-]?[0-9]{0,11}\Z")
    | st.integers(-(10**10), 10**10).map(lambda i: str(i).encode())
)
def test_the_integer_form_is_a_sign_and_one_to_nine_ascii_digits(text: bytes) -> None:
    """docs/PROTOCOL.md, "Reading .done": read without a regular expression, the same
    form as ``[+-]?[0-9]{1,9}``."""
    expected = int(text) if re.fullmatch(rb"[+-]?[0-9]{1,9}", text) else None
    assert decimal_code(text) == expected


def expected_valid(name: str) -> bool:
    return bool(name) and not name.startswith(".") and all(c in NAME_CHARS for c in name)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet=NAME_CHARS + "/\0\n ", max_size=40))
def test_valid_name_is_exactly_a_plain_file_name(name: str) -> None:
    assert valid_name(name) is expected_valid(name)
    if "/" in name or "\0" in name or name in ("", ".", ".."):
        assert not valid_name(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "/", "a/b", "../main", ".hidden", "a\0", "main\n", "a b", "é"]
)
def test_unsafe_names_are_rejected(name: str) -> None:
    assert not valid_name(name)


@pytest.mark.parametrize("name", ["main", "log-shipper", "a.b_c-1", "0", "-", "_x", "x."])
def test_plain_names_are_accepted(name: str) -> None:
    assert valid_name(name)


# --- write_json -------------------------------------------------------------------


def test_write_json_leaves_only_the_record(tmp_path: Path) -> None:
    record = {"name": "main", "exit_code": 0}
    write_json(tmp_path / "main.done", record)

    assert os.listdir(tmp_path) == ["main.done"]
    assert json.loads((tmp_path / "main.done").read_text()) == record


def test_write_json_replaces_with_a_new_inode(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    write_json(path, {"exit_code": 1})
    first = path.stat().st_ino

    write_json(path, {"exit_code": 0})

    assert path.stat().st_ino != first
    assert done_of(path).exit_code == 0
    assert os.listdir(tmp_path) == ["main.done"]


def test_readers_never_see_half_a_record(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    write_json(path, {"exit_code": 0, "pad": ""})
    stop = threading.Event()
    bad: list[bytes] = []

    def read() -> None:
        while not stop.is_set():
            snapshot = read_marker(path)
            try:
                json.loads(snapshot.data)
            except ValueError:
                bad.append(snapshot.data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(300):
            write_json(path, {"exit_code": i % 2, "pad": "x" * (i * 50)})
    finally:
        stop.set()
        reader.join(10)

    assert not bad
    assert os.listdir(tmp_path) == ["main.done"]


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o777])
def test_write_json_mode_is_0644_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "main.done"
    old = os.umask(umask)
    try:
        write_json(path, {"exit_code": 0})
    finally:
        os.umask(old)

    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_json_replaces_a_planted_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    shared = tmp_path / "shared"
    shared.mkdir()
    path = shared / "main.done"
    path.symlink_to(outside)

    write_json(path, {"exit_code": 0})

    assert outside.read_text() == "precious"
    assert not path.is_symlink()
    assert json.loads(path.read_text()) == {"exit_code": 0}


def test_a_record_file_made_ahead_is_the_record_once_committed(tmp_path: Path) -> None:
    path = tmp_path / "main.done"
    prepared = RecordFile(path)
    [tmp] = os.listdir(tmp_path)
    assert re.fullmatch(r"\.main\.done\.\d+\.\d+\.tmp", tmp)
    assert os.path.getsize(tmp_path / tmp) == 0
    inode = (tmp_path / tmp).stat().st_ino

    prepared.commit({"exit_code": 3})
    prepared.discard()  # too late: nothing to discard

    assert os.listdir(tmp_path) == ["main.done"]
    assert path.stat().st_ino == inode
    assert done_of(path).exit_code == 3


def test_a_record_file_never_committed_is_discarded(tmp_path: Path) -> None:
    prepared = RecordFile(tmp_path / "main.done")
    open_before = open_fds()

    prepared.discard()

    assert os.listdir(tmp_path) == []
    assert len(open_fds()) == len(open_before) - 1


def test_stale_record_files_are_the_names_own_of_the_writers_form(tmp_path: Path) -> None:
    names = [
        ".main.done.12.345.tmp",
        ".main.started.1.2.tmp",
        ".main.x.done.1.2.tmp",  # container "main.x"
        ".main.done.notes.tmp",
        ".main.other.1.2.tmp",
        ".mainly.done.1.2.tmp",
        "main.done",
    ]
    for name in names:
        (tmp_path / name).touch()

    found = sorted(p.name for p in stale_record_files(tmp_path, "main"))

    assert found == [".main.done.12.345.tmp", ".main.started.1.2.tmp"]
    assert [p.name for p in stale_record_files(tmp_path, "main.x")] == [".main.x.done.1.2.tmp"]
    assert stale_record_files(tmp_path / "missing", "main") == []


def test_write_json_into_a_missing_directory_raises(tmp_path: Path) -> None:
    missing = tmp_path / "missing"

    with pytest.raises(OSError, match="No such file"):
        write_json(missing / "main.done", {"exit_code": 0})

    assert not missing.exists()


# --- the liveness lock ------------------------------------------------------------


MakeLock = Callable[[Path], OwnLock]


@pytest.fixture
def locks() -> Iterator[MakeLock]:
    """OwnLocks made by a test, all released afterwards (so no waiter hangs)."""
    made: list[OwnLock] = []

    def factory(path: Path) -> OwnLock:
        lock = OwnLock(path)
        made.append(lock)
        return lock

    yield factory
    for lock in made:
        lock.release()


def test_acquire_creates_the_lock_file_and_holds_it(tmp_path: Path, locks: MakeLock) -> None:
    path = tmp_path / "main.lock"
    lock = locks(path)
    assert not path.exists()
    assert not lock_is_held(path)

    lock.acquire()

    assert path.is_file()
    assert lock.held
    assert lock_is_held(path)  # a second open file description sees the conflict


def test_release_frees_the_lock(tmp_path: Path, locks: MakeLock) -> None:
    path = tmp_path / "main.lock"
    lock = locks(path)
    lock.acquire()

    lock.release()

    assert not lock.held
    assert not lock_is_held(path)
    assert path.exists()  # the file stays; only the flock goes


def test_second_lock_on_the_same_path_is_busy(tmp_path: Path, locks: MakeLock) -> None:
    path = tmp_path / "main.lock"
    first = locks(path)
    first.acquire()
    second = locks(path)
    fds = open_fds()

    with pytest.raises(LockBusyError, match="--name"):
        second.acquire(patience=0.1)

    assert not second.held
    assert open_fds() == fds  # the failed attempt closed its descriptor
    assert lock_is_held(path)

    first.release()
    second.acquire(patience=0.1)
    assert second.held


def test_lock_descriptor_is_not_inherited(tmp_path: Path, locks: MakeLock) -> None:
    lock = locks(tmp_path / "main.lock")
    lock.acquire()

    assert lock._fd is not None
    assert not os.get_inheritable(lock._fd)


def test_lock_is_never_taken_through_a_symlink(tmp_path: Path, locks: MakeLock) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "main.lock").symlink_to(outside)
    lock = locks(shared / "main.lock")

    with pytest.raises(OSError):  # noqa: PT011 - ELOOP, whatever its message
        lock.acquire(patience=0.1)

    assert not lock.held
    assert outside.read_text() == "precious"


def test_lock_is_not_held_when_missing(tmp_path: Path) -> None:
    assert not lock_is_held(tmp_path / "main.lock")


def blocked_on(path: Path) -> bool:
    """True while some process waits in the kernel for a flock on ``path``."""
    info = path.stat()
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in Path("/proc/locks").read_text().splitlines():
        # "1: -> FLOCK  ADVISORY  READ  1234 00:2d:5678 0 EOF" is a blocked waiter
        fields = line.split()
        if len(fields) > 6 and fields[1:3] == ["->", "FLOCK"] and fields[6] == wanted:
            return True
    return False


def test_wait_lock_released_returns_when_the_holder_lets_go(
    tmp_path: Path, locks: MakeLock
) -> None:
    path = tmp_path / "main.lock"
    holder = locks(path)
    holder.acquire()
    released = threading.Event()

    def wait() -> None:
        wait_lock_released(path)
        released.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    wait_until(lambda: blocked_on(path), timeout=10, what="the waiter to block on the lock")
    assert not released.is_set()

    holder.release()

    assert released.wait(10), "wait_lock_released did not return after the release"
    waiter.join(10)


@pytest.mark.timeout(10)
def test_wait_lock_released_raises_without_a_lock_file(tmp_path: Path) -> None:
    """No lock is not a release: the caller must not take it for one."""
    with pytest.raises(FileNotFoundError):
        wait_lock_released(tmp_path / "main.lock")


@pytest.mark.timeout(10)
def test_wait_lock_released_returns_at_once_when_nobody_holds_it(
    tmp_path: Path, locks: MakeLock
) -> None:
    path = tmp_path / "main.lock"
    lock = locks(path)
    lock.acquire()
    lock.release()

    wait_lock_released(path)
