"""Everything that can wake the loop, one small class per kind.

Signal handlers, helper threads, the reaper and the loop's own timers only
ever produce these; the roles dispatch on them with ``match`` and close with
``assert_never``, so the type checker finds a kind that a handler forgot.

Plain ``__slots__`` classes, not NamedTuples or dataclasses: defining those
costs milliseconds at every start, and start-up time is part of the product.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.process import Child


class Signal:
    """A signal reached the supervisor (its number)."""

    __slots__ = ("signum",)
    __match_args__ = ("signum",)

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __repr__(self) -> str:
        return f"Signal({self.signum})"


class ChildExited:
    """The reaper collected one of our own children (COMMAND, a probe, a helper)."""

    __slots__ = ("child",)
    __match_args__ = ("child",)

    def __init__(self, child: Child) -> None:
        self.child = child

    def __repr__(self) -> str:
        return f"ChildExited({self.child.pid})"


class TimerFired:
    """A timer set with ``Loop.set_timer`` or ``Loop.every`` is due."""

    __slots__ = ("name",)
    __match_args__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"TimerFired({self.name!r})"


class SourceChanged:
    """A completion source's helper saw something (a lock released, a process
    gone, files changed); the source is asked to look again."""

    __slots__ = ("label",)
    __match_args__ = ("label",)

    def __init__(self, label: str | None) -> None:
        self.label = label  # None: every pending source (file events)

    def __repr__(self) -> str:
        return f"SourceChanged({self.label!r})"


class ProbeReady:
    """Every probe of a set passed; ``generation`` names the child it was for."""

    __slots__ = ("generation", "label")
    __match_args__ = ("label", "generation")

    def __init__(self, label: str, generation: int = 0) -> None:
        self.label = label
        self.generation = generation

    def __repr__(self) -> str:
        return f"ProbeReady({self.label!r}, {self.generation})"


class LivenessFailed:
    """A liveness probe failed ``failures`` times in a row for child ``generation``;
    ``last`` is its last answer."""

    __slots__ = ("failures", "generation", "last", "probe")
    __match_args__ = ("generation", "probe", "last", "failures")

    def __init__(self, generation: int, probe: str, last: str, failures: int) -> None:
        self.generation = generation
        self.probe = probe
        self.last = last
        self.failures = failures

    def __repr__(self) -> str:
        return f"LivenessFailed({self.generation}, {self.probe!r}, {self.last!r})"


class CallsDone:
    """HTTP calls started beside the loop have all answered or timed out."""

    __slots__ = ("label",)
    __match_args__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return f"CallsDone({self.label!r})"


class ThreadFailed:
    """A helper thread raised; its owner decides what that means."""

    __slots__ = ("error", "name")
    __match_args__ = ("name", "error")

    def __init__(self, name: str, error: str) -> None:
        self.name = name
        self.error = error

    def __repr__(self) -> str:
        return f"ThreadFailed({self.name!r}, {self.error!r})"


Event = (
    Signal
    | ChildExited
    | TimerFired
    | SourceChanged
    | ProbeReady
    | LivenessFailed
    | CallsDone
    | ThreadFailed
)
