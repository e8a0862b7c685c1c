"""The ``sidecar`` role: run the helper until the containers it serves complete.

1. Take ``NAME.lock``. If the awaited containers have already completed (a
   restarted sidecar container), exit 0 at once without starting COMMAND.
2. Write ``NAME.started``, start COMMAND, write ``NAME.ready`` when its
   readiness probes pass (at once without probes).
3. Wait for completion (see ``watch``). Meanwhile: signals are forwarded,
   except SIGTERM/SIGINT, which start the ``--term-hold``; a child that exits
   early is restarted per ``--restart`` with exponential backoff.
4. Stop: ``--stop-delay``; the ``--stop-http`` calls, the ``--stop-command``
   and the stop signal to the group; ``--grace-period``; SIGKILL to the group;
   write ``NAME.done``; exit per ``--exit-code``.
"""

from __future__ import annotations

import shlex
import signal
import threading
import time

from supervisor import log
from supervisor.cgroup import OomWatch
from supervisor.config import SidecarConfig
from supervisor.probes import Probe, join_all, post_all, start_prober
from supervisor.process import (
    Child,
    CommandError,
    Event,
    Loop,
    describe_exit,
    forward,
    signal_loop,
)
from supervisor.records import OwnRecords, exiting
from supervisor.signals import signal_name
from supervisor.watch import CompletionWatcher

# Restart backoff: 1 s, doubling to 30 s; a run of STABLE_RUN seconds resets it.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
STABLE_RUN = 10.0

_HOLD_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HTTP_TIMEOUT = 5.0  # each --stop-http call; a hanging endpoint is abandoned


def readiness_probes(config: SidecarConfig) -> tuple[Probe, ...]:
    probes = []
    if config.ready_file is not None:
        probes.append(Probe("file", str(config.ready_file)))
    if config.ready_tcp is not None:
        probes.append(Probe("tcp", config.ready_tcp))
    if config.ready_http is not None:
        probes.append(Probe("http", config.ready_http))
    if config.ready_command:
        probes.append(Probe("command", shlex.join(config.ready_command)))
    return tuple(probes)


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
        )
        self.child: Child | None = None
        self.hold_until: float | None = None
        self._deadline: float | None = None
        self.stop_signal_received = False
        self.restart_at: float | None = None
        self.failures = 0
        self.restarts = 0
        self.probes = readiness_probes(config)
        self.prober: threading.Event | None = None
        self.stop_helper: Child | None = None
        self.oom = OomWatch()

    # --- the phases -----------------------------------------------------------

    def run(self) -> int:
        self.records.prepare()
        try:
            self.watcher.check(woken_by="start")
            if self.watcher.satisfied:
                return self._already_complete()
            self.records.begin_attempt()
            try:
                self._start_child()
            except CommandError as exc:
                log.error("child_start_failed", command=list(self.config.command), error=str(exc))
                self.records.done(exc.exit_code, None, exc.reason)
                return self._exit(exc.exit_code, f"COMMAND could not start: {exc}")
            self._watch_readiness()
            why = self._wait()
            return self._finish(why)
        finally:
            self.watcher.close()
            if self.prober is not None:
                self.prober.set()

    def _already_complete(self) -> int:
        log.info(
            "already_complete", waited_for=self._targets(), action="exit without starting COMMAND"
        )
        if self.records.has_done():
            self.records.lock.release()
        else:
            self.records.done(0, None, "AlreadyComplete")
        return self._exit(0, "the awaited containers had already completed")

    def _start_child(self) -> None:
        self.child = self.loop.spawn(self.config.command)
        self.oom.child_started()
        self.restart_at = None
        log.info(
            "child_started",
            pid=self.child.pid,
            command=list(self.config.command),
            attempt=self.records.attempt,
            restarts=self.restarts,
        )

    def _watch_readiness(self) -> None:
        """Write ``.ready`` now (no probe) or when the probes first pass."""
        if not self.probes:
            self._ready(None)
            return
        self.prober = start_prober(
            self.loop,
            self.probes,
            label="child",
            interval=self.config.ready_interval,
            timeout=self.config.probe_timeout,
        )

    def _ready(self, probes: str | None) -> None:
        pid = self.child.pid if self.child is not None else None
        self.records.ready(pid or 0)
        log.info("child_ready", pid=pid, probe=probes)

    def _wait(self) -> str:
        """Run until something ends the wait; return what it was."""
        while True:
            self._deadline = self._next_deadline()
            self.loop.run_until(
                self._wait_over,
                self._on_event,
                deadline=self._deadline,
                tick=self.config.poll_interval,
            )
            if self.watcher.satisfied:
                return "completed"
            if self.stop_signal_received:
                return "signal"
            now = time.monotonic()
            if self.hold_until is not None and now >= self.hold_until:
                log.info("term_hold_expired", waited_for=self._targets())
                return "term_hold_expired"
            if self.child is not None and not self.child.running and not self._schedule_restart():
                return "child_exited"
            if self.restart_at is not None and now >= self.restart_at:
                try:
                    self._start_child()
                except CommandError as exc:
                    log.error(
                        "child_start_failed", command=list(self.config.command), error=str(exc)
                    )
                    self._schedule_restart()

    def _next_deadline(self) -> float | None:
        deadlines = [d for d in (self.hold_until, self.restart_at) if d is not None]
        return min(deadlines) if deadlines else None

    def _wait_over(self) -> bool:
        return (
            self.watcher.satisfied
            or self.stop_signal_received
            or (self.child is not None and not self.child.running)
            or self._next_deadline() != self._deadline  # a hold began: wait with its deadline
        )

    def _on_event(self, event: Event) -> None:
        if self.watcher.handle(event):
            return
        if event[0] == "ready":
            self._ready(", ".join(map(str, self.probes)))
        elif event[0] == "signal" and event[1] in _HOLD_SIGNALS:
            self._on_stop_signal(event[1])
        else:
            forward(self.child, event)

    def _on_stop_signal(self, signum: int) -> None:
        if self.config.term_hold > 0 and self.hold_until is None:
            self.hold_until = time.monotonic() + self.config.term_hold
            log.info(
                "term_hold_started",
                signal=signal_name(signum),
                term_hold=self.config.term_hold,
                waiting_for=self._targets(),
            )
        else:
            self.stop_signal_received = True
            log.info("stop_signal_received", signal=signal_name(signum))

    def _schedule_restart(self) -> bool:
        """The child ended before completion: plan a restart, or say there is none."""
        child = self.child
        if child is not None and not child.running:
            reason = self.oom.reason(child)
            log.info("child_exited", before_completion=True, reason=reason, **describe_exit(child))
            policy = self.config.restart
            if policy == "never" or (policy == "on-failure" and child.code == 0):
                return False
            if time.monotonic() - child.started >= STABLE_RUN:
                self.failures = 0
        else:
            reason = "StartFailed"
        delay = backoff_delay(self.failures)
        self.failures += 1
        self.restarts += 1
        self.restart_at = time.monotonic() + delay
        log.info("child_restarting", restart=self.restarts, reason=reason, delay=delay)
        self.child = None
        return True

    def _finish(self, why: str) -> int:
        child = self.child
        if why == "child_exited":
            assert child is not None
            self.records.done(child.exit_code, child.signal, self.oom.reason(child))
            return self._exit(child.code, f"COMMAND exited on its own with status {child.code}")
        if child is not None and why == "completed" and self.config.stop_delay > 0:
            log.info("stop_delayed", stop_delay=self.config.stop_delay)
            self.loop.run_until(
                lambda: not child.running or self.stop_signal_received,
                self._during_delay,
                deadline=time.monotonic() + self.config.stop_delay,
            )
        if child is not None:
            self._stop(child, why)
        code = self._exit_code(child)
        self.records.done(
            code, None, "Stopped", why=why, child_exit_code=None if child is None else child.code
        )
        return self._exit(code, f"stopped COMMAND ({why}); exit status {code}")

    def _during_delay(self, event: Event) -> None:
        if event[0] == "signal" and event[1] in _HOLD_SIGNALS:
            self.stop_signal_received = True  # pod deletion: stop now
        else:
            forward(self.child, event)

    def _stop(self, child: Child, why: str) -> None:
        config = self.config
        actions = [f"POST {url}" for url in config.stop_http]
        if config.stop_command:
            actions.append(shlex.join(config.stop_command))
        if config.stop_signal is not None:
            actions.append(signal_name(config.stop_signal))
        log.info(
            "stop_requested",
            why=why,
            pid=child.pid,
            actions=actions,
            grace_period=config.grace_period,
        )
        self.loop.stop(
            child,
            lambda: self._request_stop(child),
            config.grace_period,
            lambda event: forward(child, event),
        )
        log.info("child_exited", before_completion=False, **describe_exit(child))
        helper = self.stop_helper
        if helper is not None:
            if helper.running:
                helper.signal_group(signal.SIGKILL)
                self.loop.run_until(
                    lambda: not helper.running, lambda _e: None, deadline=time.monotonic() + 5
                )
            if not helper.running:
                log.info("stop_command_exited", pid=helper.pid, exit_code=helper.code)

    def _request_stop(self, child: Child) -> None:
        """Ask for the stop in the documented order: HTTP calls, command, signal."""
        config = self.config
        if config.stop_http:
            # The calls go first and are answered (or time out) before the signal.
            timeout = min(HTTP_TIMEOUT, max(config.grace_period, 0.1))
            join_all(post_all(config.stop_http, timeout, event="stop_http_sent"), timeout)
        if config.stop_command:
            try:
                self.stop_helper = self.loop.spawn(config.stop_command)
            except CommandError as exc:
                log.warning("stop_command_failed", error=str(exc))
        if config.stop_signal is not None:
            child.signal_group(config.stop_signal)

    def _exit_code(self, child: Child | None) -> int:
        policy = self.config.exit_code
        if policy == "child":
            return 0 if child is None or child.status is None else child.code
        if policy == "main":
            completions = self.watcher.completions
            failed = [c for c in completions if c.failed]
            if failed:
                return failed[0].code_for_exit
            if completions:
                return 0
            return 0 if child is None or child.status is None else child.code
        return 0

    def _targets(self) -> list[str]:
        return [t.label for t in self.watcher.targets]

    def _exit(self, code: int, summary: str) -> int:
        self.loop.kill_strays(lambda _event: None)
        return exiting(
            self.config.termination_log, f"{self.config.name} (sidecar): {summary}", code
        )
