"""Command line: parse, resolve the configuration, configure logging, dispatch.

User errors end here as one line on stderr and a documented exit status:
2 for usage, 1 for other failures the user can fix, 126/127 for a COMMAND
that cannot be executed or found.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from supervisor import __version__, log
from supervisor.config import (
    DEFAULT_DIR,
    OPTIONS,
    CheckConfig,
    CopyConfig,
    DemoConfig,
    DoneConfig,
    InjectConfig,
    MainConfig,
    Option,
    SidecarConfig,
    StatusConfig,
    env_name,
    resolve,
)
from supervisor.errors import LockBusyError, SupervisorError, UsageError

PROG = "sidecar-supervisor"

DESCRIPTION = """\
Make Kubernetes Jobs (and compose stacks, Argo or Tekton steps) with sidecars finish.

Wrap the main container's command with 'main' and each sidecar's with 'sidecar',
and mount one shared emptyDir at --dir in all of them:

  main container:    sidecar-supervisor main    -- ./run-the-job
  sidecar container: sidecar-supervisor sidecar -- fluent-bit -c /etc/fb.conf

The main always leaves a completion record; the sidecar stops its child cleanly
(and exits 0) as soon as the main has finished, however it finished.
"""

EPILOG = f"""\
Every option also reads an environment variable: SIDECAR_SUPERVISOR_ + the flag in
upper case with '-' as '_' (--grace-period: SIDECAR_SUPERVISOR_GRACE_PERIOD).
A flag beats its variable, which beats the default. Run '{PROG} COMMAND --help'.
"""

COMMANDS = {
    "sidecar": (
        "wrap a sidecar: start COMMAND, stop it once the containers it serves complete",
        f"{PROG} sidecar [OPTIONS] -- COMMAND [ARG...]",
    ),
    "main": (
        "wrap the main workload: run COMMAND and always leave a completion record",
        f"{PROG} main [OPTIONS] -- COMMAND [ARG...]",
    ),
    "done": (
        "write a completion marker from a script that is not wrapped",
        f"{PROG} done [OPTIONS]",
    ),
    "status": (
        "show what every container's markers say",
        f"{PROG} status [OPTIONS] [--json]",
    ),
    "demo": (
        "run the seed's Job on this machine, no cluster needed",
        f"{PROG} demo [--without-supervisor]",
    ),
    "inject": (
        "rewrite a Job, CronJob or Pod manifest to use the supervisor (or native sidecars)",
        f"{PROG} inject [-f FILE] [OPTIONS]",
    ),
    "check": (
        "report every reason a Job, CronJob or Pod would hang or fail because of its sidecars",
        f"{PROG} check [-f FILE] [--format text|json]",
    ),
    "copy": (
        "copy the self-contained bundle into DEST (an init container's job); print its path",
        f"{PROG} copy [OPTIONS] DEST",
    ),
}


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
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _help(option: Option) -> str:
    default = option.default
    if isinstance(default, tuple):
        default = ",".join(map(str, default)) or "none"
    if option.flag == "--stop-signal":
        default = "TERM"
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


def _split(argv: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """Options before the first ``--``, COMMAND after it."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], tuple(argv[at + 1 :])
    return argv, ()


def run() -> NoReturn:
    """The console script: ``main()``, then exit without tearing the interpreter down.

    A supervisor has nothing to clean up once ``main`` returns (every child is
    reaped, every record written); skipping the interpreter's teardown saves
    tens of milliseconds of CPU just when the sidecar is reacting to the main.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    os._exit(code)


def open_standard_fds() -> None:
    """Put /dev/null on a closed stdin, stdout or stderr.

    A supervisor started with ``2>&-`` would otherwise hand fd 2 to the first
    file it opens (its wake-up pipe, a record) and write its log into it.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                opened = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return  # no /dev/null: nothing better to do
            if opened != fd:  # a lower fd was free after all
                os.close(opened)


def say(line: str) -> None:
    """One line on stderr, even when Python has no ``sys.stderr``."""
    data = (line + "\n").encode(errors="backslashreplace")
    with contextlib.suppress(OSError):
        os.write(2, data)


def main(argv: Sequence[str] | None = None) -> int:
    open_standard_fds()
    args_list = list(sys.argv[1:] if argv is None else argv)
    head, command = _split(args_list)
    parser = build_parser()
    try:
        args = parser.parse_args(head)
        if args.command is None:
            say(parser.format_help().rstrip("\n"))
            return 2
        given = vars(args)
        trailing = tuple(given.pop("argv_command", None) or ())
        if trailing and command:
            raise UsageError(f"unexpected arguments before '--': {' '.join(trailing)}")
        config = resolve(args.command, given, command or trailing, os.environ)
        return _dispatch(config)
    except SupervisorError as exc:
        say(f"{PROG}: error: {exc}")
        if head[:1] == ["main"] and not isinstance(exc, LockBusyError):
            _record_failure(head, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


# Descriptors a role needs at the most at once: the standard three, the loop's
# pipe, the lock, a record being written, a probe's socket, the file watcher's
# inotify, a pidfd, a /proc listing, a module being imported, and some room.
MIN_FILES = 16


def _check_file_limit() -> None:
    """Raise the soft limit on open files to the hard one; refuse a hopeless one.

    Far too few descriptors would fail somewhere in the middle (a record not
    written, a probe that cannot connect); refusing at once is one clear line,
    and the main's failed record is still written (``_record_failure``).
    """
    import resource  # noqa: PLC0415 - a C module, loaded in microseconds

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    if soft != resource.RLIM_INFINITY and soft < MIN_FILES:
        raise SupervisorError(
            f"only {soft} open files are allowed (ulimit -n); the supervisor needs at least "
            f"{MIN_FILES}"
        )


def _record_failure(head: list[str], exc: SupervisorError) -> None:
    """The main wrapper fails before its role runs: leave a failed ``.done`` where
    the sidecars look for it, so that they do not wait for a record that will never
    come. The dir and name are taken from the flags as far as they can be read."""
    from supervisor.records import write_failure  # noqa: PLC0415 - failures only

    found = {"dir": os.environ.get(env_name("--dir")) or DEFAULT_DIR, "name": ""}
    found["name"] = os.environ.get(env_name("--name")) or "main"
    for at, arg in enumerate(head):
        for key in found:
            if arg == f"--{key}" and at + 1 < len(head):
                found[key] = head[at + 1]
            elif arg.startswith(f"--{key}="):
                found[key] = arg.partition("=")[2]
    reason = "UsageError" if isinstance(exc, UsageError) else "StartFailed"
    write_failure(Path(found["dir"]), found["name"], exc.exit_code, reason, str(exc))


def _dispatch(config: Any) -> int:
    if isinstance(config, SidecarConfig | MainConfig):
        _check_file_limit()
        role = "sidecar" if isinstance(config, SidecarConfig) else "main"
        log.configure(config.log_format, config.log_level, role=role, name=config.name)
        if isinstance(config, SidecarConfig):
            from supervisor import sidecar_role  # noqa: PLC0415 - each role loads what it needs

            return sidecar_role.run(config, restore_signals=False)  # the process exits next
        from supervisor import main_role  # noqa: PLC0415

        return main_role.run(config, restore_signals=False)
    if isinstance(config, DemoConfig):
        from supervisor.demo import run_demo  # noqa: PLC0415

        return run_demo(
            with_supervisor=not config.without_supervisor, task_seconds=config.task_seconds
        )
    if isinstance(config, InjectConfig):
        from supervisor.inject import run_inject  # noqa: PLC0415

        return run_inject(config)
    if isinstance(config, CheckConfig):
        from supervisor.check import run_check  # noqa: PLC0415

        return run_check(config)
    if isinstance(config, CopyConfig):
        log.configure(config.log_format, config.log_level, role="copy")
        from supervisor.bundle import copy_bundle  # noqa: PLC0415

        return copy_bundle(config)
    log.configure(config.log_format, config.log_level, role=type(config).__name__)
    from supervisor import status  # noqa: PLC0415

    if isinstance(config, DoneConfig):
        return status.write_done(config)
    assert isinstance(config, StatusConfig)
    return status.show_status(config)
