"""The one event loop: a queue, signals taken with ``sigtimedwait``, and timers on
an absolute schedule.

The main thread blocks every caught signal (``signals.captured``) and sleeps in
``sigtimedwait`` on them: a signal wakes it as a return value, with no handler
to run. Helper threads put typed events (``supervisor.events``) on the queue
and ring the loop with a SIGCHLD aimed at the main thread (``pthread_kill``);
SIGCHLD already means "look": the loop reaps, then takes what is queued. A
signal or an event that comes just before the loop goes to sleep is pending, so
``sigtimedwait`` returns at once: no wake-up is lost. ``Loop.run_until`` hands
every event to the role. Timers are part of the loop, not of a quiet period:
before every wait the loop fires each timer that is due, so a periodic rescan
keeps its pace however many other events arrive.

SIGCHLD is the loop's own business: it calls the reaper it was given and
dispatches what the reaper returns (``ChildExited``) instead. A burst of exits
is one wake-up and one reaping pass.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from supervisor import log
from supervisor.events import Event, Signal, TimerFired
from supervisor.signals import captured

Handler = Callable[[Event], None]
# The longest single wait; longer ones are cut into pieces (the loop then just
# looks at its timers again).
MAX_WAIT = 86_400.0
_SIGCHLD = signal.SIGCHLD


class Loop:
    """One queue for every signal, file event, lock release, probe result and timer."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._timers: dict[str, float] = {}  # name -> when (time.monotonic())
        self._periods: dict[str, float] = {}  # name -> interval, for periodic timers
        self.reaper: Callable[[], list[Event]] = list
        # The thread that runs the loop (signals only ever reach the main one),
        # and the signals it takes (signal_loop sets them; SIGCHLD at least).
        main = threading.main_thread().ident
        assert main is not None, "the main thread has started"
        self._thread = main
        self.signals: Iterable[int] = (_SIGCHLD,)

    # --- posting -------------------------------------------------------------

    def post(self, event: Event) -> None:
        """Queue an event from any thread and wake the loop."""
        self.events.put(event)
        signal.pthread_kill(self._thread, _SIGCHLD)

    # --- timers --------------------------------------------------------------

    def set_timer(self, name: str, when: float) -> None:
        """Fire ``TimerFired(name)`` once at ``when`` (monotonic); replaces one of that name."""
        self._timers[name] = when
        self._periods.pop(name, None)

    def every(self, name: str, interval: float) -> None:
        """Fire ``TimerFired(name)`` every ``interval`` seconds from now, on a fixed grid."""
        self._timers[name] = time.monotonic() + interval
        self._periods[name] = interval

    def cancel(self, name: str) -> None:
        self._timers.pop(name, None)
        self._periods.pop(name, None)

    def pending(self, name: str) -> bool:
        return name in self._timers

    def _due(self, now: float) -> list[str]:
        """Names of the timers due at ``now``, rescheduling the periodic ones."""
        due = [name for name, when in self._timers.items() if when <= now]
        for name in due:
            interval = self._periods.get(name)
            if interval is None:
                del self._timers[name]
                continue
            when = self._timers[name] + interval
            if when <= now:  # we were away for more than a period: skip, keep the grid
                when += interval * ((now - when) // interval + 1)
            self._timers[name] = when
        return due

    # --- waiting -------------------------------------------------------------

    def run_until(
        self, done: Callable[[], bool], handle: Handler, deadline: float | None = None
    ) -> bool:
        """Dispatch events and due timers until ``done()``; False if ``deadline`` passed first."""
        events, timers = self.events, self._timers
        while not done():
            now = time.monotonic()
            if timers:
                due = self._due(now)
                if due:
                    log.hold()
                    try:
                        for name in due:
                            handle(TimerFired(name))
                    finally:
                        log.flush()
                    continue  # a timer may have ended the wait
            if deadline is not None and now >= deadline:
                return False
            if not events.empty():
                info = signal.sigtimedwait(self.signals, 0.0)  # a pending signal first
            elif timers or deadline is not None:
                wake = min(timers.values(), default=now + MAX_WAIT)
                if deadline is not None:
                    wake = min(wake, deadline)
                info = signal.sigtimedwait(self.signals, min(MAX_WAIT, max(0.0, wake - now)))
            else:  # nothing but signals to wait for: no timer to arm either
                info = signal.sigwaitinfo(self.signals)
            log.hold()  # the event's lines go out after what it calls for is done
            try:
                if info is not None:
                    self._signal(info.si_signo, handle)
                elif not events.empty():
                    event = events.get_nowait()
                    if isinstance(event, Signal):
                        self._signal(event.signum, handle)
                    else:
                        handle(event)
            finally:
                log.flush()
        return True

    def _signal(self, signum: int, handle: Handler) -> None:
        if signum == _SIGCHLD:  # a child, or a helper thread ringing: reap
            for exited in self.reaper():
                handle(exited)
        elif signal.getsignal(signum) is not signal.SIG_IGN:  # SIGTTIN/SIGTTOU on a terminal
            handle(Signal(signum))

    def close(self) -> None:
        """Nothing to release: the loop holds no file descriptor."""


@contextlib.contextmanager
def signal_loop(*, restore: bool = True) -> Iterator[Loop]:
    """A Loop that every caught signal reaches; see ``signals.captured`` for ``restore``."""
    loop = Loop()
    with captured(loop.post, restore=restore) as loop.signals:
        yield loop
