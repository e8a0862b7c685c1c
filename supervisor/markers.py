"""The files on the shared volume: names, atomic writes, tolerant reads, the lock.

Every container ``NAME`` owns four files in the shared directory:

- ``NAME.started``: JSON ``{"name", "pid", "attempt", "started_at"}``
- ``NAME.ready``: JSON ``{"name", "pid", "ready_at"}`` (sidecars)
- ``NAME.done``: JSON ``{"name", "exit_code", "signal", "reason", "attempt",
  "started_at", "finished_at"}``; readers also take an empty file or a bare integer
- ``NAME.lock``: held with an exclusive ``flock`` while the wrapper lives

Writes go to a hidden temporary file in the same directory and are renamed into
place, so a reader never sees half a record and a symlink planted at the final
name is replaced, never followed. Reads never follow a symlink, never block on a
FIFO and never read more than ``MAX_MARKER_BYTES``.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any, NamedTuple

from supervisor.errors import LockBusyError

MAX_MARKER_BYTES = 64 * 1024
FILE_MODE = 0o644
DIR_MODE = 0o755  # every container, whatever its user, reads the shared dir
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
KINDS = ("started", "ready", "done", "lock")


def valid_name(name: str) -> bool:
    """A plain file name: letters, digits, ``.``, ``_``, ``-``, not starting with ``.``."""
    return NAME_PATTERN.fullmatch(name) is not None


def marker_path(directory: Path, name: str, kind: str) -> Path:
    return directory / f"{name}.{kind}"


def now() -> float:
    return time.time()


def iso(timestamp: float | None) -> str | None:
    """UTC ISO-8601 with milliseconds, the form every record uses."""
    if timestamp is None:
        return None
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{whole}.{int(timestamp % 1 * 1000):03d}Z"


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (temporary file + rename).

    Raises OSError when the volume is full, read-only or missing; callers
    decide whether that is fatal.
    """
    RecordFile(path).commit(record)


class RecordFile:
    """The temporary file of one record write, created now and renamed over
    ``path`` by ``commit`` (docs/PROTOCOL.md, "Writing").

    Created ahead of time, it takes the file's creation (the costliest step:
    hundreds of microseconds on a volume that has been idle) off the moment the
    record is due. Raises OSError as ``write_json`` does.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.tmp, flags, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask says
        except OSError:
            os.close(fd)
            remove(self.tmp)
            raise
        self._fd: int | None = fd

    def commit(self, record: dict[str, Any]) -> None:
        """Write the whole record, close, rename; once."""
        fd, self._fd = self._fd, None
        assert fd is not None, "a record file is committed once"
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(self.tmp, self.path)
        except BaseException:
            remove(self.tmp)
            raise

    def discard(self) -> None:
        """Remove the temporary file if it was never committed."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
            with contextlib.suppress(OSError):
                remove(self.tmp)


def stale_record_files(directory: Path, name: str) -> list[Path]:
    """Temporary files of ``name``'s records left by wrappers that died mid-write
    (or before a record they had prepared was due)."""
    prefix = f".{name}."
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    found = []
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        # KIND.PID.NANOSECONDS exactly: "main" must not take "main.x"'s files
        parts = entry[len(prefix) : -len(".tmp")].split(".")
        if len(parts) == 3 and parts[0] in KINDS and parts[1].isdigit() and parts[2].isdigit():
            found.append(directory / entry)
    return found


def remove(path: Path) -> None:
    """Remove a file if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Snapshot(NamedTuple):
    """What a marker file held when it was read, and how trustworthy it was."""

    exists: bool
    data: bytes = b""
    problem: str | None = None  # why the content could not be trusted
    identity: tuple[int, int, int] | None = None  # (device, inode, mtime_ns)


def read_marker(path: Path) -> Snapshot:
    """Read a marker without following symlinks, blocking, or reading it whole."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return Snapshot(exists=False)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Snapshot(exists=True, problem="is a symlink")
        if exc.errno == errno.ENOTDIR:
            return Snapshot(exists=False)
        return Snapshot(exists=True, problem=f"cannot be opened: {exc.strerror}")
    try:
        info = os.fstat(fd)
        identity = (info.st_dev, info.st_ino, info.st_mtime_ns)
        if not stat.S_ISREG(info.st_mode):
            return Snapshot(exists=True, problem="is not a regular file", identity=identity)
        if info.st_size > MAX_MARKER_BYTES:
            return Snapshot(exists=True, problem="is larger than 64 KiB", identity=identity)
        data = os.read(fd, MAX_MARKER_BYTES + 1)
        if len(data) > MAX_MARKER_BYTES:
            return Snapshot(exists=True, problem="is larger than 64 KiB", identity=identity)
        return Snapshot(exists=True, data=data, identity=identity)
    except OSError as exc:
        return Snapshot(exists=True, problem=f"cannot be read: {exc.strerror}")
    finally:
        os.close(fd)


class DoneRecord(NamedTuple):
    """A ``.done`` record: what every writer writes and what readers understand,
    whatever form the file had (see docs/PROTOCOL.md, "NAME.done")."""

    exit_code: int | None
    signal: int | None = None
    reason: str | None = None
    attempt: int | None = None
    name: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    why: str | None = (
        None  # what ended it (sidecars: the wait; a wrapper that never ran: the error)
    )
    child_exit_code: int | None = None  # sidecars: the status COMMAND ended with
    problem: str | None = None  # readers: set when the file was not a valid record

    @property
    def failed(self) -> bool:
        """Unknown exit codes count as success: ``touch NAME.done`` means done."""
        return self.signal is not None or (self.exit_code is not None and self.exit_code != 0)

    def to_json(self) -> dict[str, Any]:
        """The JSON object writers put in ``NAME.done``."""
        record = {
            "name": self.name,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "reason": self.reason,
            "attempt": self.attempt,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.why is not None:
            record["why"] = self.why
        if self.reason == "Stopped":  # a sidecar the wrapper stopped: null if none ran
            record["child_exit_code"] = self.child_exit_code
        return record


def parse_done(snapshot: Snapshot) -> DoneRecord:
    """Interpret a ``.done`` file: empty, a decimal integer, or the JSON object.

    Anything else still counts as completion, with an unknown exit code and the
    reason in ``problem`` so the caller can warn.
    """
    if snapshot.problem is not None:
        return DoneRecord(exit_code=None, problem=snapshot.problem)
    text = snapshot.data.strip()
    if not text:
        return DoneRecord(exit_code=None)
    code = decimal_code(text)
    if code is not None:
        return DoneRecord(exit_code=code)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return DoneRecord(exit_code=None, problem="is neither empty, an integer nor JSON")
    if not isinstance(obj, dict):
        return DoneRecord(exit_code=None, problem="is JSON but not an object")
    exit_code, signal = obj.get("exit_code"), obj.get("signal")
    for key, value in (("exit_code", exit_code), ("signal", signal)):
        if value is not None and int_or_none(value) is None:
            return DoneRecord(exit_code=None, problem=f"has a {key} that is not an integer")
    return DoneRecord(
        exit_code=int_or_none(exit_code),
        signal=int_or_none(signal),
        reason=_text_or_none(obj.get("reason")),
        attempt=int_or_none(obj.get("attempt")),
        name=_text_or_none(obj.get("name")),
        started_at=_text_or_none(obj.get("started_at")),
        finished_at=_text_or_none(obj.get("finished_at")),
        why=_text_or_none(obj.get("why")),
        child_exit_code=int_or_none(obj.get("child_exit_code")),
    )


def decimal_code(text: bytes) -> int | None:
    """The integer form of ``.done``: an optional sign and 1 to 9 ASCII digits.

    No regular expression: this runs on the path from a main's end to the stop,
    where compiling one on first use cost more than the rest of the check.
    """
    digits = text[1:] if text[:1] in (b"+", b"-") else text
    if 1 <= len(digits) <= 9 and digits.isdigit():
        return int(text)
    return None


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if -(2**31) <= value < 2**31 else None


def read_json(path: Path) -> dict[str, Any] | None:
    """A ``.started`` or ``.ready`` record, or None when absent or unreadable."""
    snapshot = read_marker(path)
    if not snapshot.exists or snapshot.problem is not None:
        return None
    try:
        obj = json.loads(snapshot.data)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


class OwnLock:
    """The exclusive ``flock`` a wrapper holds on ``NAME.lock`` while it lives.

    The descriptor is close-on-exec, so no child keeps the lock alive after the
    wrapper dies; the kernel releases it on any death, SIGKILL and OOM included.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, patience: float = 2.0) -> None:
        """Take the lock; raise LockBusyError if another wrapper keeps it.

        Peers probe the lock with a shared lock for microseconds at a time, so a
        busy lock is retried for ``patience`` seconds before it counts as taken.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, FILE_MODE)
        # Peers of other users must be able to open it; one another user made
        # is not ours to change, and still locks.
        with contextlib.suppress(OSError):
            os.fchmod(fd, FILE_MODE)
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockBusyError(
                        f"another supervisor holds {self.path}; give each container its own --name"
                    ) from None
                time.sleep(0.01)
            else:
                self._fd = fd
                return

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def lock_state(path: Path) -> str:
    """``held`` while some wrapper holds ``path``, ``free``, ``absent``, or ``unreadable``.

    Probed with a shared, non-blocking lock that is dropped at once. A lock we
    cannot open is ``unreadable``: nothing can be concluded from it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return "absent"
    except OSError:
        return "unreadable"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "unreadable"  # a directory or a FIFO: no wrapper locks those
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return "held"
    except OSError:
        return "unreadable"
    finally:
        os.close(fd)  # also drops our shared lock at once
    return "free"


def lock_is_held(path: Path) -> bool:
    """True while some wrapper holds ``path``."""
    return lock_state(path) == "held"


def wait_lock_released(path: Path) -> None:
    """Block in the kernel until nobody holds ``path`` exclusively; no polling.

    Raises OSError when the lock cannot be opened or waited on: the caller
    must not take that for a release.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # O_NONBLOCK is for open() only; this blocks
    finally:
        os.close(fd)


def ready_state(ready: Path) -> tuple[bool, str]:
    """Does ``NAME.ready`` speak for a wrapper that is alive now? (passed, detail)

    A ``.ready`` opens a gate only while its wrapper holds ``NAME.lock`` (or runs
    without a usable one, or nobody wraps it: a hand-made file). One left by a
    wrapper that is gone (killed, or an earlier run on a reused directory) does
    not: its lock is free.
    """
    if not read_marker(ready).exists:
        return False, "absent"
    stem = ready.name[: -len(".ready")]
    state = lock_state(ready.with_name(f"{stem}.lock"))
    if state in ("held", "unreadable"):
        return True, "ready"
    started = read_json(ready.with_name(f"{stem}.started"))
    if started is None or started.get("locked") is False:
        return True, "ready (no wrapper lock to check)"
    return False, f"left by a wrapper that is gone ({stem}.lock is free)"
