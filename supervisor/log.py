"""Structured logging: events, not sentences, configured once by the CLI.

Every event is one JSON object per line on stderr, with ``timestamp``,
``level``, ``event``, ``role`` and ``name`` first, written with a single
``write`` so lines from several threads never interleave. On a TTY
(``--log-format console``, or ``auto`` on a terminal) structlog's console
renderer makes them readable for people.

The JSON path does not go through structlog: importing structlog pulls in
asyncio and ssl, about 85 ms of CPU and 8 MB of memory at every start of every
container, for lines a log collector reads. structlog is imported only for the
console format, and only at the first event. An event below ``--log-level``
costs a comparison.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

_LEVEL_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class _Settings:
    fmt: str = "auto"
    threshold: int = 20
    context: dict[str, Any] = {}  # noqa: RUF012 - replaced whole by configure()
    console: Any = None  # the structlog logger, built at the first console event


_settings = _Settings()


def configure(fmt: str = "auto", level: str = "info", **context: Any) -> None:
    """Remember how to log; nothing is imported here."""
    _settings.fmt = fmt
    _settings.threshold = _LEVEL_NUMBERS[level]
    _settings.context = context
    _settings.console = None


def timestamp(now: float | None = None) -> str:
    """UTC ISO-8601 with microseconds, as ``2026-11-30T11:11:14.463164Z``."""
    now = time.time() if now is None else now
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{whole}.{int(now % 1 * 1_000_000):06d}Z"


def _console() -> Any:
    import structlog  # noqa: PLC0415 - only people at a terminal need it

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_settings.threshold),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(**_settings.context)


def _emit(level: str, event: str, fields: dict[str, Any]) -> None:
    if _LEVEL_NUMBERS[level] < _settings.threshold:
        return
    fmt = _settings.fmt
    if fmt == "auto":
        fmt = _settings.fmt = "console" if os.isatty(2) else "json"
    if fmt == "console" and sys.stderr is not None:
        if _settings.console is None:
            _settings.console = _console()
        getattr(_settings.console, level)(event, **fields)
        return
    record = {"timestamp": timestamp(), "level": level, "event": event, **_settings.context}
    record.update(fields)
    line = json.dumps(record, default=str, separators=(", ", ": ")) + "\n"
    data = memoryview(line.encode(errors="replace"))
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
