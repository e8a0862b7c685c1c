"""Signals in, signals out: every catchable signal becomes an event on the loop.

The main thread blocks every caught signal and the loop takes them with
``sigtimedwait`` (``loop.py``): a signal is a return value there, not an
interruption, so a burst of SIGCHLD costs one wake-up and no handler frames.
The role decides what each means (forward it, start a stop, reap). Signals are
blocked before the child exists, so a signal that arrives early waits, pending
in the kernel, and the mask and dispositions are restored on exit, so the roles
can run inside a test process.

Every caught signal also gets a Python handler that posts ``Signal(signum)``:
only a thread that does not block it (none of ours) would ever run it, and it
keeps every disposition off SIG_IGN (an ignored SIGCHLD would make the kernel
reap our children itself) and off a default that terminates.

The fault signals (SEGV, BUS, FPE, ILL, TRAP, SYS) are taken by the same
wait but keep their default disposition, with no handler: one that the
supervisor's own code raises is forced through by the kernel (a blocked fault
is unblocked and reset to its default), so it kills the supervisor as it would
any program, while the same signal sent by another process (``kill -SEGV``)
waits, pending, for the loop and is forwarded like any other, as tini does. No
thread is kept for them: every thread a process has must be woken to end it, so
a second thread would delay the kernel's release of the main's lock when its
container is killed.

Helper threads are started with every caught signal blocked, so the kernel
leaves process-directed signals to the main thread. A helper that raises is
reported to the loop as ``ThreadFailed``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from supervisor.events import Event, Signal, ThreadFailed

# Never caught: the uncatchable ones; SIGCHLD is caught but only to reap; SIGURG
# is sent by runtimes (Go's preemption) and must not be relayed; SIGPIPE is the
# supervisor's own (a write to a closed pipe) and stays ignored.
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
_NEVER_FORWARDED = {signal.SIGCHLD, signal.SIGURG, signal.SIGPIPE}
FAULTS: frozenset[int] = frozenset(
    int(s)
    for s in (
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGTRAP,
        signal.SIGSYS,
    )
)
_ALL = frozenset(int(s) for s in signal.valid_signals())
FORWARDED: frozenset[int] = _ALL - {int(s) for s in _UNCATCHABLE | _NEVER_FORWARDED}
HANDLED: frozenset[int] = (FORWARDED - FAULTS) | {int(signal.SIGCHLD)}
CAUGHT: frozenset[int] = HANDLED | FAULTS
# COMMAND starts with every disposition at its default, whatever the supervisor
# inherited (an ignored SIGTERM or SIGHUP from a launcher must not reach it).
CHILD_DEFAULTS: frozenset[int] = _ALL - {int(s) for s in _UNCATCHABLE}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


@contextlib.contextmanager
def captured(post: Callable[[Event], None], *, restore: bool = True) -> Iterator[frozenset[int]]:
    """Block every caught signal in this thread (the main one) and yield the set
    its loop waits for with ``sigtimedwait``: fault signals included.

    ``restore=False`` leaves them blocked: for a process that exits right after,
    where a signal's default action (a flood, a second SIGTERM) would otherwise
    replace the exit status the supervisor chose.
    """

    def handler(signum: int, _frame: object) -> None:
        # Only a thread that does not block it runs this. NO logging, waiting or
        # killing here: just queue the signal.
        post(Signal(signum))

    previous: dict[int, Any] = {}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)
    try:
        for signum in sorted(HANDLED):
            try:
                previous[signum] = signal.signal(signum, handler)
            except (OSError, ValueError):
                continue
        yield CAUGHT
    finally:
        if restore:
            # What is still pending was never taken: drop it rather than let
            # the old dispositions act on it once unblocked.
            while signal.sigtimedwait(CAUGHT, 0) is not None:
                pass
            for signum, old in previous.items():
                signal.signal(signum, old)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def start_thread(
    target: Callable[[], None],
    name: str,
    report: Callable[[Event], None] | None = None,
) -> threading.Thread:
    """Start a daemon thread that never receives the process's signals.

    An exception that escapes ``target`` is posted as ``ThreadFailed(name, ...)``
    through ``report``; the thread's owner decides what it means.
    """

    def supervised() -> None:
        try:
            target()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none is lost
            if report is not None:
                report(ThreadFailed(name, f"{type(exc).__name__}: {exc}"))

    thread = threading.Thread(target=supervised, name=name, daemon=True)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)
    try:
        thread.start()  # the new thread inherits the blocked mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return thread
