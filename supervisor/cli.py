"""Command line: parse, resolve the configuration, configure logging, dispatch.

User errors end here as one line on stderr and a documented exit status:
2 for usage, 1 for other failures the user can fix, 126/127 for a COMMAND
that cannot be executed or found.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from supervisor import log
from supervisor.config import (
    DEFAULT_DIR,
    OPTIONS,
    CheckConfig,
    CopyConfig,
    DemoConfig,
    DoneConfig,
    InjectConfig,
    MainConfig,
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
A flag beats its variable, which beats the default. Durations (S) are seconds
(1.5) or Go's form (500ms, 5s, 1m30s, 2h). Flags are never abbreviated.
Run '{PROG} COMMAND --help'.
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
        "show what every container's markers say; --require makes it a check",
        f"{PROG} status [OPTIONS] [--json] [--require NAME=STATE]",
    ),
    "demo": (
        "run a Job that cannot complete, and the same Job fixed, on this machine",
        f"{PROG} demo [--without-supervisor] [--task-seconds S]",
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


# The other role's flag for the same job, named when a role is given a flag it lacks.
COUNTERPARTS = {
    ("main", "--ready-tcp"): "the main's gate is --wait-tcp",
    ("main", "--ready-http"): "the main's gate is --wait-http",
    ("main", "--ready-file"): "the main waits for a sidecar's readiness with --wait-ready NAME",
    ("main", "--ready-command"): "the main waits for a sidecar's readiness with --wait-ready NAME",
    ("main", "--wait-for"): "a main waits for its sidecars' readiness with --wait-ready NAME",
    ("main", "--stop-http"): "the main asks proxies it cannot wrap to quit with --quit-http",
    ("sidecar", "--wait-tcp"): "a sidecar reports its own readiness with --ready-tcp",
    ("sidecar", "--wait-http"): "a sidecar reports its own readiness with --ready-http",
    ("sidecar", "--quit-http"): "a sidecar asks its own COMMAND to stop with --stop-http",
    ("sidecar", "--preset"): "presets are for the main: it waits for and quits the proxy",
}


def _nearest(word: str, known: Sequence[str]) -> str | None:
    """The known word that ``word`` abbreviates or most resembles, if any is close."""
    starting = [candidate for candidate in known if candidate.startswith(word)]
    if len(starting) == 1:
        return starting[0]
    import difflib  # noqa: PLC0415 - only a mistyped command line needs it

    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_command(word: str) -> str:
    nearest = _nearest(word, list(COMMANDS))
    hint = f"; did you mean {nearest!r}?" if nearest else ""
    return f"unknown command {word!r}{hint} (commands: {', '.join(COMMANDS)})"


def unknown_flag(command: str | None, word: str) -> str:
    """One line for an argument ``command`` does not take, with the nearest fix."""
    flag = word.partition("=")[0]
    where = f"{command} has" if command else "there is"
    if not flag.startswith("-"):
        return f"{command or PROG} takes no argument {word!r}"
    own = [option.flag for option in OPTIONS.get(command or "", ())]
    if not command:
        own = ["--version", "--help"]
    else:
        own.append("--help")
    others = [name for name, options in OPTIONS.items() if any(o.flag == flag for o in options)]
    if others:
        whose = "a " + " and ".join(others) + " option" if len(others) < 3 else "another's"
        counterpart = COUNTERPARTS.get((command or "", flag))
        return f"{flag} is {whose}, not {command or 'a command'}'s" + (
            f"; {counterpart}" if counterpart else ""
        )
    nearest = _nearest(flag, own)
    if nearest and nearest.startswith(flag):
        return f"{where} no option {flag}; did you mean {nearest}? (flags are never abbreviated)"
    helping = f"{PROG} {command} --help" if command else f"{PROG} --help"
    hint = f"; did you mean {nearest}?" if nearest else f"; see '{helping}'"
    return f"{where} no option {flag}{hint}"


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


def parse_plain(head: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """The command and its flags, for a command line argparse would take as it is.

    Building argparse's parsers for every command costs more than the rest of
    the start-up together, so a plain line (a command, then ``--flag value``,
    ``--flag=value`` or switches from its table) is read here from the same
    table. Anything else (help, a positional, an unknown or short flag, a
    value that looks like a flag) returns None and goes to argparse, which
    gives the same result or the same error as always.
    """
    if not head or head[0] not in OPTIONS:
        return None
    command = head[0]
    flags = {option.flag: option for option in OPTIONS[command]}
    given: dict[str, Any] = {}
    at = 1
    while at < len(head):
        word = head[at]
        flag, equals, value = word.partition("=")
        option = flags.get(flag)
        if option is None:
            return None
        if option.switch:
            if equals:
                return None
            given[option.dest] = True
            at += 1
            continue
        if not equals:
            if at + 1 == len(head) or head[at + 1].startswith("-"):
                return None
            value = head[at + 1]
            at += 1
        at += 1
        if option.repeat:
            given.setdefault(option.dest, []).append(value)
        else:
            given[option.dest] = value
    return command, given


def main(argv: Sequence[str] | None = None) -> int:
    open_standard_fds()
    args_list = list(sys.argv[1:] if argv is None else argv)
    head, command = _split(args_list)
    try:
        plain = parse_plain(head)
        if plain is not None:
            name, given = plain
            return _dispatch(resolve(name, given, command, os.environ))
        if head and not head[0].startswith("-") and head[0] not in COMMANDS:
            raise UsageError(unknown_command(head[0]))
        from supervisor.parser import build_parser  # noqa: PLC0415 - see parse_plain

        parser = build_parser()
        args, unknown = parser.parse_known_args(head)
        if unknown:
            raise UsageError(unknown_flag(args.command, unknown[0]))
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
    except BrokenPipeError:
        # ``status --json | head``: the reader left. Say nothing more on stdout
        # (the interpreter's last flush would fail again) and exit as a tool
        # killed by SIGPIPE would.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        return 128 + 13


# Descriptors a role needs at the most at once: the standard three, the loop's
# pipe, the lock, a record being written, a probe's socket, the file watcher's
# inotify, a pidfd, a /proc listing, a module being imported, and some room.
MIN_FILES = 16


def _check_file_limit() -> None:
    """Refuse a hopeless limit on open files, after trying to raise it.

    Far too few descriptors would fail somewhere in the middle (a record not
    written, a probe that cannot connect); refusing at once is one clear line,
    and the main's failed record is still written (``_record_failure``). The
    usual case costs one ``sysconf``: ``resource`` is loaded only for a low limit.
    """
    try:
        soft = os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return
    if soft < 0 or soft >= MIN_FILES:
        return
    import resource  # noqa: PLC0415 - only for a limit that is too low

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard if hard != resource.RLIM_INFINITY else MIN_FILES
    if soft < MIN_FILES:
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


def _collect_from_now() -> None:
    """Turn the collector back on if ``__main__.start`` turned it off, with what
    the start-up made kept out of every later collection."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _dispatch(config: Any) -> int:
    if isinstance(config, SidecarConfig | MainConfig):
        _check_file_limit()
        role = "sidecar" if isinstance(config, SidecarConfig) else "main"
        log.configure(config.log_format, config.log_level, role=role, name=config.name)
        if isinstance(config, SidecarConfig):
            from supervisor import sidecar_role  # noqa: PLC0415 - each role loads what it needs

            _collect_from_now()
            return sidecar_role.run(config, restore_signals=False)  # the process exits next
        from supervisor import main_role  # noqa: PLC0415

        _collect_from_now()
        return main_role.run(config, restore_signals=False)
    _collect_from_now()
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
