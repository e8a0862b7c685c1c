"""Structured logging, configured once by the CLI and imported late.

structlog pulls in asyncio and costs tens of milliseconds to import, so the
roles start their child first and the logger is only built on the first event.
Every event is one JSON object per line on stderr (or a readable console line
on a TTY) with ``timestamp``, ``level``, ``event``, ``role`` and ``name``.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "json", "console")
_LEVEL_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


@dataclass
class _Settings:
    fmt: str = "auto"
    level: str = "info"
    context: dict[str, Any] | None = None


_settings = _Settings()
_logger: Any = None


def configure(fmt: str = "auto", level: str = "info", **context: Any) -> None:
    """Remember how to log; nothing is imported until the first event."""
    global _logger  # noqa: PLW0603 - one process-wide logger, configured once
    _settings.fmt = fmt
    _settings.level = level
    _settings.context = context
    _logger = None


_FIRST = ("timestamp", "level", "event", "role", "name")


def _order(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """Put the fields every line has first, so the lines read alike."""
    head = {key: event.pop(key) for key in _FIRST if key in event}
    head.update(event)
    return head


def _build() -> Any:
    import structlog  # noqa: PLC0415 - deferred on purpose, see module doc

    fmt = _settings.fmt
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _order,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVEL_NUMBERS[_settings.level]),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(**(_settings.context or {}))


def _get() -> Any:
    global _logger  # noqa: PLW0603 - built lazily, once
    if _logger is None:
        _logger = _build()
    return _logger


def debug(event: str, **fields: Any) -> None:
    _get().debug(event, **fields)


def info(event: str, **fields: Any) -> None:
    _get().info(event, **fields)


def warning(event: str, **fields: Any) -> None:
    _get().warning(event, **fields)


def error(event: str, **fields: Any) -> None:
    _get().error(event, **fields)
