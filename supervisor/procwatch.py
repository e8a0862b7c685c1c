"""Completion by process exit, for pods that share one PID namespace.

With ``shareProcessNamespace: true`` (compose: ``pid: "service:main"``) the
sidecar sees the main's processes. ``--watch-process REGEX`` finds the first
process whose command line matches (not one of our own), then waits for it to
exit: blocked in ``poll`` on a pidfd where the kernel has them (Linux 5.3+),
by polling otherwise. The exit code of a process that is not our child cannot
be known, so such a completion has an unknown exit code (counted as success).

psutil is imported here only, so sidecars without ``--watch-process`` never
load it.
"""

from __future__ import annotations

import os
import re
import select
import threading
import time
from typing import TYPE_CHECKING, Any

from supervisor import log
from supervisor.signals import start_thread

if TYPE_CHECKING:
    from supervisor.process import Loop

APPEAR_POLL = 0.1  # seconds between looks for a process that has not appeared yet


def _find(psutil: Any, pattern: re.Pattern[str], me: int) -> Any:
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline")
        if proc.pid == me or not cmdline:
            continue
        if not pattern.search(" ".join(cmdline)):
            continue
        try:
            if me in {parent.pid for parent in proc.parents()}:
                continue  # our own child or its descendants
        except psutil.Error:
            continue
        return proc
    return None


def _wait_exit(psutil: Any, proc: Any) -> None:
    """Return when ``proc`` has exited; in the kernel where it can, polling otherwise."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            if proc.is_running():  # the pid was not reused between the look and the pidfd
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                poller.poll()
        finally:
            os.close(fd)
        return
    try:
        proc.wait()
    except psutil.Error:
        return


def start_process_watch(
    loop: Loop, regex: str, *, label: str, appear_timeout: float
) -> threading.Event:
    """Post ``("process", label, "exited"|"never_appeared", pid)`` on the loop."""
    stop = threading.Event()
    pattern = re.compile(regex)

    def run() -> None:
        import psutil  # noqa: PLC0415 - only --watch-process needs it

        me = os.getpid()
        deadline = time.monotonic() + appear_timeout
        announced = False
        while not stop.is_set():
            proc = _find(psutil, pattern, me)
            if proc is not None:
                break
            if time.monotonic() >= deadline:
                loop.post("process", label, "never_appeared", None)
                return
            if not announced:
                log.info("waiting_for_process", pattern=regex, timeout=appear_timeout)
                announced = True
            stop.wait(APPEAR_POLL)
        else:
            return
        log.info("process_found", pattern=regex, pid=proc.pid, cmdline=proc.info.get("cmdline"))
        _wait_exit(psutil, proc)
        if not stop.is_set():
            loop.post("process", label, "exited", proc.pid)

    start_thread(run, name="process-watch")
    return stop
