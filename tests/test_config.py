"""Option parsing and resolution: flag > environment variable > default.

Every test passes its own ``env`` mapping; ``os.environ`` is never read or changed.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import cli, parser
from supervisor.config import (
    DEFAULT_DIR,
    OPTIONS,
    DoneConfig,
    MainConfig,
    SidecarConfig,
    StatusConfig,
    defaults,
    resolve,
)
from supervisor.errors import UsageError
from supervisor.markers import valid_name
from supervisor.values import (
    container_name,
    duration,
    exit_status,
    positive_duration,
    signal_number,
)

COMMAND = ("fluent-bit", "-c", "/etc/fb.conf")
PREFIX = "SIDECAR_SUPERVISOR_"


def sidecar(given: dict[str, Any] | None = None, /, **env: str) -> SidecarConfig:
    config = resolve("sidecar", given or {}, COMMAND, env={PREFIX + k: v for k, v in env.items()})
    assert isinstance(config, SidecarConfig)
    return config


# --- value parsers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("10", 10.0), ("1.5", 1.5), (".25", 0.25), ("1e2", 100.0), (" 2 ", 2.0)],
)
def test_duration_accepts_seconds(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1.5h", 5400.0),
        ("2h45m", 9900.0),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("250\u00b5s", 0.00025),
        ("0s", 0.0),
        (" 10s ", 10.0),
    ],
)
def test_duration_accepts_go_durations(text: str, seconds: float) -> None:
    """Kubernetes users type ``30s`` by habit: Go's time.ParseDuration form."""
    assert duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        *("", " ", "abc", "-1", "-0.5", "nan", "inf", "-inf", "1e999"),
        *("s", "5x", "1d", "-1s", "1s2", "5 s", "1..2s", ".s", "1m-1s", "s5", "1S"),
        "9" * 400 + "h",
    ],
)
def test_duration_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the user's one line
        duration(text)


def test_duration_error_shows_both_forms() -> None:
    with pytest.raises(ValueError, match=r"1\.5.*1m30s"):
        duration("soon")


def test_duration_flags_and_variables_take_go_durations() -> None:
    config = sidecar({"grace_period": "1m"}, TERM_HOLD="500ms")

    assert (config.grace_period, config.term_hold) == (60.0, 0.5)


def test_positive_duration_rejects_zero_but_not_a_little_more() -> None:
    assert positive_duration("0.01") == 0.01
    with pytest.raises(ValueError, match="more than zero"):
        positive_duration("0")
    with pytest.raises(ValueError):  # noqa: PT011
        positive_duration("-1")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("TERM", 15),
        ("SIGTERM", 15),
        ("sigterm", 15),
        ("term", 15),
        ("15", 15),
        ("KILL", 9),
        ("SIGKILL", 9),
        ("9", 9),
        ("INT", 2),
        ("QUIT", 3),
        ("USR1", int(signal.SIGUSR1)),
        ("HUP", 1),
    ],
)
def test_signal_number_takes_names_and_numbers(text: str, number: int) -> None:
    assert signal_number(text) == number


@pytest.mark.parametrize(
    "text", ["NOPE", "SIGNOPE", "0", "999", "-15", "15.0", "", "SIG", "SIG_DFL"]
)
def test_signal_number_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        signal_number(text)


@pytest.mark.parametrize("text", ["main", "logs", "log-shipper", "a.b_c-1", "0", "x."])
def test_container_name_accepts_plain_file_names(text: str) -> None:
    assert container_name(text) == text


@pytest.mark.parametrize("text", ["", ".", "..", ".hidden", "a/b", "../main", "a b", "main\n"])
def test_container_name_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        container_name(text)


@pytest.mark.parametrize(("text", "code"), [("0", 0), ("1", 1), ("3", 3), ("255", 255)])
def test_exit_status_accepts_0_to_255(text: str, code: int) -> None:
    assert exit_status(text) == code


@pytest.mark.parametrize("text", ["", "abc", "-1", "256", "1.5", "0x1"])
def test_exit_status_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        exit_status(text)


# --- resolve: precedence ------------------------------------------------------------


def test_sidecar_defaults_are_the_documented_ones() -> None:
    config = sidecar()

    assert config == SidecarConfig(
        **{**defaults("sidecar"), "name": "sidecar", "command": COMMAND, "wait_for": ("main",),
           "stop_signal": 15}
    )  # fmt: skip
    assert config.dir == Path("/run/sidecar-supervisor")
    assert (config.log_format, config.log_level) == ("auto", "info")
    assert (config.wait_for, config.wait_mode, config.marker) == (("main",), "all", ())
    assert (config.stop_on, config.stop_delay, config.stop_signal) == ("exit", 0.0, 15)
    assert (config.grace_period, config.term_hold) == (10.0, 25.0)
    assert (config.restart, config.exit_policy) == ("always", "zero")


@pytest.mark.parametrize(
    ("dest", "flag_value", "env_value", "expected"),
    [
        # expected: (from the flag, from the variable, the default)
        ("grace_period", "3", "5", (3.0, 5.0, 10.0)),
        ("stop_signal", "KILL", "INT", (9, 2, 15)),
        ("name", "proxy", "logs", ("proxy", "logs", "sidecar")),
        ("wait_mode", "any", "all", ("any", "all", "all")),
        ("dir", "/flag", "/env", (Path("/flag"), Path("/env"), Path(DEFAULT_DIR))),
        ("stop_on", "success", "exit", ("success", "exit", "exit")),
        ("term_hold", "0", "7.5", (0.0, 7.5, 25.0)),
        ("wait_for", ["a"], "b", (("a",), ("b",), ("main",))),
    ],
)
def test_flag_beats_variable_beats_default(
    dest: str, flag_value: Any, env_value: str, expected: tuple[Any, Any, Any]
) -> None:
    env = {dest.upper(): env_value}
    from_flag, from_env, default = expected

    assert getattr(sidecar({dest: flag_value}, **env), dest) == from_flag
    assert getattr(sidecar({}, **env), dest) == from_env
    assert getattr(sidecar({}), dest) == default


def test_flag_wins_even_over_an_invalid_variable() -> None:
    assert sidecar({"grace_period": "3"}, GRACE_PERIOD="soon").grace_period == 3.0


def test_flags_parsed_by_the_cli_reach_resolve() -> None:
    args = parser.build_parser().parse_args(
        ["sidecar", "--grace-period", "3", "--wait-for", "main", "--wait-for", "logs"]
    )

    config = resolve("sidecar", vars(args), COMMAND, env={PREFIX + "GRACE_PERIOD": "5"})

    assert isinstance(config, SidecarConfig)
    assert config.grace_period == 3.0
    assert config.wait_for == ("main", "logs")


def _argparse_reading(head: list[str]) -> tuple[str, dict[str, object]] | None:
    """What the full parser makes of ``head``, in parse_plain's terms; None if it refuses."""
    try:
        args, unknown = parser.build_parser().parse_known_args(head)
    except UsageError:
        return None
    given = {k: v for k, v in vars(args).items() if v is not None and k != "command"}
    if unknown or given.pop("argv_command", None) or given.pop("dest", None):
        return None
    return args.command, given


_VALUES = ["x", "3", "-1", "", "main", "a=b", "--help", "-h", "--version", "--nope", "-f"]


@st.composite
def _command_lines(draw: st.DrawFn) -> list[str]:
    """A command, then mostly its own flags each with a value (``--flag value`` or
    ``--flag=value``), now and then a stray word."""
    command = draw(st.sampled_from(sorted(OPTIONS)))
    flags = sorted(o.flag for o in OPTIONS[command])
    flag, value = st.sampled_from(flags), st.sampled_from(_VALUES)
    unit = st.one_of(
        st.tuples(flag, value).map(list),
        st.tuples(flag, value).map(lambda fv: ["=".join(fv)]),
        st.tuples(flag).map(list),
        st.tuples(value).map(list),
    )
    units = draw(st.lists(unit, max_size=4))
    return [command, *(word for words in units for word in words)]


@given(head=_command_lines())
@settings(max_examples=500, deadline=None)
def test_the_plain_reading_agrees_with_argparse(head: list[str]) -> None:
    """A line parse_plain takes means what argparse makes of it, and it leaves
    argparse every line argparse would refuse or treat otherwise."""
    plain = cli.parse_plain(head)
    if plain is not None:
        assert plain == _argparse_reading(head)


def test_repeatable_flag_from_a_comma_separated_variable() -> None:
    assert sidecar(WAIT_FOR="a, b,,c").wait_for == ("a", "b", "c")


def test_repeatable_markers_from_a_variable() -> None:
    config = sidecar(MARKER="/a/done, /b/done")

    assert config.marker == (Path("/a/done"), Path("/b/done"))


def test_repeated_flags_beat_the_variable() -> None:
    assert sidecar({"wait_for": ["x", "y"]}, WAIT_FOR="a,b").wait_for == ("x", "y")


@pytest.mark.parametrize("variable", ["GRACE_PERIOD", "NAME", "STOP_SIGNAL", "DIR", "WAIT_FOR"])
def test_empty_variable_counts_as_unset(variable: str) -> None:
    assert sidecar(**{variable: ""}) == sidecar()


# --- resolve: usage errors --------------------------------------------------------


@pytest.mark.parametrize(
    ("dest", "value"),
    [
        ("grace_period", "soon"),
        ("stop_delay", "-1"),
        ("poll_interval", "0"),
        ("stop_signal", "NOPE"),
        ("name", "../etc"),
        ("wait_for", ["ok", "bad/name"]),
        ("wait_mode", "some"),
        ("restart", "sometimes"),
        ("log_level", "loud"),
    ],
)
def test_bad_flag_is_a_usage_error_naming_the_flag(dest: str, value: Any) -> None:
    flag = "--" + dest.replace("_", "-")

    with pytest.raises(UsageError, match=f"^{flag}: ") as caught:
        sidecar({dest: value})

    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GRACE_PERIOD", "soon"),
        ("STOP_SIGNAL", "999"),
        ("NAME", ".hidden"),
        ("WAIT_FOR", "main, a/b"),
        ("WAIT_MODE", "ALL"),
        ("POLL_INTERVAL", "nan"),
    ],
)
def test_bad_variable_is_a_usage_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(UsageError, match=f"^{PREFIX}{variable}\\b"):
        sidecar(**{variable: value})


def test_bad_variable_for_done_names_the_variable() -> None:
    with pytest.raises(UsageError, match=f"{PREFIX}EXIT_CODE"):
        resolve("done", {}, env={PREFIX + "EXIT_CODE": "300"})


@pytest.mark.parametrize("pattern", ["", "(", "[a-", "a{99999999999}", "(?P<"])
def test_bad_watch_process_regex_is_a_usage_error(pattern: str) -> None:
    with pytest.raises(UsageError, match=r"^--watch-process: "):
        sidecar({"watch_process": pattern})
    if pattern:
        with pytest.raises(UsageError, match=f"^{PREFIX}WATCH_PROCESS"):
            sidecar(WATCH_PROCESS=pattern)


@pytest.mark.parametrize("command", ["sidecar", "main"])
def test_missing_command_is_a_usage_error(command: str) -> None:
    with pytest.raises(UsageError, match="COMMAND"):
        resolve(command, {}, (), env={})


def test_wait_for_defaults_to_main() -> None:
    assert sidecar().wait_for == ("main",)


def test_marker_alone_needs_no_wait_for() -> None:
    config = sidecar({"marker": ["/work/finished"]})

    assert config.wait_for == ()
    assert config.marker == (Path("/work/finished"),)


def test_marker_from_the_variable_alone_needs_no_wait_for() -> None:
    assert sidecar(MARKER="/work/finished").wait_for == ()


def test_marker_and_wait_for_together() -> None:
    config = sidecar({"marker": ["/work/finished"], "wait_for": ["main"]})

    assert config.wait_for == ("main",)
    assert config.marker == (Path("/work/finished"),)


@pytest.mark.parametrize(
    ("given", "env"),
    [
        ({"name": "main"}, {}),
        ({"name": "logs", "wait_for": ["main", "logs"]}, {}),
        ({}, {"NAME": "main"}),
        ({}, {"NAME": "proxy", "WAIT_FOR": "main,proxy"}),
    ],
)
def test_sidecar_cannot_wait_for_itself(given: dict[str, Any], env: dict[str, str]) -> None:
    with pytest.raises(UsageError, match=r"--wait-for.*itself"):
        sidecar(given, **env)


def test_other_commands_resolve() -> None:
    main = resolve("main", {}, ("./job",), env={PREFIX + "GRACE_PERIOD": "1"})
    done = resolve("done", {"exit_code": "3"}, env={})
    status = resolve("status", {"json": True}, env={PREFIX + "DIR": "/shared"})

    assert main == MainConfig(
        **{**defaults("main"), "name": "main", "command": ("./job",), "grace_period": 1.0}
    )
    assert done == DoneConfig(**{**defaults("done"), "name": "main", "exit_code": 3})
    assert status == StatusConfig(**{**defaults("status"), "dir": Path("/shared"), "json": True})


# --- properties ---------------------------------------------------------------------

SIDECAR_VARIABLES = sorted(option.env for option in OPTIONS["sidecar"])
# Anything an environment variable can hold: every code point but NUL, lone
# surrogates included (undecodable bytes arrive as surrogate escapes).
env_text = st.text(st.characters(exclude_characters="\0", exclude_categories=()), max_size=20)
plausible = st.sampled_from(
    [
        *("0", "1", "1.5", "-1", "nan", "TERM", "9", "none", "main", "logs", "a,b"),
        *("all", "any", "never", "success", "http://127.0.0.1:1/quit", "localhost:80"),
        *("[::1]:65536", "sh -c 'x", "python.*job", "(", "a{99999999999}"),
    ]
)


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(st.sampled_from(SIDECAR_VARIABLES), env_text | plausible))
def test_any_environment_resolves_or_is_a_usage_error(env: dict[str, str]) -> None:
    error: str | None = None
    try:
        config = resolve("sidecar", {}, COMMAND, env=env)
    except UsageError as exc:
        error = str(exc)
    if error is not None:
        assert error
        assert "\n" not in error
        return

    assert isinstance(config, SidecarConfig)
    assert valid_name(config.name)
    assert all(valid_name(name) for name in config.wait_for)
    assert config.name not in config.wait_for
    assert config.wait_for or config.marker or config.watch_process
    assert config.grace_period >= 0
    assert config.poll_interval > 0
    valid_signals = {int(s) for s in signal.valid_signals()}
    assert config.stop_signal is None or config.stop_signal in valid_signals


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_flags_resolve_or_are_a_usage_error(data: st.DataObject) -> None:
    given_flags: dict[str, Any] = {}
    for option in OPTIONS["sidecar"]:
        if data.draw(st.booleans(), label=option.flag):
            value = env_text | plausible
            given_flags[option.dest] = data.draw(
                st.lists(value, min_size=1, max_size=3) if option.repeat else value,
                label=option.flag,
            )
    error: str | None = None
    try:
        config = resolve("sidecar", given_flags, COMMAND, env={})
    except UsageError as exc:
        error = str(exc)
    if error is not None:
        assert error.startswith("--"), error
        return

    assert isinstance(config, SidecarConfig)
    assert config.name not in config.wait_for


# --- status --require --------------------------------------------------------------


def test_status_require_takes_name_equals_states() -> None:
    config = resolve("status", {"require": ["main=done", "proxy=ready|running"]}, env={})

    assert isinstance(config, StatusConfig)
    assert config.require == (("main", ("done",)), ("proxy", ("ready", "running")))


@pytest.mark.parametrize("value", ["main", "main=", "main=finished", "=done", "a/b=done"])
def test_status_require_refuses_anything_else(value: str) -> None:
    with pytest.raises(UsageError, match=r"^--require: "):
        resolve("status", {"require": [value]}, env={})


def test_status_require_from_its_variable() -> None:
    config = resolve("status", {}, env={PREFIX + "REQUIRE": "main=done, proxy=ready"})

    assert isinstance(config, StatusConfig)
    assert config.require == (("main", ("done",)), ("proxy", ("ready",)))
