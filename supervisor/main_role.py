"""The ``main`` role: run the workload and always leave a completion record.

Order of work: take ``NAME.lock``, remove a stale ``NAME.done``, write
``NAME.started`` (attempt + 1), wait at the gates (``--wait-ready``,
``--wait-http``, ``--wait-tcp``), run COMMAND with every signal forwarded to
its process group, write ``NAME.done`` the moment it ends, release the lock
(the sidecars wake on that), then, beside each other, send the ``--quit-http``
calls and stop what is left of COMMAND's process group; exit with COMMAND's
status (128+N for a death by signal N).

One transition function (``Main.on_event``) takes every event in every phase:
GATES, RUNNING, ENDING (quit calls and leftovers), EXITED.
"""

from __future__ import annotations

import enum
import signal
import time
from typing import assert_never

from supervisor import __version__, log
from supervisor.cgroup import OomWatch
from supervisor.config import MainConfig
from supervisor.errors import CommandError
from supervisor.events import (
    CallsDone,
    ChildExited,
    Event,
    LivenessFailed,
    ProbeReady,
    Signal,
    SourceChanged,
    ThreadFailed,
    TimerFired,
)
from supervisor.gates import Gates, Outcome, gate_probes
from supervisor.loop import Loop, signal_loop
from supervisor.process import (
    HTTP_TIMEOUT,
    Child,
    GroupStop,
    Processes,
    describe_exit,
    forward,
    post_calls,
)
from supervisor.records import OwnRecords, exiting
from supervisor.signals import signal_name


class Phase(enum.Enum):
    GATES = "gates"
    RUNNING = "running"
    ENDING = "ending"
    EXITED = "exited"


TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.GATES: frozenset({Phase.RUNNING, Phase.ENDING, Phase.EXITED}),
    Phase.RUNNING: frozenset({Phase.ENDING, Phase.EXITED}),
    Phase.ENDING: frozenset({Phase.EXITED}),
    Phase.EXITED: frozenset(),
}


def run(config: MainConfig, *, restore_signals: bool = True) -> int:
    with signal_loop(restore=restore_signals) as loop:
        return Main(config, loop).run()


class Main:
    def __init__(self, config: MainConfig, loop: Loop) -> None:
        self.config = config
        self.loop = loop
        self.procs = Processes(loop)
        self.records = OwnRecords(config.dir, config.name)
        self.phase = Phase.GATES
        self.child: Child | None = None
        self.oom = OomWatch()
        self.early_signals: list[int] = []  # delivered to COMMAND once it runs
        self.gates: Gates | None = None
        self.leftover: GroupStop | None = None
        self.calls_pending = False
        # The outcome: exit status and the termination log's line.
        self.code = 0
        self.summary = ""

    def _enter(self, phase: Phase) -> None:
        assert phase in TRANSITIONS[self.phase], f"{self.phase.name} -> {phase.name}"
        self.phase = phase

    def run(self) -> int:
        config = self.config
        probes = gate_probes(config.dir, config.wait_ready, config.wait_tcp, config.wait_http)
        self.records.prepare()
        log.info(
            "supervisor_started",
            version=__version__,
            dir=str(config.dir),
            gates=[str(p) for p in probes],
            ready_timeout=config.ready_timeout if probes else None,
            quit_http=list(config.quit_http),
            stop_on=config.stop_on,
            grace_period=config.grace_period,
            command=list(config.command),
        )
        gates = [*config.wait_ready, *config.wait_tcp, *config.wait_http]
        self.records.begin_attempt(role="main", gates=gates or None)
        try:
            if probes:
                self.gates = Gates.of(self.procs, probes, config)
                self.gates.start()
            else:
                self._start()
            self.loop.run_until(lambda: self.phase is Phase.EXITED, self.on_event)
        finally:
            self.records.close()
        self.procs.kill_all()
        return exiting(
            self.config.termination_log, (self.config.name, "main"), self.summary, self.code
        )

    def on_event(self, event: Event) -> None:
        """The transition function: every event, in every phase, comes here."""
        if self.leftover is not None and self.leftover.handle(event):
            self._end_if_over()
            return
        if self.gates is not None and self.gates.handle(event):
            if self.gates.outcome is not None:
                self._gates_over(self.gates.outcome)
            return
        match event:
            case Signal(signum=signum):
                self._on_signal(signum)
            case ChildExited(child=child):
                if child is self.child and self.phase is Phase.RUNNING:
                    self._child_exited(child)
            case TimerFired(name="calls"):
                if self.calls_pending:
                    log.warning("http_call_abandoned", thread="quit", timeout=HTTP_TIMEOUT)
                    self.calls_pending = False
                    self._end_if_over()
            case TimerFired():
                pass
            case ProbeReady() | LivenessFailed():
                pass
            case CallsDone(label="quit"):
                self.calls_pending = False
                self._end_if_over()
            case CallsDone():
                pass
            case ThreadFailed(name=name, error=error):
                log.error("thread_failed", thread=name, error=error)
            case SourceChanged():
                pass
            case _:
                assert_never(event)

    # --- gates ---------------------------------------------------------------------

    def _gates_over(self, outcome: Outcome) -> None:
        if outcome == "open":
            self._start()
            return
        self._not_started(
            1,
            "ReadyTimeout",
            f"not ready after {self.config.ready_timeout} s; COMMAND not started",
        )

    def _close_gates(self) -> None:
        if self.gates is not None:
            self.gates.close()
            self.gates = None
            self.records.update_started(gates=None)  # no longer waiting there

    def _not_started(self, code: int, reason: str, summary: str) -> None:
        """COMMAND will not run: record it as failed and tell the sidecars."""
        self._close_gates()
        self.records.done(code, None, reason)
        self.code, self.summary = code, summary
        self._end(failed=True)

    # --- COMMAND -------------------------------------------------------------------

    def _start(self) -> None:
        self._close_gates()
        config = self.config
        try:
            self.child = child = self.procs.spawn(config.command, terminal=True)
        except CommandError as exc:
            log.error("child_start_failed", command=list(config.command), error=str(exc))
            self._not_started(exc.exit_code, exc.reason, f"COMMAND could not start: {exc}")
            return
        self._enter(Phase.RUNNING)
        self.oom.child_started()
        log.info(
            "child_started",
            pid=child.pid,
            command=list(config.command),
            attempt=self.records.attempt,
        )
        for signum in self.early_signals:
            forward(child, signum)
        self.records.prepare_done()

    def _on_signal(self, signum: int) -> None:
        if self.phase is Phase.GATES:
            if signum in (signal.SIGTERM, signal.SIGINT):
                name = signal_name(signum)
                log.info("stopped_before_start", signal=name)
                self._not_started(128 + signum, "Terminated", f"{name} before COMMAND started")
            else:
                self.early_signals.append(signum)
            return
        forward(self.child, signum)

    def _child_exited(self, child: Child) -> None:
        reason = self.oom.reason(child)
        self.records.done(child.exit_code, child.signal, reason)
        log.log(
            "info" if child.code == 0 else "warning",
            "child_exited",
            reason=reason,
            **describe_exit(child),
        )
        self.code, self.summary = child.code, f"COMMAND exited with status {child.code}"
        self._end(failed=child.code != 0)

    # --- the end -----------------------------------------------------------------

    def _end(self, *, failed: bool) -> None:
        """The record is written: quit calls and leftovers, beside each other."""
        self._enter(Phase.ENDING)
        config = self.config
        if config.quit_http:
            if failed and config.stop_on == "success":
                log.info("quit_skipped", why="--stop-on success and COMMAND failed")
            else:
                self.calls_pending = True
                post_calls(
                    self.loop, "quit", config.quit_http, HTTP_TIMEOUT, event="quit_http_sent"
                )
                # join_all in the thread is bounded too; this is the loop's own bound
                self.loop.set_timer("calls", time.monotonic() + HTTP_TIMEOUT + 1.0)
        child = self.child
        if child is not None and child.group_alive:
            log.info(
                "stop_requested",
                why="COMMAND exited; its process group lives on",
                signal="SIGTERM",
                grace_period=config.grace_period,
            )
            self.leftover = GroupStop(
                self.procs, child, grace=config.grace_period, signum=signal.SIGTERM
            )
            self.leftover.start()
        self._end_if_over()

    def _end_if_over(self) -> None:
        if self.phase is not Phase.ENDING or self.calls_pending:
            return
        if self.leftover is not None and not self.leftover.done:
            return
        self.loop.cancel("calls")
        self._enter(Phase.EXITED)
