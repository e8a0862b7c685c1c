"""One process harness: start a process, read its output, wait for it, stop its whole tree.

The demo (``sidecar-supervisor demo``), the tests and the benchmarks all run
"containers" as real processes and talk to them the same way; this module is
the one definition they share. It lives in the package because the demo is
part of the installed tool; ``tests/`` and ``benchmarks/`` import it from here.
It uses the standard library only and is imported by the demo alone: the
sidecar and main roles never import it, so it costs their start-up nothing.

A ``Process`` is started (argv, env, cwd; in its own session by default, so
its process group is its own) with its stdout read line by line in a thread
into a queue (``readline``, ``wait_for_line``, ``rest``) and its stderr
written to a log file (``events`` parses the supervisor's JSON log from it).
``wait`` is bounded; ``stop`` SIGKILLs every descendant (found in ``/proc``,
even those that left the session) and the process group, reaps the process
and releases its pipes and log. Linux only, as the tool is.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

# Starts the command as PID 1 of a new PID namespace (with its own /proc), and
# kills it when unshare itself dies.
UNSHARE = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
_PR_SET_CHILD_SUBREAPER = 36


@functools.cache
def namespace_prefix(*, map_root: bool = False, timeout: float = 30.0) -> tuple[str, ...]:
    """``UNSHARE`` where this machine allows a new PID namespace, else ``()``.

    With ``map_root``, a user that is not root also tries a new user namespace
    mapped to root (``unshare --user --map-root-user``).
    """
    candidates: list[tuple[str, ...]] = [UNSHARE]
    if map_root and os.geteuid() != 0:
        candidates.append(("unshare", "--user", "--map-root-user", *UNSHARE[1:]))
    for prefix in candidates:
        try:
            probe = subprocess.run(
                [*prefix, "true"], capture_output=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def become_subreaper() -> None:
    """Adopt orphaned descendants, so that a clean-up can find and reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def poll_until(predicate: Callable[[], T], timeout: float, pause: float = 0.01) -> T | None:
    """Call ``predicate`` until it returns something truthy; that, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(pause)


# --- process trees, from /proc -----------------------------------------------------


def _parents() -> dict[int, list[int]]:
    """Every process's children, by parent pid (one pass over /proc)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    data = stat.read()
            except OSError:
                continue  # gone meanwhile
            # pid (comm) state ppid ...: comm may hold spaces and parentheses.
            ppid = int(data[data.rindex(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def children(pid: int) -> list[int]:
    """The children of ``pid``, lowest pid first."""
    return sorted(_parents().get(pid, []))


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``, parents before their children."""
    tree = _parents()
    found: list[int] = []
    level = [pid]
    while level:
        level = [child for parent in level for child in sorted(tree.get(parent, []))]
        found.extend(level)
    return found


def kill_tree(pid: int, *, include_self: bool = True) -> None:
    """SIGKILL ``pid`` (unless not ``include_self``) and its descendants, deepest first."""
    for target in reversed([*([pid] if include_self else []), *descendants(pid)]):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)


# --- logs --------------------------------------------------------------------------


class LogTail:
    """A file read on from where the last call stopped, in complete lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def lines(self) -> list[str]:
        """The complete lines written since the last call."""
        try:
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return complete.decode(errors="replace").splitlines()


def json_objects(lines: Sequence[str]) -> list[dict[str, Any]]:
    """The lines that are JSON objects (the supervisor's JSON log), parsed; others skipped."""
    found = []
    for line in lines:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    found.append(obj)
    return found


# --- a process -----------------------------------------------------------------------


class Process:
    """One process with its stdout read by lines in a thread and its stderr in a log file."""

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log: Path | None = None,
        stdin: bool = False,
        session: bool = True,
    ) -> None:
        """Start ``argv``: ``env`` is the whole environment (None: this one's), ``log``
        receives stderr (None: discarded), ``stdin`` opens a pipe for ``send``, and
        ``session`` puts the process in a new session (its own process group)."""
        self.log = log
        self.session = session
        self.output: list[str] = []  # every line taken so far, in order
        self.eof = False  # the end of stdout was taken
        self.first_line_ns: int | None = None  # monotonic_ns when the first line arrived
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._tail = LogTail(log) if log is not None else None
        self._events: list[dict[str, Any]] = []
        self._stderr: IO[bytes] | None = open(log, "wb") if log else None  # noqa: SIM115 - closed in release()
        self.started_ns = time.monotonic_ns()  # right before the fork and exec
        self.popen = subprocess.Popen(
            [os.fspath(word) for word in argv],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr or subprocess.DEVNULL,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=session,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None  # PIPE was asked for
        for raw in self.popen.stdout:
            if self.first_line_ns is None:
                self.first_line_ns = time.monotonic_ns()
            self._lines.put(raw.decode(errors="replace").rstrip("\n"))
        self._lines.put(None)

    # --- stdout ---------------------------------------------------------------------

    def readline(self, timeout: float) -> str | None:
        """The next line of stdout (kept in ``output``); None at its end or after ``timeout``."""
        if self.eof:
            return None
        try:
            line = self._lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if line is None:
            self.eof = True
            return None
        self.output.append(line)
        return line

    def wait_for_line(self, predicate: Callable[[str], T | None], timeout: float) -> T | None:
        """Take lines until ``predicate(line)`` is truthy: that value; None at eof or timeout."""
        deadline = time.monotonic() + timeout
        while (line := self.readline(deadline - time.monotonic())) is not None:
            found = predicate(line)
            if found:
                return found
        return None

    def rest(self, timeout: float) -> list[str]:
        """Every line still to come, once the process (and all it started) closed stdout.

        Waits up to ``timeout`` for that; after it, what has arrived.
        """
        self._reader.join(timeout)
        rest = []
        while (line := self.readline(0)) is not None:
            rest.append(line)
        return rest

    def send(self, data: bytes) -> None:
        """Write to the process's stdin (``stdin=True``)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(data)
        self.popen.stdin.flush()

    # --- stderr -----------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """The JSON objects of the stderr log so far: the supervisor's events, oldest first."""
        if self._tail is not None:
            self._events.extend(json_objects(self._tail.lines()))
        return list(self._events)

    # --- the process --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def first_child(self, timeout: float, pause: float = 0.005) -> int | None:
        """Its first child, as seen from here: PID 1 of the namespace ``unshare`` started.

        None if the process ends first or no child appears within ``timeout``.
        """

        def found() -> int | None:
            kids = children(self.popen.pid)
            if kids:
                return kids[0]
            return -1 if self.popen.poll() is not None else None

        pid = poll_until(found, timeout, pause)
        return pid if pid is not None and pid > 0 else None

    def wait(self, timeout: float) -> int | None:
        """Its exit status (-N for a death by signal N); None if it still runs after ``timeout``."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL every descendant and the process group, then reap the process.

        Descendants first, even those that left the session: a survivor holding
        stdout would keep the reader waiting. Nothing is sent once the process
        has been reaped, as its pid may then be another process's.
        """
        if self.popen.returncode is not None:
            return
        kill_tree(self.popen.pid, include_self=False)
        if self.session:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
        self.wait(timeout)

    def release(self, timeout: float = 10.0) -> None:
        """Close the pipes and the log, once every process that could write is gone.

        The reader thread sees the end of stdout only when its last writer is
        dead; closing the pipe under a reader still blocked would block on its lock.
        """
        self._reader.join(timeout)
        streams: list[IO[bytes] | None] = [self.popen.stdin, self._stderr]
        if not self._reader.is_alive():
            streams.append(self.popen.stdout)
        for stream in streams:
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def stop(self, timeout: float = 10.0) -> None:
        """``kill`` then ``release``: nothing of it is left running or open."""
        self.kill(timeout)
        self.release(timeout)
