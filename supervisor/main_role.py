"""The ``main`` role: run the workload and always leave a completion record.

Order of work: take ``NAME.lock``, remove a stale ``NAME.done``, write
``NAME.started`` (attempt + 1), run COMMAND with every signal forwarded to its
process group, write ``NAME.done`` the moment it ends, release the lock (the
sidecars wake on that), stop what is left of COMMAND's process group, and exit
with COMMAND's status (128+N for a death by signal N).
"""

from __future__ import annotations

import signal

from supervisor import log
from supervisor.config import MainConfig
from supervisor.process import (
    CommandError,
    Event,
    Loop,
    become_subreaper,
    describe_exit,
    forward,
    spawn,
)
from supervisor.records import OwnRecords, exiting
from supervisor.signals import captured


def run(config: MainConfig) -> int:
    loop = Loop()
    with captured(loop.events):
        return _run(config, loop)


def _run(config: MainConfig, loop: Loop) -> int:
    become_subreaper()
    records = OwnRecords(config.dir, config.name)
    records.prepare()
    records.begin_attempt()
    try:
        child = loop.adopt(spawn(config.command))
    except CommandError as exc:
        log.error("child_start_failed", command=list(config.command), error=str(exc))
        records.done(exc.exit_code, None, exc.reason)
        return _exit(config, exc.exit_code, f"COMMAND could not start: {exc}")
    log.info("child_started", pid=child.pid, command=list(config.command), attempt=records.attempt)

    def relay(event: Event) -> None:
        forward(child, event)

    loop.run_until(lambda: not child.running, relay)
    records.done(child.exit_code, child.signal, child.reason)
    log.info("child_exited", **describe_exit(child))

    if child.group_alive:
        log.info(
            "stop_requested",
            why="COMMAND exited; its process group lives on",
            signal="SIGTERM",
            grace_period=config.grace_period,
        )
        loop.stop(child, lambda: child.signal_group(signal.SIGTERM), config.grace_period, relay)
    return _exit(config, child.code, f"COMMAND exited with status {child.code}")


def _exit(config: MainConfig, code: int, summary: str) -> int:
    return exiting(config.termination_log, f"{config.name} (main): {summary}", code)
