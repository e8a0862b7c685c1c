"""What a wrapper writes about itself: its lock and its three records.

A record that cannot be written (volume full, read-only, missing) never stops
the role: the error is logged with the file's path and the role goes on, so the
main still exits with COMMAND's status.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from supervisor import log
from supervisor.markers import (
    DIR_MODE,
    DoneRecord,
    OwnLock,
    RecordFile,
    int_or_none,
    iso,
    marker_path,
    now,
    read_json,
    remove,
    stale_record_files,
    write_json,
)


class OwnRecords:
    """``NAME.lock``, ``NAME.started``, ``NAME.ready`` and ``NAME.done`` of one container."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.lock = OwnLock(marker_path(directory, name, "lock"))
        self.attempt = 1
        self.started_at: float | None = None
        self._about: dict[str, Any] = {}
        self._done_file: RecordFile | None = None  # created ahead, see prepare_done

    def path(self, kind: str) -> Path:
        return marker_path(self.directory, self.name, kind)

    def prepare(self) -> None:
        """Create the shared dir if needed and take the lock (LockBusyError if taken).

        Having to create the dir is worth a warning: in a pod it should be the
        mounted volume, and a container without the mount is the commonest
        manifest mistake (its peers will never see its files).
        """
        try:
            missing = not self.directory.exists()  # raises for a parent we may not enter
            if missing:
                self.directory.mkdir(parents=True, exist_ok=True)
                os.chmod(self.directory, DIR_MODE)  # whatever the umask
        except OSError as exc:
            log.error(
                "dir_unavailable",
                path=str(self.directory),
                error=exc.strerror or str(exc),
                cause=_mkdir_cause(self.directory),
                consequence="no record can be written; peers cannot see this container",
            )
            return
        if missing:
            log.warning(
                "dir_created",
                path=str(self.directory),
                hint="it did not exist: is the shared volume mounted here in this container? "
                "its peers see only what is written on the volume",
            )
        try:
            self.lock.acquire()
        except OSError as exc:
            log.error(
                "lock_unavailable",
                path=str(self.lock.path),
                error=exc.strerror,
                consequence="peers can only see this container through its .done",
                hint=_permission_hint(self.directory) if isinstance(exc, PermissionError) else None,
            )

    def begin_attempt(self, **about: Any) -> None:
        """Remove a stale ``.done`` and write ``.started`` with the next attempt number.

        ``about``: optional fields for people and ``status`` (``role``, ``waits_for``,
        ``gates``; docs/PROTOCOL.md, "Records")."""
        previous = read_json(self.path("started"))
        last = int_or_none(previous.get("attempt")) if previous is not None else None
        if last is not None:
            self.attempt = max(1, last + 1)
        for kind in ("done", "ready"):
            try:
                remove(self.path(kind))
            except OSError as exc:
                log.error("marker_remove_failed", path=str(self.path(kind)), error=exc.strerror)
        self.started_at = now()
        self._about = about
        self._write_started()

    def prepare_done(self) -> None:
        """Create ``.done``'s temporary file now, for ``done()`` to fill and rename.

        The main calls it once COMMAND runs: creating a file is the slowest step
        of a record, and its peers wait for this one (docs/PROTOCOL.md,
        "Writing"). Files that a dead wrapper of this name left go first; while
        we hold the lock no other wrapper of the name lives.
        """
        if self.lock.held:
            for path in stale_record_files(self.directory, self.name):
                with contextlib.suppress(OSError):
                    remove(path)
        with contextlib.suppress(OSError):  # done() tries again and says why it failed
            self._done_file = RecordFile(self.path("done"))

    def _write_started(self) -> None:
        self._write(
            "started",
            {
                "name": self.name,
                "pid": os.getpid(),
                "attempt": self.attempt,
                "started_at": iso(self.started_at),
                # False: no lock is held for this attempt, so a free lock says nothing
                "locked": self.lock.held,
                **{key: value for key, value in self._about.items() if value is not None},
            },
        )

    def update_started(self, **about: Any) -> None:
        """Write ``.started`` again with these optional fields changed (None: removed)."""
        self._about = {**self._about, **about}
        self._write_started()

    def ready(self, pid: int) -> None:
        self._write("ready", {"name": self.name, "pid": pid, "ready_at": iso(now())})

    def unready(self) -> None:
        """The child that ``.ready`` named is gone: no gate may open on it."""
        try:
            remove(self.path("ready"))
        except OSError as exc:
            log.error("marker_remove_failed", path=str(self.path("ready")), error=exc.strerror)

    def done(
        self,
        exit_code: int | None,
        signal: int | None,
        reason: str,
        why: str | None = None,
        child_exit_code: int | None = None,
    ) -> None:
        """Write ``.done``, then release the lock: peers wake on the release."""
        record = DoneRecord(
            exit_code,
            signal,
            reason,
            self.attempt,
            name=self.name,
            started_at=iso(self.started_at),
            finished_at=iso(now()),
            why=why,
            child_exit_code=child_exit_code,
        )
        prepared, self._done_file = self._done_file, None
        self._write("done", record.to_json(), prepared)
        self.lock.release()

    def close(self) -> None:
        """Remove the ``.done`` file made ahead if no record was written (an error)."""
        prepared, self._done_file = self._done_file, None
        if prepared is not None:
            prepared.discard()

    def has_done(self) -> bool:
        return self.path("done").exists()

    def _write(self, kind: str, record: dict[str, Any], prepared: RecordFile | None = None) -> bool:
        path = self.path(kind)
        if prepared is not None:
            with contextlib.suppress(OSError):  # the volume changed since: a new file
                prepared.commit(record)
                return True
        try:
            write_json(path, record)
        except OSError as exc:
            log.error("marker_write_failed", path=str(path), error=exc.strerror or str(exc))
            return False
        return True


def _permission_hint(directory: Path) -> str:
    """What to change when this user may not write in the shared dir."""
    try:
        info = directory.stat()
    except OSError:
        return "check the shared volume's mount"
    return (
        f"{directory} belongs to uid {info.st_uid} with mode {info.st_mode & 0o777:o} and this "
        f"container runs as uid {os.getuid()}: give the pod a securityContext.fsGroup (an "
        "emptyDir then is group-writable), run the containers as one user, or create the "
        "directory with mode 1777; until then no peer can see this container's records"
    )


def _mkdir_cause(directory: Path) -> str:
    """Why ``directory`` could not be made: the nearest existing parent, and what it allows."""
    parent = directory.parent
    while not os.path.exists(parent) and parent != parent.parent:
        parent = parent.parent
    try:
        info = parent.stat()
    except OSError as exc:
        return f"{parent}: {exc.strerror}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return (
            f"{parent} is not writable by uid {os.getuid()} (owner uid {info.st_uid}, "
            f"mode {info.st_mode & 0o777:o}): mount the shared volume at {directory}"
        )
    return f"{parent} exists; see the error"


def write_failure(directory: Path, name: str, exit_code: int, reason: str, error: str) -> None:
    """A failed ``NAME.done`` from a wrapper that could not start its role at all.

    Not written when the name is not valid, the directory is missing (no volume
    is mounted there: nobody would read it), or another live wrapper holds the
    lock (the record is that wrapper's to write). The caller has already said
    what went wrong in one line; a record that cannot be written adds none.
    """
    from supervisor.markers import lock_state, valid_name  # noqa: PLC0415

    if not valid_name(name) or lock_state(marker_path(directory, name, "lock")) == "held":
        return
    record = DoneRecord(exit_code, None, reason, name=name, finished_at=iso(now()), why=error)
    with contextlib.suppress(OSError):
        write_json(marker_path(directory, name, "done"), record.to_json())


def write_termination_log(path: Path, line: str) -> None:
    """One summary line for ``kubectl describe pod``, only if the file exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, (line[:4000] + "\n").encode(errors="backslashreplace"))
    except OSError:
        pass
    finally:
        os.close(fd)


def exiting(termination_log: Path, who: tuple[str, str], summary: str, code: int) -> int:
    """The last words of either role: the termination log and ``supervisor_exiting``.

    ``who``: (name, role); the summary starts with the name, and the role too when
    the name does not say it."""
    name, role = who
    summary = f"{name}: {summary}" if name == role else f"{name} ({role}): {summary}"
    write_termination_log(termination_log, summary)
    log.info("supervisor_exiting", exit_code=code, summary=summary)
    return code
