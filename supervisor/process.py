"""Children: spawning, reaping, stopping whole process groups, killing strays.

COMMAND runs in a process group of its own (its pid is the group's id), so a
stop reaches every process it started. Reaping happens in one place:
``Processes.reap`` collects every exited process with ``waitpid(-1)`` (orphans
re-parented to us as PID 1 or as a child subreaper included) and turns our own
children into ``ChildExited`` events for the loop.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from supervisor import log
from supervisor.errors import CommandError
from supervisor.events import CallsDone, ChildExited, Event, TimerFired
from supervisor.signals import CHILD_DEFAULTS, signal_name, start_thread

if TYPE_CHECKING:
    from supervisor.loop import Loop

_PR_SET_CHILD_SUBREAPER = 36
_M_ARENA_MAX = -8  # mallopt(3)
# While the leader is gone but some of its group lives on, nothing tells us
# when the rest exits (they are not our children), so we look at this pace.
GROUP_POLL_INTERVAL = 0.02
# After SIGKILL the kernel needs a moment; a process stuck in the D state
# may need longer, and we do not wait for it forever.
KILL_WAIT = 5.0
HTTP_TIMEOUT = 5.0  # each stop or quit call at most; a hanging endpoint is abandoned


def exit_code_of(status: int) -> int:
    """The shell's convention: the exit code, or 128+N for a death by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Child:
    """A process we started; its pid is also the id of its own process group."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.status: int | None = None  # raw wait status once reaped
        self.exited = threading.Event()  # set by the reaper, for helper threads
        self.stopped = False  # the reaper saw it stop (SIGSTOP, SIGTSTP, ...)

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

    @property
    def ran_for(self) -> float:
        return time.monotonic() - self.started

    def signal_group(self, signum: int) -> bool:
        """Send ``signum`` to the whole process group; False if it is gone."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    @property
    def group_alive(self) -> bool:
        return self.signal_group(0)

    def continue_group(self) -> None:
        self.stopped = False
        self.signal_group(signal.SIGCONT)

    @property
    def alive(self) -> bool:
        """Anything of it left: the leader or any process of its group."""
        return self.running or self.group_alive


def spawn(argv: Sequence[str], *, die_with_parent: bool = False) -> Child:
    """Start COMMAND in its own process group with every signal at its default.

    ``die_with_parent``: COMMAND gets SIGKILL if the supervisor dies, even by
    SIGKILL, when it is not PID 1 (as PID 1 the kernel ends the whole namespace
    with it). posix_spawn cannot set PR_SET_PDEATHSIG, so COMMAND is started
    through ``setpriv --pdeathsig KILL`` where util-linux has it; elsewhere it
    cannot be done without a fork in a threaded process, and is not.
    """
    if die_with_parent and os.getpid() != 1:
        setpriv = find_program("setpriv")
        if setpriv is not None:
            argv = [setpriv, "--pdeathsig", "KILL", "--", _executable(argv[0]), *argv[1:]]
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
        raise CommandError(f"{_text(argv[0])}: command not found", 127, "NotFound") from exc
    except (PermissionError, IsADirectoryError) as exc:
        raise CommandError(f"{_text(argv[0])}: permission denied", 126, "NotExecutable") from exc
    except OSError as exc:
        raise CommandError(f"{_text(argv[0])}: {exc.strerror}", 126, "NotExecutable") from exc
    return Child(pid)


def find_program(name: str) -> str | None:
    """``name`` as ``execvp`` would find it on PATH (a name with a slash as it is)."""
    if "/" in name:
        return name if os.path.exists(name) else None
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _executable(name: str) -> str:
    """COMMAND's program, or the CommandError posix_spawnp would have given."""
    found = find_program(name)
    if found is None:
        raise CommandError(f"{_text(name)}: command not found", 127, "NotFound")
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        raise CommandError(f"{_text(name)}: permission denied", 126, "NotExecutable")
    return found


def _text(arg: str) -> str:
    """An argument as printable text (bytes that are not UTF-8 are shown escaped)."""
    return arg.encode(errors="surrogateescape").decode(errors="backslashreplace")


def become_subreaper() -> bool:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER) unless we are PID 1."""
    if os.getpid() == 1:
        return True
    import ctypes  # noqa: PLC0415 - PID 1 (every container) does not need it to start

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


@functools.cache
def one_malloc_arena() -> None:
    """From now on, threads take their memory from glibc's main arena
    (``mallopt(M_ARENA_MAX, 1)``); elsewhere than glibc, nothing.

    A sidecar lives through its main's restarts, and each restart starts helper
    threads anew: a lock wait, a file watcher whose Rust threads allocate with
    malloc. glibc gives a thread that overlaps another an arena of its own (up
    to 8 per core), and every arena keeps the pages it touched: a long-lived
    sidecar grew by about 100 B per restart of its main. Our threads seldom
    allocate at the same moment, so one arena costs no waiting.
    """
    import ctypes  # noqa: PLC0415 - only a process with helper threads that come and go

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1)


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


class Terminal:
    """The terminal on our stdin, if any, and which process group has it.

    COMMAND runs in a group of its own, so a terminal that stayed ours would stop
    it at its first read (SIGTTIN) or write (SIGTTOU with ``tostop``). Each
    COMMAND gets it as it starts (``tcsetpgrp``, as tini does), and a SIGCONT in
    case it already tried; the supervisor then ignores SIGTTIN and SIGTTOU, so its
    own writes from the background never stop it.
    """

    def __init__(self) -> None:
        self.holder: int | None = None  # the group we handed it to

    def give(self, pgid: int) -> None:
        try:
            if not os.isatty(0):
                return
            foreground = os.tcgetpgrp(0)
        except OSError:
            return
        if foreground not in (os.getpgrp(), self.holder):
            return  # we are a background job, or somebody else has it: leave it
        for signum in (signal.SIGTTOU, signal.SIGTTIN):
            signal.signal(signum, signal.SIG_IGN)
        try:
            os.tcsetpgrp(0, pgid)
        except OSError:
            return
        self.holder = pgid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGCONT)


class Processes:
    """Every child we started, and the reaper the loop calls on SIGCHLD."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.terminal = Terminal()
        self.children: dict[int, Child] = {}
        # Helper threads spawn probe commands; spawning and registering under
        # this lock means the reaper never meets a child it does not know yet.
        self._lock = threading.Lock()
        self._subreaper = False
        # The last reaping pass found no child at all, ours or adopted (ECHILD).
        self.childless = False
        loop.reaper = self.reap

    def spawn(self, argv: Sequence[str], *, terminal: bool = False) -> Child:
        """Start a process whose exit the loop will reap; safe from any thread.

        ``terminal``: COMMAND, which gets the terminal if we have one and dies with
        the supervisor (main thread).
        """
        if not self._subreaper:
            # Before the first child: one that exits at once may leave orphans.
            self._subreaper = become_subreaper()
        with self._lock:
            child = spawn(argv, die_with_parent=terminal)
            self.children[child.pid] = child
        if terminal:
            self.terminal.give(child.pid)
        return child

    def reap(self) -> list[Event]:
        """Collect every exited child, ours or adopted, without blocking."""
        # The hot path of PID 1 (an orphan per pass and more): no per-process
        # logging, allocation or lock beyond the pass's own.
        ended: list[Child] = []
        stopped: list[tuple[int, int]] = []
        children, waitpid, flags = self.children, os.waitpid, os.WNOHANG | os.WUNTRACED
        with self._lock:
            while True:
                try:
                    pid, status = waitpid(-1, flags)
                except ChildProcessError:
                    self.childless = True
                    break
                if pid == 0:
                    self.childless = False
                    break
                child = children.get(pid)
                if child is None:
                    continue  # an adopted orphan: reaping it was the point
                if os.WIFSTOPPED(status):
                    stopped.append((pid, os.WSTOPSIG(status)))
                    continue
                del children[pid]
                child.status = status
                ended.append(child)
        for pid, signum in stopped:
            self._stopped(pid, signum)
        for child in ended:
            child.exited.set()
        return [ChildExited(child) for child in ended]

    def _stopped(self, pid: int, signum: int) -> None:
        """One of our children stopped: say so; give back a terminal it lacked."""
        child = self.children.get(pid)
        if child is None:
            return
        child.stopped = True
        log.warning(
            "child_stopped",
            pid=pid,
            signal=signal_name(signum),
            hint="it waits for SIGCONT; a stop request also continues it",
        )
        if signum in (signal.SIGTTIN, signal.SIGTTOU) and self.terminal.holder == pid:
            self.terminal.give(pid)

    def strays(self) -> list[int]:
        """Live children we did not start: descendants that left their group and
        were re-parented to us."""
        with self._lock:
            ours = set(self.children)
        return [pid for pid in children_of_self() if pid not in ours]

    def signal_strays(self, signum: int) -> list[int]:
        strays = self.strays()
        for pid in strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        return strays

    def kill_all(self) -> None:
        """SIGKILL whatever is still our child as we exit, and reap it.

        As PID 1 the kernel would kill them with the namespace; as a subreaper
        they would outlive us. A killed daemon's own children are re-parented
        to us in turn, so this goes on until none is left."""
        killed: list[int] = []
        deadline = time.monotonic() + KILL_WAIT
        while True:
            self.reap()
            # No child at all (the usual end): nothing to look for in /proc, whose
            # first read after a quiet spell costs a few hundred microseconds.
            left = [] if self.childless else children_of_self()
            if not left or time.monotonic() >= deadline:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
            time.sleep(GROUP_POLL_INTERVAL / 4)
        if killed:
            log.warning("stray_processes_killed", pids=killed)
        if left:
            log.error("stray_processes_survived_sigkill", pids=left)


_ENDING = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP})


def forward(child: Child | None, signum: int) -> None:
    """Relay a signal to the child's process group, if there is anything of it.

    A stopped COMMAND also gets SIGCONT after a signal that asks it to end, so that
    it can act on it before a grace period runs out."""
    if child is not None and child.alive:
        log.debug("signal_forwarded", signal=signal_name(signum), pid=child.pid)
        child.signal_group(signum)
        if child.stopped and signum in _ENDING:
            child.continue_group()


def describe_exit(child: Child) -> dict[str, Any]:
    """Log fields for a reaped child."""
    fields: dict[str, Any] = {"pid": child.pid, "exit_code": child.code}
    if child.signal is not None:
        fields["signal"] = signal_name(child.signal)
    fields["ran_for_s"] = round(child.ran_for, 3)
    return fields


def post_calls(loop: Loop, label: str, urls: tuple[str, ...], timeout: float, event: str) -> None:
    """POST every URL beside the loop; ``CallsDone(label)`` once all have answered or
    timed out. The loop goes on reaping and forwarding meanwhile."""
    from supervisor.probes import join_all, post_all  # noqa: PLC0415 - only HTTP calls need it

    def calls() -> None:
        try:
            join_all(post_all(urls, timeout, event=event), timeout)
        finally:
            loop.post(CallsDone(label))

    start_thread(calls, name=f"calls-{label}", report=loop.post)


class GroupStop:
    """Stop one child's whole process group, driven by the loop's events.

    The request goes in the documented order: the HTTP calls (beside the loop,
    answered or timed out), the stop command, the stop signal (with SIGCONT when
    COMMAND is stopped, so that it can act on it). ``grace`` seconds after ``start`` the group
    gets SIGKILL, whatever is still pending; ``KILL_WAIT`` later we give up on
    a process the kernel cannot kill. ``done`` is set when nothing of the group
    is left (or we gave up).
    """

    def __init__(
        self,
        procs: Processes,
        child: Child,
        *,
        grace: float,
        signum: int | None,
        http: tuple[str, ...] = (),
        command: tuple[str, ...] = (),
        label: str = "stop",
    ) -> None:
        self.procs = procs
        self.loop = procs.loop
        self.child = child
        self.grace = grace
        self.signum = signum
        self.http = http
        self.command = command
        self.label = label
        self.helper: Child | None = None
        self.killed = False
        self.done = False
        self.started = 0.0

    def _timer(self, what: str) -> str:
        return f"{self.label}:{what}"

    def start(self) -> None:
        self.started = time.monotonic()
        self.loop.set_timer(self._timer("grace"), self.started + self.grace)
        if self.http:
            # Each call keeps its own timeout; the grace timer kills whatever is pending.
            timeout = HTTP_TIMEOUT
            post_calls(self.loop, self.label, self.http, timeout, event="stop_http_sent")
        else:
            self._request()
        self._check_gone()

    def _request(self) -> None:
        """After the HTTP calls: the stop command, then the signal."""
        if self.command:
            try:
                self.helper = self.procs.spawn(self.command)
            except CommandError as exc:
                log.warning("stop_command_failed", error=str(exc))
        if self.signum is not None and self.child.alive:
            self.child.signal_group(self.signum)
            if self.child.stopped:  # it must be able to act on it
                self.child.continue_group()

    def handle(self, event: Event) -> bool:
        """Take the events that are this stop's; False for any other."""
        if self.done:
            return False
        if isinstance(event, CallsDone) and event.label == self.label:
            if not self.killed:
                self._request()
            return True
        if isinstance(event, ChildExited) and event.child in (self.child, self.helper):
            if event.child is self.helper:
                log.info("stop_command_exited", pid=event.child.pid, exit_code=event.child.code)
            else:
                self._check_gone()
            return True
        if isinstance(event, TimerFired):
            if event.name == self._timer("poll"):
                self._check_gone()
            elif event.name == self._timer("grace"):
                self._kill()
            elif event.name == self._timer("kill"):
                log.error("process_group_survived_sigkill", pid=self.child.pid)
                self._finish()
            else:
                return False
            return True
        return False

    def _kill(self) -> None:
        if not self.child.alive:
            self._finish()
            return
        log.warning(
            "grace_period_expired",
            pid=self.child.pid,
            grace_period=self.grace,
            action="SIGKILL to the process group",
        )
        self.killed = True
        self.child.signal_group(signal.SIGKILL)
        self.loop.set_timer(self._timer("kill"), time.monotonic() + KILL_WAIT)

    def _check_gone(self) -> None:
        if self.child.running:
            return  # its ChildExited will come
        if self.child.group_alive:
            # The rest of the group need not be our children, so nothing tells
            # us when it exits: look at a short pace while anything remains.
            self.loop.set_timer(self._timer("poll"), time.monotonic() + GROUP_POLL_INTERVAL)
            return
        self._finish()

    def _finish(self) -> None:
        self.done = True
        for what in ("grace", "poll", "kill"):
            self.loop.cancel(self._timer(what))
        helper = self.helper
        if helper is not None and helper.alive:
            helper.signal_group(signal.SIGKILL)  # reaped with the strays at exit

    @property
    def took_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)
