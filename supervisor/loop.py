"""The one event loop: a queue, a wake-up pipe and timers on an absolute schedule.

Signal handlers and helper threads put typed events (``supervisor.events``) on
the queue and write a byte to the pipe; ``Loop.run_until`` takes them in the
main thread and hands them to the role. Timers are part of the loop, not of a
quiet period: before every wait the loop fires each timer that is due, so a
periodic rescan keeps its pace however many other events arrive.

SIGCHLD is the loop's own business: it calls the reaper it was given and
dispatches what the reaper returns (``ChildExited``) instead.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import time
from collections.abc import Callable, Iterator

from supervisor.events import Event, Signal, TimerFired
from supervisor.signals import captured

Handler = Callable[[Event], None]
# select() takes a timeout in a C long of microseconds at most; longer waits
# are cut into pieces (the loop then just looks at its timers again).
MAX_WAIT = 86_400.0


class Loop:
    """One queue for every signal, file event, lock release, probe result and timer."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        # A byte here wakes the loop: from post() (helper threads) and from the
        # kernel-level signal handler (signal.set_wakeup_fd, see signals.captured).
        self._wake_r, self.wakeup_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._timers: dict[str, float] = {}  # name -> when (time.monotonic())
        self._periods: dict[str, float] = {}  # name -> interval, for periodic timers
        self.reaper: Callable[[], list[Event]] = list

    # --- posting -------------------------------------------------------------

    def post(self, event: Event) -> None:
        """Queue an event from any thread and wake the loop."""
        self.events.put(event)
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            os.write(self.wakeup_fd, b"\0")

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
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 512):
                pass
        try:
            return self.events.get_nowait()
        except queue.Empty:
            return None

    def run_until(
        self, done: Callable[[], bool], handle: Handler, deadline: float | None = None
    ) -> bool:
        """Dispatch events and due timers until ``done()``; False if ``deadline`` passed first."""
        while not done():
            now = time.monotonic()
            due = self._due(now)
            for name in due:
                handle(TimerFired(name))
            if due:
                continue  # a timer may have ended the wait
            if deadline is not None and now >= deadline:
                return False
            wake = [*self._timers.values(), *([] if deadline is None else [deadline])]
            timeout = min(MAX_WAIT, max(0.0, min(wake) - now)) if wake else MAX_WAIT
            event = self._next(timeout)
            if event is None:
                continue
            if isinstance(event, Signal) and event.signum == signal.SIGCHLD:
                for exited in self.reaper():
                    handle(exited)
            else:
                handle(event)
        return True

    def close(self) -> None:
        for fd in (self._wake_r, self.wakeup_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def signal_loop(*, restore: bool = True) -> Iterator[Loop]:
    """A Loop that every caught signal reaches; see ``signals.captured`` for ``restore``."""
    loop = Loop()
    try:
        with captured(loop.post, loop.wakeup_fd, restore=restore):
            yield loop
    finally:
        if restore:  # otherwise the handlers still write to its wake-up pipe
            loop.close()
