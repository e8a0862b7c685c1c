"""The command line as a user meets it: ``python -m supervisor`` in a subprocess.

Help and version, one-line usage errors from flags and from variables, the
flag > variable > default rule checked by what gets written, and the ``done``
and ``status`` commands.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor import __version__
from supervisor.config import OPTIONS, env_name
from tests.conftest import StartContainer
from tests.support import PRINT_SIGNALS, SUPERVISOR, TIMEOUT, read_json

ENV_PREFIX = "SIDECAR_SUPERVISOR_"


def cli(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> Any:
    """Run the supervisor with a clean SIDECAR_SUPERVISOR_* environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return subprocess.run(
        [*SUPERVISOR, *(os.fspath(arg) for arg in args)],
        capture_output=True,
        text=True,
        env={**clean, ENV_PREFIX + "LOG_FORMAT": "json", **(env or {})},
        check=False,
        timeout=TIMEOUT,
    )


def log_events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines()]


# --- help and version ----------------------------------------------------------


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"sidecar-supervisor {__version__}\n"


@functools.cache
def help_text(*command: str) -> str:
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return " ".join(str(result.stdout).split())  # undo the line wrapping


def test_top_level_help_names_the_commands_and_the_variables() -> None:
    text = help_text()
    for command in ("sidecar", "main", "done", "status", "--version"):
        assert command in text
    assert ENV_PREFIX in text


COMMON = ("--dir", "--name", "--log-format", "--log-level")
DOCUMENTED_FLAGS = {  # the README's option tables ("Options")
    "sidecar": (
        *COMMON,
        *("--wait-for", "--wait-mode", "--marker", "--watch-process", "--stop-on"),
        *("--stop-delay", "--stop-signal", "--stop-http", "--stop-command", "--grace-period"),
        *("--term-hold", "--restart", "--exit-code", "--ready-http", "--ready-tcp"),
        *("--ready-command", "--ready-file"),
    ),
    "main": (
        *COMMON,
        *("--wait-ready", "--wait-http", "--wait-tcp", "--ready-timeout"),
        *("--on-ready-timeout", "--quit-http", "--stop-on", "--preset"),
    ),
    "done": (*COMMON, "--exit-code"),
}


def _help_cases() -> list[tuple[str, str]]:
    """The README's flags and every flag of the option table, per command."""
    return [
        (command, flag)
        for command, documented in DOCUMENTED_FLAGS.items()
        for flag in sorted(set(documented) | {option.flag for option in OPTIONS[command]})
    ]


@pytest.mark.parametrize(("command", "flag"), _help_cases())
def test_help_names_every_flag_and_its_variable(command: str, flag: str) -> None:
    text = help_text(command)
    assert f"{flag} " in f"{text} "
    assert env_name(flag) in text


def test_status_help_names_json() -> None:
    assert "--json" in help_text("status")


def _choice_cases() -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (command, option.flag, tuple(option.parse.choices))
        for command, options in OPTIONS.items()
        for option in options
        if hasattr(option.parse, "choices")
    ]


def test_every_choice_option_is_found() -> None:
    flags = {flag for _, flag, _ in _choice_cases()}
    wanted = {"--preset", "--restart", "--exit-code", "--wait-mode", "--stop-on"}
    wanted |= {"--on-ready-timeout", "--log-format", "--log-level", "--format"}
    assert wanted <= flags


@pytest.mark.parametrize(("command", "flag", "choices"), _choice_cases())
def test_help_lists_the_choices(command: str, flag: str, choices: tuple[str, ...]) -> None:
    assert f"{flag} {'|'.join(choices)} " in help_text(command)


def test_help_says_each_default_once_and_right() -> None:
    sidecar, done, main = help_text("sidecar"), help_text("done"), help_text("main")
    wait_for = sidecar.split("--wait-for NAME", 1)[1].split("--wait-mode", 1)[0]
    assert "default: main, unless --marker or --watch-process" in wait_for
    assert "default none" not in wait_for
    stop_signal = sidecar.split("--stop-signal SIG", 1)[1].split("--stop-http", 1)[0]
    assert stop_signal.count("default") == 1
    assert "main for main and done" in done
    assert "GRACE_PERIOD; default 10]" in main  # whole seconds, as the README writes them
    assert "default False" not in help_text("demo")


def test_demo_usage_names_its_options() -> None:
    usage = help_text("demo").split("options:", 1)[0]
    assert "--without-supervisor" in usage
    assert "--task-seconds" in usage
    assert "seed" not in help_text()


# --- mistyped command lines ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["main", "--grace", "3"], "did you mean --grace-period? (flags are never abbreviated)"),
        (["main", "--grace=3"], "did you mean --grace-period?"),
        (["sidecar", "--wait", "main"], "--wait"),
        (["demo", "--without"], "did you mean --without-supervisor?"),
        (
            ["main", "--ready-tcp", "db:5432"],
            "sidecar option, not main's; the main's gate is --wait-tcp",
        ),
        (["main", "--ready-http", "http://x/"], "the main's gate is --wait-http"),
        (["sidecar", "--wait-tcp", "db:5432"], "main option, not sidecar's; a sidecar reports"),
        (["sidecar", "--quit-http", "http://x/"], "--stop-http"),
        (["done", "--wait-for", "x"], "--wait-for is a sidecar option, not done's"),
        (["main", "--grace-perod", "3"], "did you mean --grace-period?"),
        (["status", "--jsn"], "did you mean --json?"),
        (["mian"], "unknown command 'mian'; did you mean 'main'?"),
        (["stauts"], "did you mean 'status'?"),
        (["--verison"], "did you mean --version?"),
        (["status", "extra"], "status takes no argument 'extra'"),
    ],
)
def test_mistyped_command_lines_get_the_nearest_fix(
    tmp_path: Path, args: list[str], hint: str
) -> None:
    command = args[0] if args[0] in OPTIONS else "status"
    flags = args[1:] if args[0] in OPTIONS else args
    if args[0] not in OPTIONS:  # a mistyped command or a top-level flag: run as given
        result = cli(*args)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert hint in result.stderr
        return
    assert_usage_error(tmp_path, [command, *flags], {}, hint)


def test_an_abbreviation_never_stands_for_a_flag(tmp_path: Path) -> None:
    """Not even when it is unambiguous today: a new flag would break the manifest."""
    assert_usage_error(tmp_path, ["main", "--grace", "3"], {}, "--grace")
    assert_usage_error(tmp_path, ["sidecar", "--term", "3"], {}, "--term-hold")
    assert_usage_error(tmp_path, ["status", "--js"], {}, "--json")


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    """``demo | head``: the reader leaves; the demo stops its containers and says nothing."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    try:
        result = subprocess.run(
            [*SUPERVISOR, "demo", "--task-seconds", "0.1"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=clean,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141  # as a tool killed by SIGPIPE
    assert result.stderr == ""
    # The autouse fixture fails the test if a "container" was left running.


def test_status_json_into_a_closed_pipe(tmp_path: Path) -> None:
    for number in range(300):  # more than a pipe's buffer of JSON
        assert cli("done", "--dir", tmp_path, "--name", f"job-{number}").returncode == 0
    result = subprocess.run(
        [
            "sh",
            "-c",
            '"$@" | head -c 10',
            "sh",
            *SUPERVISOR,
            "status",
            "--dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0
    assert len(result.stdout) == 10
    assert result.stderr == ""


def test_no_command_is_a_usage_error() -> None:
    result = cli()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# --- usage errors ----------------------------------------------------------------

CMD = ("--", "sh", "-c", 'touch "$0"')  # COMMAND: leaves a trace if it runs


def assert_usage_error(tmp_path: Path, args: list[str], env: dict[str, str], named: str) -> None:
    """Exit 2, one line on stderr naming ``named``, nothing run and nothing written."""
    command, *flags = args
    trace = tmp_path / "command-ran"
    tail = [*CMD, str(trace)] if command in ("main", "sidecar") else []
    env = {ENV_PREFIX + "DIR": str(tmp_path / "volume"), **env}

    result = cli(command, *flags, *tail, env=env)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert list(tmp_path.iterdir()) == []  # no volume, no COMMAND, nothing outside


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        pytest.param(["main", "--grace-period", "abc"], "--grace-period", id="grace-abc"),
        pytest.param(["main", "--grace-period", "-1"], "--grace-period", id="grace-negative"),
        pytest.param(["main", "--grace-period"], "--grace-period", id="grace-no-value"),
        pytest.param(["sidecar", "--stop-signal", "NOPE"], "--stop-signal", id="stop-signal"),
        pytest.param(["sidecar", "--wait-mode", "some"], "--wait-mode", id="wait-mode"),
        pytest.param(["sidecar", "--wait-for", "a/b"], "--wait-for", id="wait-for"),
        pytest.param(["main", "--name", "../x"], "--name", id="name-dotdot"),
        pytest.param(["main", "--name", ".hidden"], "--name", id="name-hidden"),
        pytest.param(["main", "--name", "a/b"], "--name", id="name-slash"),
        pytest.param(["main", "--nope"], "--nope", id="unknown-flag"),
        pytest.param(["main", "--log-level", "loud"], "--log-level", id="log-level"),
        pytest.param(["done", "--exit-code", "256"], "--exit-code", id="done-exit-code"),
    ],
)
def test_bad_flag_is_one_line_naming_it(tmp_path: Path, args: list[str], flag: str) -> None:
    assert_usage_error(tmp_path, args, {}, flag)


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        pytest.param("main", "GRACE_PERIOD", "abc", id="grace-abc"),
        pytest.param("main", "GRACE_PERIOD", "-1", id="grace-negative"),
        pytest.param("sidecar", "STOP_SIGNAL", "NOPE", id="stop-signal"),
        pytest.param("sidecar", "WAIT_MODE", "some", id="wait-mode"),
        pytest.param("sidecar", "WAIT_FOR", "ok,a/b", id="wait-for"),
        pytest.param("main", "NAME", "../x", id="name-dotdot"),
        pytest.param("main", "NAME", ".hidden", id="name-hidden"),
        pytest.param("main", "NAME", "a/b", id="name-slash"),
        pytest.param("main", "LOG_LEVEL", "loud", id="log-level"),
        pytest.param("done", "EXIT_CODE", "abc", id="done-exit-code"),
    ],
)
def test_bad_variable_is_one_line_naming_it(
    tmp_path: Path, command: str, variable: str, value: str
) -> None:
    variable = ENV_PREFIX + variable
    assert_usage_error(tmp_path, [command], {variable: value}, variable)


def test_missing_command_is_one_line(tmp_path: Path) -> None:
    result = cli("main", "--dir", tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "COMMAND" in lines[0]
    # The main never ran: its failed record tells the sidecars, who would wait otherwise.
    assert [p.name for p in tmp_path.iterdir()] == ["main.done"]
    record = json.loads((tmp_path / "main.done").read_text())
    assert (record["exit_code"], record["reason"]) == (2, "UsageError")
    assert "COMMAND" in record["why"]


# --- precedence: flag > variable > default ---------------------------------------------


@pytest.mark.parametrize(
    ("env_value", "flag_value", "written"),
    [
        pytest.param(None, None, "main", id="default"),
        pytest.param("fromenv", None, "fromenv", id="variable"),
        pytest.param("fromenv", "fromflag", "fromflag", id="flag"),
    ],
)
def test_name_precedence(
    tmp_path: Path, env_value: str | None, flag_value: str | None, written: str
) -> None:
    env = {} if env_value is None else {ENV_PREFIX + "NAME": env_value}
    flags = [] if flag_value is None else ["--name", flag_value]

    result = cli("main", "--dir", tmp_path, *flags, "--", "true", env=env)

    assert result.returncode == 0, result.stderr
    done = sorted(p.name for p in tmp_path.glob("*.done"))
    assert done == [f"{written}.done"]
    assert read_json(tmp_path / f"{written}.done")["name"] == written


def test_dir_precedence(tmp_path: Path) -> None:
    from_env, from_flag = tmp_path / "env", tmp_path / "flag"
    env = {ENV_PREFIX + "DIR": str(from_env)}

    assert cli("main", "--", "true", env=env).returncode == 0
    assert cli("main", "--dir", from_flag, "--", "true", env=env).returncode == 0

    assert read_json(from_env / "main.done")["attempt"] == 1  # one run each
    assert read_json(from_flag / "main.done")["attempt"] == 1


@pytest.mark.parametrize(
    ("flags", "awaited"),
    [
        pytest.param([], ["first", "second"], id="variable-list"),
        pytest.param(["--wait-for", "third"], ["third"], id="flag-beats-variable"),
    ],
)
def test_repeatable_variable_is_a_comma_separated_list(
    tmp_path: Path, flags: list[str], awaited: list[str]
) -> None:
    """Every awaited container is done already: the sidecar exits 0 without COMMAND.

    Had it waited for anything else, COMMAND would have run and ended it with 9.
    """
    for name in awaited:
        (tmp_path / f"{name}.done").write_text("0\n")
    env = {ENV_PREFIX + "WAIT_FOR": "first, second"}

    result = cli(
        "sidecar",
        "--dir",
        tmp_path,
        "--restart",
        "never",
        *flags,
        "--",
        "sh",
        "-c",
        "exit 9",
        env=env,
    )

    assert result.returncode == 0, result.stderr
    complete = [e for e in log_events(result.stderr) if e["event"] == "already_complete"]
    assert len(complete) == 1
    assert complete[0]["waited_for"] == awaited


# --- done and status ------------------------------------------------------------------


def test_done_writes_the_main_marker(tmp_path: Path) -> None:
    volume = tmp_path / "volume"  # created if missing
    result = cli("done", "--dir", volume)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    record = read_json(volume / "main.done")
    assert record["name"] == "main"
    assert record["exit_code"] == 0
    assert record["signal"] is None
    assert record["reason"] == "Completed"
    assert isinstance(record["finished_at"], str)


def test_done_marker_ends_a_sidecar_at_once(tmp_path: Path) -> None:
    result = cli("done", "--dir", tmp_path, "--name", "x", "--exit-code", "3")
    assert result.returncode == 0, result.stderr
    assert read_json(tmp_path / "x.done")["exit_code"] == 3

    trace = tmp_path / "command-ran"
    sidecar = cli("sidecar", "--dir", tmp_path, "--wait-for", "x", *CMD, str(trace))

    assert sidecar.returncode == 0, sidecar.stderr
    assert not trace.exists()
    assert any(e["event"] == "already_complete" for e in log_events(sidecar.stderr))


def test_done_ends_a_running_sidecar(start: StartContainer, shared: Path) -> None:
    side = start("sidecar", "--dir", shared, "--wait-for", "x", "--", *PRINT_SIGNALS)
    side.expect(r"ready \(pid")

    assert cli("done", "--dir", shared, "--name", "x", "--exit-code", "3").returncode == 0

    assert side.wait() == 0
    detected = side.event("completion_detected")
    assert detected["target"] == "x"
    assert detected["exit_code"] == 3


def status_json(directory: Path) -> dict[str, dict[str, Any]]:
    result = cli("status", "--dir", directory, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dir"] == str(directory)
    return {entry["name"]: entry for entry in report["containers"]}


def test_status_after_main_runs(tmp_path: Path) -> None:
    assert cli("main", "--dir", tmp_path, "--name", "ok", "--", "true").returncode == 0
    assert (
        cli("main", "--dir", tmp_path, "--name", "job", "--", "sh", "-c", "exit 3").returncode == 3
    )

    entries = status_json(tmp_path)

    assert sorted(entries) == ["job", "ok"]
    ok, job = entries["ok"], entries["job"]
    assert (ok["state"], ok["exit_code"], ok["reason"], ok["attempt"]) == (
        "done",
        0,
        "Completed",
        1,
    )
    assert (job["state"], job["exit_code"], job["reason"], job["attempt"]) == (
        "failed",
        3,
        "Error",
        1,
    )
    assert isinstance(job["started_at"], str)

    assert isinstance(job["duration_s"], float)
    assert isinstance(job["finished_at"], str)

    table = cli("status", "--dir", tmp_path)
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        *("NAME", "STATE", "ATTEMPT", "EXIT_CODE", "SIGNAL", "DURATION", "WAITS_FOR", "NOTE")
    ]
    assert [row.split()[:5] for row in rows] == [
        ["job", "failed", "1", "3", "-"],
        ["ok", "done", "1", "0", "-"],
    ]
    assert rows[0].split()[-1] == "Error"


def test_status_of_a_running_then_signaled_main(start: StartContainer, shared: Path) -> None:
    main = start("main", "--dir", shared, "--", *PRINT_SIGNALS)
    main.expect(r"ready \(pid")
    assert status_json(shared)["main"]["state"] == "running"

    main.signal(signal.SIGTERM)
    assert main.wait() == 143

    entry = status_json(shared)["main"]
    assert (entry["state"], entry["exit_code"], entry["reason"]) == ("failed", None, "Signaled")
    assert entry["signal"] == signal.SIGTERM
    assert cli("status", "--dir", shared).stdout.splitlines()[1].split()[4] == "SIGTERM"


def test_status_of_a_main_that_died_without_a_record(start: StartContainer, shared: Path) -> None:
    main = start("main", "--dir", shared, "--", *PRINT_SIGNALS)
    main.expect(r"ready \(pid")
    if not main.namespaced:
        pytest.skip("needs a PID namespace, so that SIGKILL takes COMMAND down too")
    main.signal(signal.SIGKILL)  # the namespace's PID 1: everything in it dies
    main.wait()

    assert status_json(shared)["main"]["state"] == "died"


@contextlib.contextmanager
def live_wrapper(directory: Path, name: str, started: dict[str, Any]) -> Iterator[None]:
    """``NAME.started`` as a wrapper writes it, and its lock held as by a live wrapper."""
    (directory / f"{name}.started").write_text(json.dumps(started))
    fd = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


STARTED = {"pid": 1, "attempt": 1, "started_at": "2030-01-01T00:00:00.000Z"}


def test_status_shows_what_each_sidecar_waits_for_and_a_main_at_its_gates(
    tmp_path: Path,
) -> None:
    """Optional fields of ``.started`` (docs/PROTOCOL.md): a typo in --wait-for shows."""
    assert cli("done", "--dir", tmp_path, "--name", "main").returncode == 0
    proxy = {**STARTED, "name": "proxy", "role": "sidecar", "waits_for": ["main", "mian"]}
    job = {**STARTED, "name": "job", "role": "main", "gates": ["proxy.ready", "db:5432"]}
    with live_wrapper(tmp_path, "proxy", proxy), live_wrapper(tmp_path, "job", job):
        entries = status_json(tmp_path)
        table = cli("status", "--dir", tmp_path).stdout

    assert (entries["proxy"]["role"], entries["proxy"]["state"]) == ("sidecar", "running")
    assert entries["proxy"]["waits_for"] == ["main", "mian"]
    assert (entries["job"]["role"], entries["job"]["state"]) == ("main", "gated")
    assert entries["job"]["gates"] == ["proxy.ready", "db:5432"]
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "main, mian (no records)" in rows["proxy"]
    assert "proxy.ready, db:5432" in rows["job"]
    assert "waiting at its gates" in rows["job"]


def test_status_of_records_without_the_optional_fields(tmp_path: Path) -> None:
    with live_wrapper(tmp_path, "old", {**STARTED, "name": "old"}):
        entry = status_json(tmp_path)["old"]

    assert (entry["state"], entry["role"], entry["waits_for"], entry["gates"]) == (
        "running",
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("required", "code", "said"),
    [
        pytest.param(["main=done"], 0, "", id="met"),
        pytest.param(["main=done", "proxy=ready|running"], 0, "", id="one-of"),
        pytest.param(["main=failed"], 1, "status: main is done, not failed\n", id="other-state"),
        pytest.param(["proxy=ready"], 1, "status: proxy is running, not ready\n", id="running"),
        pytest.param(["nope=done"], 1, "status: nope has no records, not done\n", id="absent"),
    ],
)
def test_status_require_is_a_check_for_scripts(
    tmp_path: Path, required: list[str], code: int, said: str
) -> None:
    assert cli("done", "--dir", tmp_path, "--name", "main").returncode == 0
    flags = [word for value in required for word in ("--require", value)]
    with live_wrapper(tmp_path, "proxy", {**STARTED, "name": "proxy"}):
        result = cli("status", "--dir", tmp_path, "--json", *flags)
        from_variable = cli(
            "status", "--dir", tmp_path, env={ENV_PREFIX + "REQUIRE": ",".join(required)}
        )

    assert (result.returncode, result.stderr) == (code, said)
    assert json.loads(result.stdout)["containers"]  # the report is printed all the same
    assert (from_variable.returncode, from_variable.stderr) == (code, said)


def test_status_require_of_a_missing_directory_fails(tmp_path: Path) -> None:
    result = cli("status", "--dir", tmp_path / "absent", "--require", "main=done")
    assert result.returncode == 1
