"""Spawning, reaping and stopping: the PID-1 side of both roles.

One event queue and one loop. Signal handlers and helper threads only put
events on the queue; ``Loop.run_until`` takes them in the main thread, reaps
every exited process in one place (``waitpid(-1)``, so orphans re-parented to
us as PID 1 or as a child subreaper never linger as zombies) and hands the
rest to the role.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from supervisor import log
from supervisor.errors import SupervisorError
from supervisor.signals import CHILD_DEFAULTS, captured, signal_name

Event = tuple[Any, ...]
_PR_SET_CHILD_SUBREAPER = 36
# While the leader is gone but some of its group lives on, nothing tells us
# when the rest exits (they are not our children), so we look at this pace.
GROUP_POLL_INTERVAL = 0.02
# After SIGKILL the kernel needs a moment; a process stuck in the D state
# may need longer, and we do not wait for it forever.
KILL_WAIT = 5.0


class CommandError(SupervisorError):
    """COMMAND could not be started; exit 127 (not found) or 126 (not executable)."""

    def __init__(self, message: str, exit_code: int, reason: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.reason = reason


def exit_code_of(status: int) -> int:
    """The shell's convention: the exit code, or 128+N for a death by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Child:
    """COMMAND's process; its pid is also the id of its own process group."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.status: int | None = None  # raw wait status once reaped
        self.exited = threading.Event()  # set by the reaper, for helper threads

    @property
    def running(self) -> bool:
        return self.status is None

    @property
    def exit_code(self) -> int | None:
        """The exit code if it exited, None if killed by a signal or still running."""
        if self.status is None or not os.WIFEXITED(self.status):
            return None
        return os.WEXITSTATUS(self.status)

    @property
    def signal(self) -> int | None:
        if self.status is None or not os.WIFSIGNALED(self.status):
            return None
        return os.WTERMSIG(self.status)

    @property
    def code(self) -> int:
        """The status a shell would report: exit code or 128+N."""
        assert self.status is not None, "the child has not been reaped"
        return exit_code_of(self.status)

    @property
    def reason(self) -> str:
        """Why it ended, in the words Kubernetes uses where they exist."""
        if self.signal is not None:
            return "Signaled"
        return "Completed" if self.exit_code == 0 else "Error"

    def signal_group(self, signum: int) -> bool:
        """Send ``signum`` to the whole process group; False if it is gone."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False
        return True

    @property
    def group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def spawn(argv: Sequence[str]) -> Child:
    """Start COMMAND in its own process group with default signal dispositions."""
    try:
        pid = os.posix_spawnp(
            argv[0],
            list(argv),
            os.environ,
            setpgroup=0,
            setsigmask=(),
            setsigdef=CHILD_DEFAULTS,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{argv[0]}: command not found", 127, "NotFound") from exc
    except (PermissionError, IsADirectoryError) as exc:
        raise CommandError(f"{argv[0]}: permission denied", 126, "NotExecutable") from exc
    except OSError as exc:
        raise CommandError(f"{argv[0]}: {exc.strerror}", 126, "NotExecutable") from exc
    return Child(pid)


def become_subreaper() -> bool:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER) unless we are PID 1."""
    if os.getpid() == 1:
        return True
    import ctypes  # noqa: PLC0415 - PID 1 (every container) never needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Loop:
    """The one queue every signal, file event, lock release and probe result goes to."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        # A byte here wakes the loop: from post() (helper threads) and from the
        # kernel-level signal handler (signal.set_wakeup_fd, see signals.captured).
        self._wake_r, self.wakeup_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.children: dict[int, Child] = {}
        # Helper threads spawn probe commands; spawning and registering under
        # this lock means the reaper never meets a child it does not know yet.
        self._children_lock = threading.Lock()
        self._subreaper = False

    def post(self, *event: Any) -> None:
        self.events.put(tuple(event))
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            os.write(self.wakeup_fd, b"\0")

    def _next(self, timeout: float | None) -> Event | None:
        """The next event, or None after ``timeout`` or a wake-up with nothing queued.

        Being a Python call, it lets pending signal handlers run first; a signal
        that lands between the queue check and ``select`` has written its byte to
        the pipe, so ``select`` returns at once and the next call finds it.
        """
        try:
            return self.events.get_nowait()
        except queue.Empty:
            pass
        select.select([self._wake_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass
        try:
            return self.events.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        for fd in (self._wake_r, self.wakeup_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def spawn(self, argv: Sequence[str]) -> Child:
        """Start a process whose exit this loop will reap; safe from any thread.

        A thread that started one waits on ``child.exited``; the loop in the
        main thread does the reaping.
        """
        if not self._subreaper:
            # Before the first child: one that exits at once may leave orphans.
            self._subreaper = become_subreaper()
        with self._children_lock:
            child = spawn(argv)
            self.children[child.pid] = child
        return child

    def reap(self) -> None:
        """Collect every exited child, ours or adopted, without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            with self._children_lock:
                child = self.children.pop(pid, None)
            if child is not None:  # else an adopted orphan: reaping it was the point
                child.status = status
                child.exited.set()

    def run_until(
        self,
        done: Callable[[], bool],
        handle: Callable[[Event], None],
        deadline: float | None = None,
        tick: float | None = None,
    ) -> bool:
        """Dispatch events until ``done()``; False if ``deadline`` passed first.

        SIGCHLD is handled here (reap); everything else goes to ``handle``,
        including ``("tick",)`` every ``tick`` seconds of quiet.
        """
        while not done():
            timeout: float | None = tick
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                timeout = remaining if timeout is None else min(timeout, remaining)
            started = time.monotonic()
            event = self._next(timeout)
            if event is None:
                if tick is not None and time.monotonic() - started >= tick:
                    handle(("tick",))
                continue
            if event == ("signal", signal.SIGCHLD):
                self.reap()
            else:
                handle(event)
        return True

    def wait_group_gone(
        self, child: Child, handle: Callable[[Event], None], deadline: float
    ) -> bool:
        """Wait until the child and every process of its group have exited."""
        if not self.run_until(lambda: not child.running, handle, deadline):
            return False
        # The rest of the group need not be our children, so nothing tells us
        # when it exits: look at a short pace while anything of it remains.
        while child.group_alive:
            if time.monotonic() >= deadline:
                return False
            pause = min(deadline, time.monotonic() + GROUP_POLL_INTERVAL)
            self.run_until(lambda: False, handle, pause)
        return True

    def stop(
        self,
        child: Child,
        request: Callable[[], object],
        grace: float,
        handle: Callable[[Event], None],
    ) -> None:
        """Stop the child's whole group: request, ``grace`` seconds, SIGKILL, reap.

        ``request`` asks for the stop (a signal to the group, an HTTP call, a
        command); signals that arrive meanwhile still go to ``handle``.
        """
        if child.running or child.group_alive:
            request()
        if self.wait_group_gone(child, handle, time.monotonic() + grace):
            return
        log.warning(
            "grace_period_expired",
            pid=child.pid,
            grace_period=grace,
            action="SIGKILL to the process group",
        )
        child.signal_group(signal.SIGKILL)
        if not self.wait_group_gone(child, handle, time.monotonic() + KILL_WAIT):
            log.error("process_group_survived_sigkill", pid=child.pid)

    def kill_strays(self, handle: Callable[[Event], None]) -> None:
        """SIGKILL what is still our child at exit: descendants that left COMMAND's
        group (``setsid``) and were re-parented to us. As PID 1 the kernel would
        kill them with the namespace; as a subreaper they would outlive us."""
        strays = children_of_self()
        if not strays:
            return
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.warning("stray_processes_killed", pids=strays)
        deadline = time.monotonic() + KILL_WAIT
        while children_of_self() and time.monotonic() < deadline:
            self.run_until(
                lambda: False, handle, min(deadline, time.monotonic() + GROUP_POLL_INTERVAL)
            )
            self.reap()


def children_of_self() -> list[int]:
    """Our live children, from /proc (every thread's list, since a child is its
    creating thread's)."""
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as listing:
                pids += [int(pid) for pid in listing.read().split()]
        except (OSError, ValueError):
            continue
    return sorted(set(pids))


@contextlib.contextmanager
def signal_loop(*, restore: bool = True) -> Iterator[Loop]:
    """A Loop that every caught signal reaches; see ``signals.captured`` for ``restore``."""
    loop = Loop()
    try:
        with captured(loop.events, loop.wakeup_fd, restore=restore):
            yield loop
    finally:
        if restore:  # otherwise the handlers still write to its wake-up pipe
            loop.close()


def describe_exit(child: Child) -> dict[str, Any]:
    """Log fields for a reaped child."""
    fields: dict[str, Any] = {"pid": child.pid, "exit_code": child.code}
    if child.signal is not None:
        fields["signal"] = signal_name(child.signal)
    return fields


def forward(child: Child | None, event: Event) -> None:
    """Relay a signal event to the child's process group, if there is a child."""
    if event[0] == "signal" and child is not None and (child.running or child.group_alive):
        log.debug("signal_forwarded", signal=signal_name(event[1]), pid=child.pid)
        child.signal_group(event[1])
