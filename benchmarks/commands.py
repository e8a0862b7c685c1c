"""The command lines measured: the supervisor's two roles and today's workarounds.

A workaround sidecar is its command wrapped in a waiter that SIGTERMs it once
the marker files exist; a workaround main is ``COMMAND; touch main.done``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.harness import SUPERVISOR, workload

if TYPE_CHECKING:
    from benchmarks.context import Context

Argv = list[str]


def child() -> Argv:
    """The sidecar's child: prints ``ready``, then the moment SIGTERM arrives."""
    return workload("stamp_child")


def main_command(code: int = 0) -> Argv:
    """The main's COMMAND: ends on a line on stdin and prints the moment it exits."""
    return workload("main_exit", str(code))


def sidecar(shared: Path, *options: str, command: Sequence[str] | None = None) -> Argv:
    return [
        *SUPERVISOR,
        "sidecar",
        "--dir",
        str(shared),
        *options,
        "--",
        *(command or child()),
    ]


def main(shared: Path, *options: str, command: Sequence[str] | None = None) -> Argv:
    return [*SUPERVISOR, "main", "--dir", str(shared), *options, "--", *(command or main_command())]


def workaround_main(done: Path) -> Argv:
    """What a main's command becomes without a wrapper: ``COMMAND; touch done``."""
    return ["sh", "-c", f"{shlex.join(main_command())}; touch {shlex.quote(str(done))}"]


def shell_loop(files: Sequence[Path], command: Sequence[str]) -> Argv:
    """The classic: ``while [ ! -f done ]; do sleep 1; done; kill ...``."""
    loops = "".join(f"while [ ! -f {shlex.quote(str(f))} ]; do sleep 1; done; " for f in files)
    return ["sh", "-c", f'{shlex.join(command)} & pid=$!; {loops}kill "$pid"; wait "$pid"']


def stat_poll(files: Sequence[Path], command: Sequence[str], interval: float = 1.0) -> Argv:
    return workload("waiter", "poll", str(interval), *map(str, files), "--", *command, site=True)


def watchfiles_default(files: Sequence[Path], command: Sequence[str]) -> Argv:
    return workload("waiter", "watchfiles", *map(str, files), "--", *command, site=True)


@dataclass(frozen=True)
class Waiter:
    """A baseline sidecar: its label, how to build it, and the period it polls at."""

    label: str
    build: Callable[[Sequence[Path], Sequence[str]], Argv]
    period: float  # a trigger is placed at a random phase of this period (0: not a poller)


SHELL = Waiter("shell loop, sleep 1", shell_loop, 1.0)
POLL = Waiter("stat poll 1 s (Tekton/Argo)", stat_poll, 1.0)
WATCHFILES = Waiter("watchfiles, defaults", watchfiles_default, 0.05)
WAITERS = (SHELL, POLL, WATCHFILES)


def fast_poll(interval: float) -> Waiter:
    """A stat poller at ``interval``, to compare a fallback rescan at the same period."""

    def build(files: Sequence[Path], command: Sequence[str]) -> Argv:
        return stat_poll(files, command, interval)

    return Waiter(f"stat poll {interval:g} s", build, interval)


@dataclass(frozen=True)
class Wrapper:
    """A PID-1 wrapper (or none) put in front of COMMAND."""

    label: str
    tool: str | None  # the executable it needs, reported missing when absent

    def argv(self, ctx: Context, shared: Path, command: Sequence[str], *, pid1: bool) -> Argv:
        if self.tool is None and self.label == SUPERVISED.label:
            return main(shared, command=command)
        if self.tool is None:
            return list(command)
        path = ctx.tools.get(self.tool) or self.tool
        if self.tool == "tini":
            # As PID 1 tini reaps by itself; elsewhere it must be made a subreaper.
            return [path, "--", *command] if pid1 else [path, "-s", "--", *command]
        return [path, *command]


SUPERVISED = Wrapper("sidecar-supervisor main", None)
TINI = Wrapper("tini", "tini")
DUMB_INIT = Wrapper("dumb-init", "dumb-init")
UNWRAPPED = Wrapper("no wrapper", None)
