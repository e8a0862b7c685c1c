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


def duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
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


def exit_status(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 255:
        raise ValueError(f"{text!r} is not an exit status from 0 to 255")
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

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
