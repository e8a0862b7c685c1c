"""The full command-line parser (argparse), for help and for what ``cli.parse_plain``
leaves to it: building it costs more than the rest of a start, so a plain
command line never does."""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

from supervisor import __version__
from supervisor.cli import COMMANDS, DESCRIPTION, EPILOG, PROG
from supervisor.config import OPTIONS, Option
from supervisor.errors import UsageError


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter without ``shutil``: argparse makes one for every option
    it adds, and importing shutil for the terminal's width costs milliseconds at
    every start. The width comes from ``os`` instead."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
        width: int | None = None,
    ) -> None:  # fmt: skip
        if width is None:
            try:
                width = os.get_terminal_size(2).columns - 2
            except (OSError, ValueError):
                width = 78  # not a terminal
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # ``--grace 3`` must not mean --grace-period: a manifest relying on an
        # abbreviation would break the day another flag starts with it.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _choices(option: Option) -> tuple[str, ...]:
    return tuple(getattr(option.parse, "choices", ()))


def _help(option: Option) -> str:
    """The option's help, its variable and its default, unless the help tells the default."""
    default = option.default
    if isinstance(default, tuple):
        default = ",".join(map(str, default)) or None
    elif isinstance(default, float) and default.is_integer():
        default = int(default)
    if option.switch or "default" in option.help:
        default = None
    shown = "" if default is None else f"; default {default}"
    return f"{option.help} [{option.env}{shown}]".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, options in OPTIONS.items():
        summary, usage = COMMANDS[name]
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            usage=usage,
            epilog=EPILOG,
            formatter_class=_Formatter,
        )
        for option in options:
            kwargs: dict[str, Any] = {"help": _help(option), "default": None}
            if option.metavar:
                kwargs["metavar"] = option.metavar
            elif choices := _choices(option):
                kwargs["metavar"] = "|".join(choices)
            if option.repeat:
                kwargs["action"] = "append"
            if option.switch:
                kwargs["action"] = "store_const"
                kwargs["const"] = True
            flags = [option.short, option.flag] if option.short else [option.flag]
            sub.add_argument(*flags, dest=option.dest, **kwargs)
        if name in ("sidecar", "main"):
            sub.add_argument("argv_command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        if name == "copy":
            sub.add_argument("dest", nargs="?", metavar="DEST", help="the folder to copy into")
    return parser
