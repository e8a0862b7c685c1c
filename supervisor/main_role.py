"""The ``main`` role: run the workload and always leave a completion record.

Order of work: take ``NAME.lock``, remove a stale ``NAME.done``, write
``NAME.started`` (attempt + 1), run COMMAND with every signal forwarded to its
process group, write ``NAME.done`` the moment it ends, release the lock (the
sidecars wake on that), stop what is left of COMMAND's process group, and exit
with COMMAND's status (128+N for a death by signal N).
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

from supervisor import log
from supervisor.cgroup import OomWatch
from supervisor.config import MainConfig
from supervisor.markers import marker_path
from supervisor.process import (
    CommandError,
    Event,
    Loop,
    describe_exit,
    forward,
    signal_loop,
)
from supervisor.records import OwnRecords, exiting
from supervisor.signals import signal_name

if TYPE_CHECKING:
    from supervisor.probes import Probe

QUIT_TIMEOUT = 5.0  # each --quit-http call


def run(config: MainConfig, *, restore_signals: bool = True) -> int:
    with signal_loop(restore=restore_signals) as loop:
        return _run(config, loop)


def gate_probes(config: MainConfig) -> tuple[Probe, ...]:
    """What must be ready before COMMAND starts, checked in this order."""
    from supervisor.probes import Probe, file_probe  # noqa: PLC0415 - only gates need them

    return (
        *(file_probe(marker_path(config.dir, name, "ready")) for name in config.wait_ready),
        *(Probe("tcp", target) for target in config.wait_tcp),
        *(Probe("http", url) for url in config.wait_http),
    )


def _run(config: MainConfig, loop: Loop) -> int:
    records = OwnRecords(config.dir, config.name)
    records.prepare()
    records.begin_attempt()
    early_signals: list[Event] = []
    gate = _wait_for_gates(config, loop, early_signals)
    if gate is not None:
        code, reason, summary = gate
        records.done(code, None, reason)
        _quit(config, failed=True)
        return _exit(config, loop, code, summary)
    try:
        child = loop.spawn(config.command)
    except CommandError as exc:
        log.error("child_start_failed", command=list(config.command), error=str(exc))
        records.done(exc.exit_code, None, exc.reason)
        _quit(config, failed=True)
        return _exit(config, loop, exc.exit_code, f"COMMAND could not start: {exc}")
    oom = OomWatch()
    oom.child_started()
    log.info("child_started", pid=child.pid, command=list(config.command), attempt=records.attempt)

    def relay(event: Event) -> None:
        forward(child, event)

    for event in early_signals:
        relay(event)
    loop.run_until(lambda: not child.running, relay)
    reason = oom.reason(child)
    records.done(child.exit_code, child.signal, reason)
    log.info("child_exited", reason=reason, **describe_exit(child))
    _quit(config, failed=child.code != 0)

    if child.group_alive:
        log.info(
            "stop_requested",
            why="COMMAND exited; its process group lives on",
            signal="SIGTERM",
            grace_period=config.grace_period,
        )
        loop.stop(child, lambda: child.signal_group(signal.SIGTERM), config.grace_period, relay)
    return _exit(config, loop, child.code, f"COMMAND exited with status {child.code}")


def _wait_for_gates(
    config: MainConfig, loop: Loop, early_signals: list[Event]
) -> tuple[int, str, str] | None:
    """Wait until every gate is ready; None to go on, or (status, reason, summary) to give up.

    SIGTERM or SIGINT while waiting means the pod is going away: COMMAND is not
    started. Any other signal is kept and delivered to COMMAND once it runs.
    """
    probes = gate_probes(config)
    if not probes:
        return None
    ready = False
    stopped: list[int] = []

    def handle(event: Event) -> None:
        nonlocal ready
        if event[0] == "ready":
            ready = True
        elif event[0] == "signal" and event[1] in (signal.SIGTERM, signal.SIGINT):
            stopped.append(event[1])
        elif event[0] == "signal":
            early_signals.append(event)

    log.info("waiting_for_gates", gates=[str(p) for p in probes], timeout=config.ready_timeout)
    from supervisor.probes import start_prober  # noqa: PLC0415

    prober = start_prober(
        loop, probes, label="gates", interval=config.ready_interval, timeout=config.probe_timeout
    )
    deadline = time.monotonic() + config.ready_timeout
    try:
        loop.run_until(lambda: ready or bool(stopped), handle, deadline)
    finally:
        prober.set()
    if ready:
        log.info("gates_ready")
        return None
    if stopped:
        signum = stopped[0]
        log.info("stopped_before_start", signal=signal_name(signum))
        return 128 + signum, "Terminated", f"{signal_name(signum)} before COMMAND started"
    if config.on_ready_timeout == "start":
        log.warning("ready_timeout", timeout=config.ready_timeout, action="starting COMMAND anyway")
        return None
    log.error(
        "ready_timeout",
        timeout=config.ready_timeout,
        action="exit 1 without COMMAND",
        gates=[str(p) for p in probes],
    )
    return 1, "ReadyTimeout", f"not ready after {config.ready_timeout} s; COMMAND not started"


def _quit(config: MainConfig, *, failed: bool) -> None:
    """POST every --quit-http URL, unless --stop-on success and COMMAND failed."""
    if not config.quit_http:
        return
    if failed and config.stop_on == "success":
        log.info("quit_skipped", why="--stop-on success and COMMAND failed")
        return
    from supervisor.probes import join_all, post_all  # noqa: PLC0415

    join_all(post_all(config.quit_http, QUIT_TIMEOUT, event="quit_http_sent"), QUIT_TIMEOUT)


def _exit(config: MainConfig, loop: Loop, code: int, summary: str) -> int:
    loop.kill_strays(lambda _event: None)
    return exiting(config.termination_log, f"{config.name} (main): {summary}", code)
