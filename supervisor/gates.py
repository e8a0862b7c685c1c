"""Gates: what must be ready before a role starts its COMMAND.

Both roles wait the same way (``--wait-ready``, and for the main
``--wait-http`` and ``--wait-tcp``): one prober thread checks the gates in
order and posts ``ProbeReady("gates")``; a loop timer bounds the wait with
``--ready-timeout``; ``--on-ready-timeout`` says whether a timeout opens the
gates anyway or fails. ``Gates.handle`` takes the events that are the gates'
own, like ``process.GroupStop``; the role looks at ``outcome`` afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from supervisor import log
from supervisor.events import Event, ProbeReady, ThreadFailed, TimerFired
from supervisor.markers import marker_path
from supervisor.signals import start_thread

if TYPE_CHECKING:
    from supervisor.config import MainConfig, SidecarConfig
    from supervisor.probes import Probe
    from supervisor.process import Processes

LABEL = "gates"
TIMER = "ready_timeout"
Outcome = Literal["open", "failed"]


def gate_probes(
    directory: Path,
    wait_ready: Iterable[str],
    wait_tcp: Iterable[str] = (),
    wait_http: Iterable[str] = (),
) -> tuple[Probe, ...]:
    """What must be ready before COMMAND starts, checked in this order.

    A ``--wait-ready`` gate is a peer's ``NAME.ready`` written for a COMMAND that
    runs now (probe kind ``ready``): one left by a wrapper that is gone does not
    open it."""
    wait_ready, wait_tcp, wait_http = tuple(wait_ready), tuple(wait_tcp), tuple(wait_http)
    if not (wait_ready or wait_tcp or wait_http):
        return ()
    from supervisor.probes import Probe  # noqa: PLC0415 - only gates need them

    return (
        *(Probe("ready", str(marker_path(directory, name, "ready"))) for name in wait_ready),
        *(Probe("tcp", target) for target in wait_tcp),
        *(Probe("http", url) for url in wait_http),
    )


class Gates:
    """Wait for ``probes``, at most ``timeout`` seconds, driven by the loop's events.

    ``outcome`` is None while waiting (or after ``close``), ``"open"`` once every gate passed (or
    the wait timed out with ``on_timeout="start"``), ``"failed"`` when it
    timed out with ``on_timeout="fail"`` or the prober thread died.
    """

    def __init__(
        self,
        procs: Processes,
        probes: tuple[Probe, ...],
        *,
        timeout: float,
        on_timeout: Literal["fail", "start"],
        interval: float,
        probe_timeout: float,
    ) -> None:
        self.procs = procs
        self.loop = procs.loop
        self.probes = probes
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.prober: threading.Event | None = None
        self.outcome: Outcome | None = None
        self.closed = False  # no longer waiting: late news is not the gates' any more
        self.nudge: threading.Event | None = None  # wakes the prober on a file event
        self.files_stop: threading.Event | None = None  # stops the file watcher

    @classmethod
    def of(
        cls, procs: Processes, probes: tuple[Probe, ...], config: MainConfig | SidecarConfig
    ) -> Gates:
        """The gates of a role's configuration (the options both roles share)."""
        return cls(
            procs,
            probes,
            timeout=config.ready_timeout,
            on_timeout=config.on_ready_timeout,
            interval=config.ready_interval,
            probe_timeout=config.probe_timeout,
        )

    @property
    def described(self) -> list[str]:
        return [str(p) for p in self.probes]

    def start(self) -> None:
        from supervisor.probes import start_prober  # noqa: PLC0415

        log.info("waiting_for_gates", gates=self.described, timeout=self.timeout)
        folders = tuple(sorted({Path(p.target).parent for p in self.probes if p.kind == "ready"}))
        if folders:
            # A peer's .ready is checked again on the file event that wrote it,
            # not only every --ready-interval.
            self.nudge = threading.Event()
            self._follow(folders, self.nudge)
        self.prober = start_prober(
            self.procs,
            self.probes,
            label=LABEL,
            interval=self.interval,
            timeout=self.probe_timeout,
            nudge=self.nudge,
        )
        self.loop.set_timer(TIMER, time.monotonic() + self.timeout)

    def _follow(self, folders: tuple[Path, ...], nudge: threading.Event) -> None:
        from supervisor.filewatch import GATE_PERIOD, follow_files  # noqa: PLC0415

        stop = self.files_stop = threading.Event()

        def follow() -> None:
            follow_files(folders, stop, nudge.set, GATE_PERIOD)

        def failed(event: Event) -> None:
            assert isinstance(event, ThreadFailed)
            # The prober still checks every --ready-interval.
            log.warning("file_watcher_failed", error=event.error, fallback="--ready-interval")

        start_thread(follow, name="gate-files", report=failed)

    def handle(self, event: Event) -> bool:
        """Take the events that are the gates' own; False for any other."""
        if self.closed:
            return False
        match event:
            case ProbeReady(label=label) if label == LABEL:
                log.info("gates_ready")
                self._over("open")
            case TimerFired(name=name) if name == TIMER:
                self._timed_out()
            case ThreadFailed(name=name, error=error) if name == f"probe-{LABEL}":
                log.error("thread_failed", thread=name, error=error)
                self._timed_out()  # the gates cannot open any more
            case _:
                return False
        return True

    def _timed_out(self) -> None:
        if self.on_timeout == "start":
            log.warning("ready_timeout", timeout=self.timeout, action="starting COMMAND anyway")
            self._over("open")
            return
        log.error(
            "ready_timeout",
            timeout=self.timeout,
            action="exit 1 without COMMAND",
            gates=self.described,
        )
        self._over("failed")

    def _over(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.close()

    def close(self) -> None:
        """Stop waiting: the timer and the prober thread."""
        self.closed = True
        self.loop.cancel(TIMER)
        if self.prober is not None:
            self.prober.set()
            self.prober = None
        if self.files_stop is not None:
            self.files_stop.set()
            self.files_stop = None
        if self.nudge is not None:
            self.nudge.set()  # the prober wakes and sees it must stop
