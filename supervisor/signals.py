"""Signals in, signals out: capture everything catchable onto the event queue.

The handlers do nothing but put the signal number on the queue; the role's loop
decides what each means (forward it, start a stop, reap). Handlers are installed
before the child exists, so a signal that arrives early waits in the queue, and
they are restored on exit, so the roles can run inside a test process.

Helper threads are started with every caught signal blocked: the kernel then
delivers process-directed signals to the main thread, which is the one that
runs Python handlers and blocks on the queue.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

# Never caught: uncatchable ones; SIGCHLD is caught but only to reap; SIGURG is
# sent by runtimes (Go's preemption) and must not be relayed; the synchronous
# faults are the supervisor's own and cannot be meaningfully forwarded.
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
_NEVER_FORWARDED = {signal.SIGCHLD, signal.SIGURG}
_SYNCHRONOUS = {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGSYS,
    signal.SIGPIPE,
}

_EXCLUDED = {int(s) for s in _UNCATCHABLE | _NEVER_FORWARDED | _SYNCHRONOUS}
FORWARDED: frozenset[int] = frozenset(int(s) for s in signal.valid_signals()) - _EXCLUDED
CAUGHT: frozenset[int] = FORWARDED | {int(signal.SIGCHLD)}
# Reset to default in the child: all we catch, plus what Python sets to "ignore".
CHILD_DEFAULTS: frozenset[int] = CAUGHT | {int(signal.SIGPIPE), int(signal.SIGXFSZ)}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


@contextlib.contextmanager
def captured(
    events: queue.SimpleQueue[Any], wakeup_fd: int, *, restore: bool = True
) -> Iterator[None]:
    """Put ``("signal", signum)`` on ``events`` for every caught signal.

    The kernel-level handler also writes a byte to ``wakeup_fd``, so a loop
    blocked in ``select`` on it wakes up even when the signal arrived just
    before it went to sleep (a blocking ``queue.get`` would miss that one).

    ``restore=False`` leaves the handlers in place: for a process that exits
    right after, where a signal's default action (a flood, a second SIGTERM)
    would otherwise replace the exit status the supervisor chose.
    """

    def handler(signum: int, _frame: object) -> None:
        # NO logging, waiting or killing here: just queue the signal.
        events.put(("signal", signum))

    previous: dict[int, Any] = {}
    old_wakeup = signal.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False)
    try:
        for signum in sorted(CAUGHT):
            try:
                previous[signum] = signal.signal(signum, handler)
            except (OSError, ValueError):
                continue
        yield
    finally:
        if restore:
            for signum, old in previous.items():
                signal.signal(signum, old)
            signal.set_wakeup_fd(old_wakeup)


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread that never receives the process's signals."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)
    try:
        thread.start()  # the new thread inherits the blocked mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return thread
