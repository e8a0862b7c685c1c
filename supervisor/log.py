"""Structured logging: events, not sentences, configured once by the CLI.

Every event is one JSON object per line on stderr, with ``timestamp``,
``level``, ``event``, ``role`` and ``name`` first and ``severity`` and
``message`` last (the fields Google Cloud Logging and other collectors read),
written with a single ``write`` so lines from several threads never
interleave. On a TTY (``--log-format console``, or ``auto`` on a terminal)
each event is one short line for people instead::

    14:02:11.203 info  proxy child_started pid=12 command="envoy -c /etc/envoy.yaml"

coloured unless ``NO_COLOR`` is set or stderr is not a terminal.

Neither format imports anything beyond ``json``: start-up time and memory are
part of the product. An event below ``--log-level`` costs a comparison.

The event loop holds the events logged while it handles one of its own
(``hold``), and formats and writes them together when the handling is over
(``flush``): the stop signal a completion calls for is sent before the lines
that say so are made, not after (each line costs tens of microseconds, more
with cold caches, and each ``write`` to a pipe wakes its reader, a process
that then competes for the CPU). The stamps are taken when the events happen;
the lines of other threads are written at once.
"""

from __future__ import annotations

import json
import os
import time
from threading import get_ident
from typing import Any

_LEVEL_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
# Cloud Logging's LogSeverity names (others read them too); without one, a
# line on stderr is taken for an error there.
SEVERITY = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR"}
# The longest a logged command line, or one value in a message, may be.
COMMAND_LIMIT = 200
MESSAGE_LIMIT = 300
MESSAGE_VALUE_LIMIT = 60
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")
_BARE = _SAFE | frozenset("[]()")  # a value of a key=value pair needs no quotes
_SHORT = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}
_DIM, _BOLD, _RESET = "\033[2m", "\033[1m", "\033[0m"
_LEVEL_COLOURS = {
    "debug": "\033[2m",
    "info": "\033[32m",
    "warning": "\033[33m",
    "error": "\033[31m",
}


class _Settings:
    fmt: str = "auto"
    threshold: int = 20
    context: dict[str, Any] = {}  # noqa: RUF012 - replaced whole by configure()
    colour: bool | None = None  # decided at the first console event
    # Events kept by hold() until flush(): (level, event, fields, time.time())
    held: list[tuple[str, str, dict[str, Any], float]] | None = None
    holder = 0  # the thread whose lines are held


_settings = _Settings()


def configure(fmt: str = "auto", level: str = "info", **context: Any) -> None:
    """Remember how to log; nothing is imported here."""
    _settings.fmt = fmt
    _settings.threshold = _LEVEL_NUMBERS[level]
    _settings.context = context
    _settings.colour = None


def timestamp(now: float | None = None) -> str:
    """UTC ISO-8601 with microseconds, as ``2026-11-30T11:11:14.463164Z``."""
    now = time.time() if now is None else now
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{whole}.{int(now % 1 * 1_000_000):06d}Z"


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def command_line(argv: Any) -> str:
    """A command as one line a shell would read back, at most ``COMMAND_LIMIT`` long.

    ``shlex.join`` without importing shlex; a newline inside an argument (a
    whole script after ``sh -c``) is written ``\\n``, so the line stays one line.
    """
    words = [argv] if isinstance(argv, str) else [str(word) for word in argv]
    quoted = []
    for word in words:
        if word and _SAFE.issuperset(word):
            quoted.append(word)
        else:
            quoted.append("'" + word.replace("'", "'\"'\"'") + "'")
    line = " ".join(quoted).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return _cut(line, COMMAND_LIMIT)


def _shape(fields: dict[str, Any]) -> dict[str, Any]:
    """Commands (``command``, ``stop_command``, ...) as one bounded line each."""
    for key, value in fields.items():
        if key.endswith("command") and isinstance(value, list | tuple):
            fields[key] = command_line(value)
    return fields


def _value(value: Any, limit: int) -> str:
    """One value of a ``key=value`` pair: bare when that is unambiguous, else in quotes."""
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    text = _cut(str(value), limit)
    if text and _BARE.issuperset(text):
        return text
    return '"' + text.replace('"', '\\"').replace("\n", "\\n") + '"'


def _pairs(fields: dict[str, Any], limit: int) -> str:
    """``key=value ...``, leaving out what is unknown (None): a line for people."""
    return " ".join(
        f"{key}={_value(value, limit)}" for key, value in fields.items() if value is not None
    )


def message(event: str, fields: dict[str, Any]) -> str:
    """``event key=value ...``: the summary line collectors show for a JSON event."""
    return _cut(f"{event} {_pairs(fields, MESSAGE_VALUE_LIMIT)}".rstrip(), MESSAGE_LIMIT)


def _use_colour() -> bool:
    """On a terminal, unless NO_COLOR is set to anything (no-color.org)."""
    return not os.environ.get("NO_COLOR") and os.isatty(2)


def console_line(level: str, event: str, fields: dict[str, Any], now: float, colour: bool) -> str:
    """``14:02:11.203 info  proxy child_started pid=12``: one event for people."""
    context = dict(_settings.context)
    label = context.pop("name", None) or context.pop("role", None) or ""
    context.pop("role", None)
    clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    pairs = _pairs({**context, **fields}, COMMAND_LIMIT)
    if colour:
        clock = f"{_DIM}{clock}{_RESET}"
        shown_level = f"{_LEVEL_COLOURS[level]}{_SHORT[level]:<5}{_RESET}"
        event = f"{_BOLD}{event}{_RESET}"
    else:
        shown_level = f"{_SHORT[level]:<5}"
    return " ".join(part for part in (clock, shown_level, label, event, pairs) if part)


def json_line(level: str, event: str, fields: dict[str, Any], now: float) -> str:
    record = {"timestamp": timestamp(now), "level": level, "event": event, **_settings.context}
    record.update(fields)
    record["severity"] = SEVERITY[level]
    record["message"] = message(event, fields)
    return json.dumps(record, default=str, separators=(", ", ": "))


def _emit(level: str, event: str, fields: dict[str, Any]) -> None:
    if _LEVEL_NUMBERS[level] < _settings.threshold:
        return
    now = time.time()
    held = _settings.held
    if held is not None and get_ident() == _settings.holder:
        held.append((level, event, fields, now))
        return
    _write(_line(level, event, fields, now) + "\n")


def _line(level: str, event: str, fields: dict[str, Any], now: float) -> str:
    fmt = _settings.fmt
    if fmt == "auto":
        fmt = _settings.fmt = "console" if os.isatty(2) else "json"
    fields = _shape(fields)
    if fmt == "console":
        if _settings.colour is None:
            _settings.colour = _use_colour()
        return console_line(level, event, fields, now, _settings.colour)
    return json_line(level, event, fields, now)


def hold() -> None:
    """Keep this thread's events until ``flush()`` (the loop, while it handles an event)."""
    if _settings.held is None:
        _settings.held = []
        _settings.holder = get_ident()


def flush() -> None:
    """Format and write the held events, in one ``write``, and stop holding."""
    held, _settings.held = _settings.held, None
    if held:
        _write("".join(_line(*entry) + "\n" for entry in held))


def _write(text: str) -> None:
    data = memoryview(text.encode(errors="replace"))
    try:
        while data:
            data = data[os.write(2, data) :]
    except OSError:
        pass  # a closed or full stderr must never stop the supervisor


def debug(event: str, **fields: Any) -> None:
    _emit("debug", event, fields)


def info(event: str, **fields: Any) -> None:
    _emit("info", event, fields)


def warning(event: str, **fields: Any) -> None:
    _emit("warning", event, fields)


def error(event: str, **fields: Any) -> None:
    _emit("error", event, fields)


def log(level: str, event: str, **fields: Any) -> None:
    """An event at a level chosen at run time (through the named function)."""
    {"debug": debug, "info": info, "warning": warning, "error": error}[level](event, **fields)
