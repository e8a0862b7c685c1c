"""The ``sidecar`` role: run the helper until what it serves has completed.

The life cycle is one enum and one transition function (``Sidecar.on_event``)
that every event goes through, in every phase:

- STARTING: ``NAME.lock`` taken; if the awaited containers have already
  completed (a restarted sidecar container), exit 0 without starting COMMAND.
- GATES: with ``--wait-ready``, COMMAND waits for those sidecars' ``.ready``
  (``gates.Gates``, as the main's do). Completion meanwhile ends the sidecar
  as in STARTING; SIGTERM/SIGINT ends it at once (nothing to hold up).
- RUNNING: COMMAND runs; its readiness probes run with it and write
  ``NAME.ready`` for this very child. Once it is ready, its liveness probes
  (``--live-*``) run with it; ``--live-failures`` failures in a row stop it
  and restart it as a crash would (BACKOFF). SIGTERM/SIGINT start the term-hold.
- HOLDING: RUNNING after a SIGTERM, until the awaited containers complete, the
  ``--term-hold`` runs out, or a second SIGTERM arrives.
- BACKOFF: COMMAND ended before completion; ``NAME.ready`` is gone, what is
  left of its process group (and strays that left it) is stopped, and a
  restart follows per ``--restart`` with exponential backoff.
- DELAYING: completion seen; ``--stop-delay`` runs. A SIGTERM (``docker stop``
  and pod deletion signal every container at once) is noted, not obeyed: only
  a second one cuts the delay.
- STOPPING: the stop runs (``process.GroupStop``): ``--stop-http`` calls beside
  the loop, ``--stop-command``, the stop signal, ``--grace-period``, SIGKILL.
- EXITED: ``NAME.done`` is written and the exit status chosen (``--exit-code``).
"""

from __future__ import annotations

import enum
import os
import shlex
import signal
import threading
import time
from typing import assert_never

from supervisor import __version__, log
from supervisor.cgroup import OomWatch
from supervisor.config import SidecarConfig
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
from supervisor.gates import Gates, gate_probes
from supervisor.loop import Loop, signal_loop
from supervisor.probes import Probe, probe_set, start_liveness, start_prober
from supervisor.process import Child, GroupStop, Processes, describe_exit, forward
from supervisor.records import OwnRecords, exiting
from supervisor.signals import signal_name
from supervisor.watch import CompletionWatcher

# Restart backoff: 1 s, doubling to 30 s; a run of STABLE_RUN seconds resets it.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
STABLE_RUN = 10.0

HOLD_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Phase(enum.Enum):
    STARTING = "starting"
    GATES = "gates"
    RUNNING = "running"
    HOLDING = "holding"
    BACKOFF = "backoff"
    DELAYING = "delaying"
    STOPPING = "stopping"
    EXITED = "exited"


# Where each phase may go; ``Sidecar._enter`` asserts it.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.STARTING: frozenset({Phase.GATES, Phase.RUNNING, Phase.EXITED}),
    Phase.GATES: frozenset({Phase.RUNNING, Phase.EXITED}),
    Phase.RUNNING: frozenset(
        {Phase.HOLDING, Phase.BACKOFF, Phase.DELAYING, Phase.STOPPING, Phase.EXITED}
    ),
    Phase.HOLDING: frozenset({Phase.BACKOFF, Phase.DELAYING, Phase.STOPPING, Phase.EXITED}),
    Phase.BACKOFF: frozenset({Phase.RUNNING, Phase.HOLDING, Phase.STOPPING, Phase.EXITED}),
    Phase.DELAYING: frozenset({Phase.STOPPING}),
    Phase.STOPPING: frozenset({Phase.EXITED}),
    Phase.EXITED: frozenset(),
}
_CHILD_UP = (Phase.RUNNING, Phase.HOLDING)


def readiness_probes(config: SidecarConfig) -> tuple[Probe, ...]:
    return probe_set(
        file=config.ready_file,
        tcp=config.ready_tcp,
        http=config.ready_http,
        command=config.ready_command,
    )


def liveness_probes(config: SidecarConfig) -> tuple[Probe, ...]:
    return probe_set(tcp=config.live_tcp, http=config.live_http, command=config.live_command)


def run(config: SidecarConfig, *, restore_signals: bool = True) -> int:
    with signal_loop(restore=restore_signals) as loop:
        return Sidecar(config, loop).run()


def backoff_delay(failures: int) -> float:
    """Seconds to wait before restart number ``failures + 1`` of a quick run."""
    return float(min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** min(failures, 16)))


class Sidecar:
    def __init__(self, config: SidecarConfig, loop: Loop) -> None:
        self.config = config
        self.loop = loop
        self.procs = Processes(loop)
        self.records = OwnRecords(config.dir, config.name)
        self.watcher = CompletionWatcher(
            loop,
            config.dir,
            config.wait_for,
            markers=config.marker,
            mode=config.wait_mode,
            stop_on_success=config.stop_on == "success",
            process=config.watch_process,
            process_timeout=config.process_timeout,
            start_timeout=config.start_timeout,
            poll_interval=config.poll_interval,
        )
        self.phase = Phase.STARTING
        self.why = ""  # what ended the wait, once it has ended
        self.child: Child | None = None
        self.generation = 0  # one per child started; probes name theirs
        self.term_noted = False  # a SIGTERM/SIGINT was noted (hold or delay)
        self.failures = 0
        self.restarts = 0
        self.restart_due = False
        self.probes = readiness_probes(config)
        self.prober: threading.Event | None = None
        self.live_probes = liveness_probes(config)
        self.liveness: threading.Event | None = None  # the running child's liveness prober
        self.gates: Gates | None = None  # in GATES
        self.early_signals: list[int] = []  # arrived with no COMMAND running; for the next
        self.leftover: GroupStop | None = None  # the previous child's group, in BACKOFF
        self.stopper: GroupStop | None = None  # the stop, in STOPPING
        self.oom = OomWatch()

    # --- the life cycle ---------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        assert phase in TRANSITIONS[self.phase], f"{self.phase.name} -> {phase.name}"
        log.debug("phase", previous=self.phase.value, phase=phase.value)
        self.phase = phase

    def run(self) -> int:
        self.records.prepare()
        self._log_config()
        try:
            self.watcher.check(woken_by="start", watch_files=False)
            if self.watcher.satisfied:
                return self._already_complete()
            self.records.begin_attempt(
                role="sidecar",
                waits_for=list(self.config.wait_for),
                gates=list(self.config.wait_ready) or None,
            )
            if self.config.wait_ready:
                self.watcher.watch_files()  # the main may finish while we wait
            ended = self._at_gates()
            if ended is not None:
                return ended
            try:
                self._start_child()
            except CommandError as exc:
                log.error("child_start_failed", command=list(self.config.command), error=str(exc))
                self.records.done(exc.exit_code, None, exc.reason)
                return self._exit(exc.exit_code, f"COMMAND could not start: {exc}")
            self.watcher.watch_files()  # COMMAND first: it is what the pod waits for
            self.loop.run_until(lambda: self.phase is Phase.EXITED, self.on_event)
            return self._finish()
        finally:
            self.watcher.close()
            self._stop_probers()

    def _log_config(self) -> None:
        """The effective configuration, first: what a reader of a hung Job needs."""
        config = self.config
        log.info(
            "supervisor_started",
            version=__version__,
            dir=str(config.dir),
            waits_for=list(config.wait_for),
            markers=[str(m) for m in config.marker],
            process=config.watch_process,
            wait_mode=config.wait_mode,
            stop_on=config.stop_on,
            start_timeout=config.start_timeout,
            term_hold=config.term_hold,
            stop_delay=config.stop_delay,
            stop_actions=self._stop_actions(),
            grace_period=config.grace_period,
            ready_probes=[str(p) for p in self.probes],
            restart=config.restart,
            exit_code=config.exit_policy,
            command=list(config.command),
        )

    def on_event(self, event: Event) -> None:
        """The transition function: every event, in every phase, comes here."""
        if self.watcher.handle(event):
            if self.watcher.satisfied:
                self._completed()
            return
        if self.leftover is not None and self.leftover.handle(event):
            if self.leftover.done:
                self._leftover_gone()
            return
        if self.stopper is not None and self.stopper.handle(event):
            if self.stopper.done:
                self._stopped()
            return
        if self.gates is not None and self.gates.handle(event):
            return  # _at_gates looks at the outcome
        match event:
            case Signal(signum=signum):
                self._on_signal(signum)
            case ChildExited(child=child):
                if child is self.child:
                    self._on_child_exited(child)
            case TimerFired(name=name):
                self._on_timer(name)
            case ProbeReady(generation=generation):
                if self.phase in _CHILD_UP and generation == self.generation:
                    self._ready()
            case LivenessFailed(generation=generation, probe=probe, last=last, failures=failures):
                if self.phase in _CHILD_UP and generation == self.generation:
                    self._liveness_failed(probe, last, failures)
            case ThreadFailed(name=name, error=error):
                log.error("thread_failed", thread=name, error=error, consequence=_consequence(name))
            case CallsDone() | SourceChanged():
                pass  # late news for a stop or a source that is over
            case _:
                assert_never(event)

    def _on_signal(self, signum: int) -> None:
        if signum not in HOLD_SIGNALS and self.phase in (Phase.GATES, Phase.BACKOFF):
            self.early_signals.append(signum)  # for the next COMMAND, as the main does
            return
        if signum not in HOLD_SIGNALS or self.phase is Phase.STOPPING:
            forward(self.child if self.stopper is None else self.stopper.child, signum)
            return
        name = signal_name(signum)
        holds = self.config.term_hold > 0 and not self.term_noted
        if self.phase in (Phase.RUNNING, Phase.BACKOFF) and holds:
            self.term_noted = True
            self.loop.set_timer("hold", time.monotonic() + self.config.term_hold)
            if self.phase is Phase.RUNNING:
                self._enter(Phase.HOLDING)
            log.info(
                "term_hold_started",
                signal=name,
                term_hold=self.config.term_hold,
                waiting_for=self.watcher.labels,
                then="a second SIGTERM or SIGINT stops at once",
            )
        elif self.phase is Phase.DELAYING and holds:
            self.term_noted = True
            log.info(
                "stop_signal_noted",
                signal=name,
                phase="stop delay",
                then="the stop follows the delay; a second SIGTERM or SIGINT stops at once",
            )
        else:
            log.info("stop_signal_received", signal=name)
            self._stop("signal")

    def _on_child_exited(self, child: Child) -> None:
        if self.phase is Phase.DELAYING:
            self._stop(self.why)  # nothing left to wait for
            return
        if self.phase not in _CHILD_UP:
            return
        reason = self.oom.reason(child)
        log.log(
            "info" if child.code == 0 else "warning",
            "child_exited",
            before_completion=True,
            reason=reason,
            **describe_exit(child),
        )
        policy = self.config.restart
        # Ctrl-C on a terminal goes to COMMAND's group, which holds the terminal: the
        # person at it wants the sidecar to end, not a restart.
        interrupted = child.signal == signal.SIGINT and self.procs.terminal.holder == child.pid
        if interrupted:
            log.info("interrupted", pid=child.pid, action="no restart: Ctrl-C on the terminal")
        if interrupted or policy == "never" or (policy == "on-failure" and child.code == 0):
            self.why = "child_exited"
            self._enter(Phase.EXITED)
            return
        if child.ran_for >= STABLE_RUN:
            self.failures = 0
        self._backoff(reason)

    def _backoff(self, reason: str, **details: object) -> None:
        """Plan a restart; stop what is left of the previous child first. Its probes
        and its ``.ready`` go with it: no gate may open on a child that is gone."""
        self._stop_probers()
        self.records.unready()
        delay = backoff_delay(self.failures)
        self.failures += 1
        self.restarts += 1
        self._enter(Phase.BACKOFF)
        self.restart_due = False
        self.loop.set_timer("restart", time.monotonic() + delay)
        log.warning(
            "child_restarting", restart=self.restarts, reason=reason, delay=delay, **details
        )
        old = self.child
        self.child = None
        if old is not None and old.alive:
            log.info("leftovers_stopping", pid=old.pid, grace_period=self.config.grace_period)
            self.leftover = GroupStop(
                self.procs,
                old,
                grace=self.config.grace_period,
                signum=self.config.stop_signal or signal.SIGTERM,
                label="leftover",
            )
            self.leftover.start()
        self.procs.signal_strays(signal.SIGTERM)

    def _leftover_gone(self) -> None:
        self.leftover = None
        if self.phase is Phase.STOPPING:  # the stop was waiting for it
            self._stopped()
        else:
            self._restart_if_due()

    def _restart_if_due(self) -> None:
        if self.phase is not Phase.BACKOFF or not self.restart_due or self.leftover is not None:
            return
        killed = self.procs.signal_strays(signal.SIGKILL)
        if killed:
            log.warning("stray_processes_killed", pids=killed, why="before the restart")
        try:
            self._start_child()
        except CommandError as exc:
            log.error("child_start_failed", command=list(self.config.command), error=str(exc))
            self._backoff("StartFailed")

    def _on_timer(self, name: str) -> None:
        if name == "restart":
            self.restart_due = True
            self._restart_if_due()
        elif name == "hold":
            log.info("term_hold_expired", waited_for=self.watcher.labels)
            self._stop("term_hold_expired")
        elif name == "delay" and self.phase is Phase.DELAYING:
            self._stop(self.why)

    def _completed(self) -> None:
        """The awaited containers have completed: delay, then stop."""
        if self.phase not in (*_CHILD_UP, Phase.BACKOFF):
            return
        self.why = "completed"
        if self.phase in _CHILD_UP and self.config.stop_delay > 0:
            self._stop_probers()
            self._enter(Phase.DELAYING)
            self.loop.cancel("hold")
            self.loop.set_timer("delay", time.monotonic() + self.config.stop_delay)
            log.info("stop_delayed", stop_delay=self.config.stop_delay)
            return
        self._stop("completed")

    # --- the child ---------------------------------------------------------------

    def _start_child(self) -> None:
        self.child = self.procs.spawn(self.config.command, terminal=True)
        self.generation += 1
        self.oom.child_started()
        self._enter(Phase.HOLDING if self.loop.pending("hold") else Phase.RUNNING)
        log.info(
            "child_started",
            pid=self.child.pid,
            command=list(self.config.command),
            attempt=self.records.attempt,
            restarts=self.restarts,
        )
        pending, self.early_signals = self.early_signals, []
        for signum in pending:
            forward(self.child, signum)
        if not self.probes:
            self._ready()
            return
        self.prober = start_prober(
            self.procs,
            self.probes,
            label="child",
            interval=self.config.ready_interval,
            timeout=self.config.probe_timeout,
            generation=self.generation,
        )

    def _ready(self) -> None:
        assert self.child is not None
        self.records.ready(self.child.pid)
        log.info(
            "child_ready",
            pid=self.child.pid,
            probe=", ".join(map(str, self.probes)) if self.probes else None,
        )
        self._start_liveness()

    def _stop_probers(self) -> None:
        if self.prober is not None:
            self.prober.set()
            self.prober = None
        if self.liveness is not None:
            self.liveness.set()
            self.liveness = None

    # --- gates and liveness --------------------------------------------------------

    def _at_gates(self) -> int | None:
        """Wait for the ``--wait-ready`` sidecars; an exit status if the sidecar ends
        there, None when COMMAND is to start."""
        config = self.config
        probes = gate_probes(config.dir, config.wait_ready)
        if not probes:
            return None
        self._enter(Phase.GATES)
        gates = self.gates = Gates.of(self.procs, probes, config)
        gates.start()
        try:
            self.loop.run_until(
                lambda: (
                    gates.outcome is not None
                    or self.phase is Phase.EXITED
                    or self.watcher.satisfied
                ),
                self.on_event,
            )
        finally:
            gates.close()
            self.gates = None
            self.records.update_started(gates=None)  # no longer waiting there
        if self.phase is Phase.EXITED:  # a SIGTERM or SIGINT: nothing ran, nothing to hold
            return self._finish()
        if self.watcher.satisfied:
            return self._already_complete()
        if gates.outcome == "failed":
            self._enter(Phase.EXITED)
            self.records.done(1, None, "ReadyTimeout")
            return self._exit(1, f"not ready after {config.ready_timeout} s; COMMAND not started")
        return None

    def _start_liveness(self) -> None:
        """From the moment this child is ready, for as long as it runs."""
        if not self.live_probes:
            return
        config = self.config
        self.liveness = start_liveness(
            self.procs,
            self.live_probes,
            interval=config.live_interval,
            timeout=config.probe_timeout,
            failures=config.live_failures,
            generation=self.generation,
        )

    def _liveness_failed(self, probe: str, last: str, failures: int) -> None:
        """Stop this child (stop signal, grace, SIGKILL) and restart it as after a crash."""
        child = self.child
        assert child is not None
        log.warning("liveness_failed", pid=child.pid, probe=probe, last=last, failures=failures)
        if child.ran_for >= STABLE_RUN:
            self.failures = 0
        self._backoff("LivenessFailed", probe=probe, last=last)

    # --- the stop ----------------------------------------------------------------

    def _stop(self, why: str) -> None:
        self.why = why
        self._stop_probers()
        for timer in ("hold", "delay", "restart"):
            self.loop.cancel(timer)
        child = self.child
        if child is None:  # in BACKOFF: nothing runs, but the leftovers may
            if self.leftover is None:
                self._enter(Phase.EXITED)
            else:
                self._enter(Phase.STOPPING)
            return
        self._enter(Phase.STOPPING)
        config = self.config
        log.info(
            "stop_requested",
            why=why,
            pid=child.pid,
            actions=self._stop_actions(),
            grace_period=config.grace_period,
        )
        self.stopper = GroupStop(
            self.procs,
            child,
            grace=config.grace_period,
            signum=config.stop_signal,
            http=config.stop_http,
            command=config.stop_command,
        )
        self.stopper.start()
        if self.stopper.done:
            self._stopped()

    def _stop_actions(self) -> list[str]:
        config = self.config
        actions = [f"POST {url}" for url in config.stop_http]
        if config.stop_command:
            actions.append(shlex.join(config.stop_command))
        if config.stop_signal is not None:
            actions.append(signal_name(config.stop_signal))
        return actions

    def _stopped(self) -> None:
        stopper = self.stopper
        if any(stop is not None and not stop.done for stop in (self.leftover, stopper)):
            return  # the other one comes back here when it is done
        if stopper is not None and self.child is not None and not self.child.running:
            log.info(
                "child_exited",
                before_completion=False,
                requested=True,  # our stop: a 143 here is the answer to our SIGTERM
                stopped_in_ms=stopper.took_ms,
                **describe_exit(self.child),
            )
        self._enter(Phase.EXITED)

    # --- the end -------------------------------------------------------------------

    def _finish(self) -> int:
        self.records.unready()  # no gate may open on a sidecar that is gone
        child = self.child
        if self.why == "child_exited":
            assert child is not None
            self.records.done(child.exit_code, child.signal, self.oom.reason(child))
            return self._exit(child.code, f"COMMAND exited on its own with status {child.code}")
        code = self._exit_code(child)
        self.records.done(
            code,
            None,
            "Stopped",
            why=self.why,
            child_exit_code=None if child is None or child.running else child.code,
        )
        return self._exit(code, f"stopped COMMAND ({self.why}); exit status {code}")

    def _already_complete(self) -> int:
        found = [
            {"target": c.target, "record": c.found, "age_s": _age(c.found)}
            for c in self.watcher.completions
        ]
        log.info(
            "already_complete",
            waited_for=self.watcher.labels,
            found=found,
            action="exit without starting COMMAND",
            hint=f"a rerun on a reused {self.config.dir}? remove those records, or use a fresh "
            "directory (an emptyDir is fresh for each pod)",
        )
        self._enter(Phase.EXITED)
        if self.records.has_done():
            self.records.lock.release()
        else:
            self.records.done(0, None, "AlreadyComplete")
        return self._exit(0, "the awaited containers had already completed")

    def _exit_code(self, child: Child | None) -> int:
        policy = self.config.exit_policy
        if policy == "child":
            return 0 if child is None or child.running else child.code
        if policy == "main":
            completions = self.watcher.completions
            failed = [c for c in completions if c.failed]
            if failed:
                return failed[0].code_for_exit
            if completions:
                return 0
            return 0 if child is None or child.running else child.code
        return 0

    def _exit(self, code: int, summary: str) -> int:
        self.procs.kill_all()
        return exiting(self.config.termination_log, (self.config.name, "sidecar"), summary, code)


def _age(path: str | None) -> float | None:
    """Seconds since ``path`` was written, for the logs."""
    if path is None:
        return None
    try:
        return round(time.time() - os.stat(path, follow_symlinks=False).st_mtime, 1)
    except OSError:
        return None


def _consequence(thread: str) -> str:
    if thread.startswith("probe-"):
        return "this child is not reported ready"
    if thread.startswith("live-"):
        return "this child's liveness is no longer checked"
    if thread.startswith("calls-"):
        return "those HTTP calls are abandoned"
    return "none: the rescan covers it"
