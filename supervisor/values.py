"""Option values: each parser takes the text of a flag or variable and returns its value.

Each raises ValueError with a short reason; ``config.resolve`` turns that into a
one-line usage error naming the flag or the variable.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from pathlib import Path

from supervisor.markers import valid_name

# The longest duration any option takes (about three years): beyond it the
# platform's timers overflow, and no Job waits that long on purpose.
MAX_SECONDS = 100_000_000


# Go's duration units (time.ParseDuration, what Kubernetes and its tools print),
# in seconds. Both spellings of the micro sign.
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DIGITS = "0123456789."


def _go_duration(text: str) -> float | None:
    """Seconds of a duration in Go's form (``1m30s``, ``500ms``, ``1.5h``); None if not one.

    Written out by hand rather than with ``re``: this runs at every start.
    """
    total, at, end = 0.0, 0, len(text)
    while at < end:
        start = at
        while at < end and text[at] in _DIGITS:
            at += 1
        number = text[start:at]
        start = at
        while at < end and text[at] not in _DIGITS:
            at += 1
        unit = _UNITS.get(text[start:at])
        if unit is None or not number or number == "." or number.count(".") > 1:
            return None
        total += float(number) * unit
    return total if end else None


def duration(text: str) -> float:
    """Seconds (``1.5``) or Go's form (``5s``, ``1m30s``, ``500ms``, ``2h``)."""
    try:
        value = float(text)
    except ValueError:
        found = _go_duration(text.strip())
        if found is None:
            raise ValueError(
                f"{text!r} is not a duration (seconds such as 1.5, or 500ms, 5s, 1m30s, 2h)"
            ) from None
        value = found
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a duration of zero or more seconds")
    if value > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than the longest duration, {MAX_SECONDS} seconds")
    return value


def positive_duration(text: str) -> float:
    value = duration(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be more than zero seconds")
    return value


def signal_number(text: str) -> int:
    """``TERM``, ``SIGTERM``, ``sigterm`` or ``15``."""
    cleaned = text.strip().upper()
    if cleaned.isdigit():
        number = int(cleaned)
        if number in {int(s) for s in signal.valid_signals()}:
            return number
        raise ValueError(f"{text!r} is not a signal number")
    name = cleaned if cleaned.startswith("SIG") else "SIG" + cleaned
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"{text!r} is not a signal name") from None


def container_name(text: str) -> str:
    if not valid_name(text):
        raise ValueError(
            f"{text!r} is not a plain file name (letters, digits, '.', '_', '-', "
            "not starting with '.')"
        )
    return text


def count(text: str) -> int:
    """A number of times: a whole number from 1 to a million."""
    if not (text.isascii() and text.strip().isdigit()) or not 0 < int(text) <= 1_000_000:
        raise ValueError(f"{text!r} is not a whole number from 1 to 1000000")
    return int(text)


def exit_status(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 255:
        raise ValueError(f"{text!r} is not an exit status from 0 to 255")
    return value


class Choice:
    """The parser of an option with a fixed set of values; ``--help`` lists ``choices``."""

    def __init__(self, *allowed: str) -> None:
        self.choices = allowed

    def __call__(self, text: str) -> str:
        if text not in self.choices:
            raise ValueError(f"{text!r} is not one of {', '.join(self.choices)}")
        return text


def choice(*allowed: str) -> Choice:
    return Choice(*allowed)


def requirement(*states: str) -> Callable[[str], tuple[str, tuple[str, ...]]]:
    """``NAME=STATE`` or ``NAME=STATE|STATE``: what ``status --require`` checks."""

    def parse(text: str) -> tuple[str, tuple[str, ...]]:
        name, sep, wanted = text.partition("=")
        if not sep or not valid_name(name.strip()):
            raise ValueError(f"{text!r} is not NAME=STATE (such as main=done)")
        chosen = tuple(state.strip() for state in wanted.split("|"))
        unknown = [state for state in chosen if state not in states]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a state: {', '.join(states)}")
        return name.strip(), chosen

    return parse


def text(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def regex(value: str) -> str:
    import re  # noqa: PLC0415

    if not value:
        raise ValueError("must not be empty")
    try:
        re.compile(value)
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
    return value


def http_url(value: str) -> str:
    from urllib.parse import urlsplit  # noqa: PLC0415 - only URL flags need it

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} is not an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    if port == 0:
        raise ValueError(f"{value!r} has no usable port")
    return value


def host_port(value: str) -> str:
    from supervisor.probes import split_host_port  # noqa: PLC0415

    split_host_port(value)
    return value


def command_line(value: str) -> tuple[str, ...]:
    """Split like a shell, never run through one."""
    import shlex  # noqa: PLC0415

    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} cannot be split into words: {exc}") from None
    if not argv:
        raise ValueError("must name a command")
    return argv


def stop_signal(text: str) -> int | None:
    """A signal, or ``none`` to send no signal (an HTTP call or command stops the child)."""
    if text.strip().lower() == "none":
        return None
    return signal_number(text)


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a yes/no value (1, true, yes or 0, false, no)")


def entrypoint(text: str) -> tuple[str, tuple[str, ...]]:
    """``NAME=/path/to/cmd [ARG...]``: the entrypoint of container NAME's image."""
    import shlex  # noqa: PLC0415

    name, sep, command = text.partition("=")
    if not sep or not name or not command.strip():
        raise ValueError(f"{text!r} is not NAME=/path/to/cmd")
    try:
        return name, tuple(shlex.split(command))
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None


def path(value: str) -> Path:
    if not value or "\0" in value:
        raise ValueError(f"{value!r} is not a path")
    return Path(value)
