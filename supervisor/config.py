"""Every option in one table, and the one rule that resolves it.

Each option has a flag and an environment variable named
``SIDECAR_SUPERVISOR_`` + the flag in upper case with ``-`` as ``_``. A flag
beats its variable, which beats the default; a repeatable flag takes a
comma-separated list from its variable; an empty variable counts as unset.
The result is an immutable NamedTuple per command, built in ``resolve`` (not a
dataclass: defining dataclasses costs tens of milliseconds at every start, and
start-up time is part of the product).
"""

import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

from supervisor.errors import UsageError
from supervisor.values import (
    boolean,
    choice,
    command_line,
    container_name,
    count,
    duration,
    entrypoint,
    exit_status,
    host_port,
    http_url,
    path,
    positive_duration,
    regex,
    requirement,
    stop_signal,
    text,
)

ENV_PREFIX = "SIDECAR_SUPERVISOR_"
DEFAULT_DIR = "/run/sidecar-supervisor"


WaitMode = Literal["all", "any"]
StopOn = Literal["exit", "success"]
RestartPolicy = Literal["never", "on-failure", "always"]
ExitPolicy = Literal["zero", "child", "main"]
OnReadyTimeout = Literal["fail", "start"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
Preset = Literal["istio", "linkerd", "cloud-sql-proxy"]
MeshPreset = Literal["istio", "linkerd"]
CheckFormat = Literal["text", "json"]
# What ``status`` says of a container (docs/PROTOCOL.md and README, "done and status").
ContainerState = Literal["waiting", "gated", "running", "ready", "done", "failed", "died"]


def one_of(kind: Any) -> Callable[[str], str]:
    """The value parser of a choice option, from its Literal type."""
    return choice(*get_args(kind))


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


# --- the table ----------------------------------------------------------------


class Option(NamedTuple):
    flag: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    repeat: bool = False
    metavar: str | None = None
    switch: bool = False  # a flag without a value; its variable takes 1/true/yes or 0/false/no
    short: str | None = None  # a one-letter alias, like -f
    field: str | None = None  # the configuration's field, when not named after the flag

    @property
    def dest(self) -> str:
        return self.field or self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return env_name(self.flag)


COMMON = (
    Option(
        "--dir",
        path,
        Path(DEFAULT_DIR),
        "the shared volume (an emptyDir in every container)",
        metavar="DIR",
    ),
    Option(
        "--log-format", one_of(LogFormat), "auto", "auto: readable on a TTY, JSON lines otherwise"
    ),
    Option("--log-level", one_of(LogLevel), "info", "least important events to log"),
)

NAME = Option(
    "--name",
    container_name,
    None,
    "this container's name in the markers (default: sidecar for sidecar, main for main and done)",
    metavar="NAME",
)
GRACE = Option(
    "--grace-period",
    duration,
    10.0,
    "seconds from the stop request to SIGKILL of the whole process group",
    metavar="S",
)
TERMINATION_LOG = Option(
    "--termination-log",
    path,
    Path("/dev/termination-log"),
    "one-line summary written here on exit, if the file exists",
    metavar="PATH",
)
READY_INTERVAL = Option(
    "--ready-interval", positive_duration, 0.5, "seconds between readiness checks", metavar="S"
)
PROBE_TIMEOUT = Option(
    "--probe-timeout", positive_duration, 2.0, "seconds one readiness check may take", metavar="S"
)
AUTO_SIGNAL = -1  # TERM, unless an HTTP call or a command asks for the stop

# Each proxy's own readiness and quit endpoints (see the README for the flags or
# annotations that turn them on). Presets only fill what no flag or variable set.
PRESETS: dict[Preset, dict[str, tuple[str, ...]]] = {
    "istio": {
        "wait_http": ("http://127.0.0.1:15021/healthz/ready",),
        "quit_http": ("http://127.0.0.1:15020/quitquitquit",),
    },
    "linkerd": {
        "wait_http": ("http://127.0.0.1:4191/ready",),
        "quit_http": ("http://127.0.0.1:4191/shutdown",),
    },
    "cloud-sql-proxy": {
        "wait_http": ("http://127.0.0.1:9090/startup",),
        "quit_http": ("http://127.0.0.1:9091/quitquitquit",),
    },
}

POLL = Option(
    "--poll-interval",
    positive_duration,
    2.0,
    "seconds between rescans of the shared dir (a fallback for lost file events)",
    metavar="S",
)

# The gates before COMMAND starts, in both roles.
WAIT_READY = Option(
    "--wait-ready",
    container_name,
    (),
    "wait for <dir>/NAME.ready before starting",
    repeat=True,
    metavar="NAME",
)
READY_TIMEOUT = Option(
    "--ready-timeout", duration, 60.0, "seconds to wait for all the gates", metavar="S"
)
ON_READY_TIMEOUT = Option(
    "--on-ready-timeout",
    one_of(OnReadyTimeout),
    "fail",
    "fail: exit 1 and still write the completion record; start: run COMMAND anyway",
)


SIDECAR = (
    NAME,
    Option(
        "--wait-for",
        container_name,
        (),
        "containers whose completion ends this sidecar (default: main, unless --marker or "
        "--watch-process is given)",
        repeat=True,
        metavar="NAME",
    ),
    Option(
        "--wait-mode",
        one_of(WaitMode),
        "all",
        "stop when all of them have completed, or when any has",
    ),
    Option(
        "--marker",
        path,
        (),
        "a file whose appearance also counts as completion",
        repeat=True,
        metavar="PATH",
    ),
    Option(
        "--watch-process",
        regex,
        None,
        "completion = exit of the process whose command line matches (shared PID namespace)",
        metavar="REGEX",
    ),
    Option(
        "--process-timeout",
        duration,
        60.0,
        "seconds to wait for --watch-process to appear; then it counts as a failed completion",
        metavar="S",
    ),
    Option(
        "--start-timeout",
        duration,
        600.0,
        "seconds for each --wait-for container to start (its wrapper to write NAME.started); "
        "then it counts as a failed completion; 0: wait forever",
        metavar="S",
    ),
    Option(
        "--stop-on",
        one_of(StopOn),
        "exit",
        "success: a failed main does not stop the sidecar (restartPolicy: OnFailure)",
    ),
    Option(
        "--stop-delay",
        duration,
        0.0,
        "seconds to wait between completion and the stop",
        metavar="S",
    ),
    Option(
        "--stop-signal",
        stop_signal,
        AUTO_SIGNAL,
        "signal that asks the child to stop (name, number or none; default TERM, or none "
        "when --stop-http or --stop-command is given)",
        metavar="SIG",
    ),
    Option(
        "--stop-http",
        http_url,
        (),
        "POST this URL to ask the child to stop",
        repeat=True,
        metavar="URL",
    ),
    Option(
        "--stop-command",
        command_line,
        (),
        "run this command (split like a shell, no shell) to ask the child to stop",
        metavar="CMD",
    ),
    Option(
        "--ready-http",
        http_url,
        None,
        "the child is ready when this URL answers 2xx",
        metavar="URL",
    ),
    Option(
        "--ready-tcp",
        host_port,
        None,
        "the child is ready when HOST:PORT accepts",
        metavar="HOST:PORT",
    ),
    Option(
        "--ready-command",
        command_line,
        (),
        "the child is ready when this command exits 0",
        metavar="CMD",
    ),
    Option("--ready-file", path, None, "the child is ready when this file exists", metavar="PATH"),
    READY_INTERVAL,
    PROBE_TIMEOUT,
    Option(
        "--live-http",
        http_url,
        None,
        "restart the child when this URL fails to answer 2xx --live-failures times in a row",
        metavar="URL",
    ),
    Option(
        "--live-tcp",
        host_port,
        None,
        "restart the child when HOST:PORT refuses --live-failures times in a row",
        metavar="HOST:PORT",
    ),
    Option(
        "--live-command",
        command_line,
        (),
        "restart the child when this command fails --live-failures times in a row",
        metavar="CMD",
    ),
    Option(
        "--live-interval",
        positive_duration,
        10.0,
        "seconds between liveness checks (the first one an interval after the child is ready)",
        metavar="S",
    ),
    Option(
        "--live-failures",
        count,
        3,
        "liveness checks that must fail in a row before the child is restarted",
        metavar="N",
    ),
    WAIT_READY,
    READY_TIMEOUT,
    ON_READY_TIMEOUT,
    GRACE,
    Option(
        "--term-hold",
        duration,
        25.0,
        "on SIGTERM/SIGINT before completion, keep the child up this long waiting for "
        "the mains; 0 stops at once",
        metavar="S",
    ),
    Option(
        "--restart",
        one_of(RestartPolicy),
        "always",
        "restart the child if it exits before completion (always: whatever its status)",
    ),
    Option(
        "--exit-code",
        one_of(ExitPolicy),
        "zero",
        "exit status after a stop the supervisor started",
        field="exit_policy",
    ),
    POLL,
    TERMINATION_LOG,
)

MAIN = (
    NAME,
    WAIT_READY,
    Option(
        "--wait-http",
        http_url,
        (),
        "wait for a 2xx answer from URL before starting",
        repeat=True,
        metavar="URL",
    ),
    Option(
        "--wait-tcp",
        host_port,
        (),
        "wait until HOST:PORT accepts before starting",
        repeat=True,
        metavar="HOST:PORT",
    ),
    READY_TIMEOUT,
    ON_READY_TIMEOUT,
    READY_INTERVAL,
    PROBE_TIMEOUT,
    Option(
        "--quit-http",
        http_url,
        (),
        "POST URL after COMMAND ends (proxies you cannot wrap)",
        repeat=True,
        metavar="URL",
    ),
    Option(
        "--stop-on",
        one_of(StopOn),
        "exit",
        "success: after a failure send no quit requests (restartPolicy: OnFailure)",
    ),
    Option(
        "--preset",
        one_of(Preset),
        None,
        "fill --wait-http and --quit-http with that proxy's endpoints",
    ),
    GRACE,
    TERMINATION_LOG,
)

DONE = (
    NAME,
    Option("--exit-code", exit_status, 0, "exit code to record", metavar="N"),
    Option("--reason", text, "Completed", "reason to record", metavar="TEXT"),
)

STATUS = (
    Option("--json", boolean, False, "print JSON for machines", switch=True),
    Option(
        "--require",
        requirement(*get_args(ContainerState)),
        (),
        "exit 1 unless container NAME is in STATE (several as STATE|STATE): "
        + ", ".join(get_args(ContainerState)),
        repeat=True,
        metavar="NAME=STATE",
    ),
)

DEMO = (
    Option(
        "--without-supervisor",
        boolean,
        False,
        "run the same pair bare, to see the Job that cannot complete",
        switch=True,
    ),
    Option(
        "--task-seconds",
        positive_duration,
        1.0,
        "how long each of the main's tasks takes",
        metavar="S",
    ),
)

COPY = (
    Option(
        "--bundle",
        path,
        None,
        "the bundle folder to copy (default: the running bundle, else /opt/sidecar-supervisor)",
        metavar="PATH",
    ),
)

INJECT = (
    Option(
        "--file",
        path,
        Path("-"),
        "the manifest to read; - for standard input",
        metavar="FILE",
        short="-f",
    ),
    Option(
        "--main",
        container_name,
        (),
        "a main container (default: the annotation sidecar-supervisor/mains, else the first "
        "container)",
        repeat=True,
        metavar="NAME",
    ),
    Option(
        "--image",
        text,
        None,
        "the image built from the Dockerfile, for the init container that copies the bundle "
        "(required: no image is published)",
        metavar="IMAGE",
    ),
    Option(
        "--native",
        boolean,
        False,
        "rewrite for native sidecars (Kubernetes 1.29+) instead of wrapping",
        switch=True,
    ),
    Option(
        "--entrypoint",
        entrypoint,
        (),
        "the command of a container that has none in the manifest (its image's ENTRYPOINT; "
        "the image's CMD is then not used: give it as args)",
        repeat=True,
        metavar="NAME=CMD",
    ),
    Option(
        "--preset",
        one_of(MeshPreset),
        None,
        "the mesh that injects a proxy into these pods, when the manifest does not show it "
        "(namespace-level injection); default: from the pod's labels and annotations",
    ),
)

CHECK = (
    Option(
        "--file",
        path,
        Path("-"),
        "the manifest to read (Jobs, CronJobs, Pods, Lists); - for standard input",
        metavar="FILE",
        short="-f",
    ),
    Option("--format", one_of(CheckFormat), "text", "text: one line per finding; json"),
)

OPTIONS: dict[str, tuple[Option, ...]] = {
    "sidecar": COMMON + SIDECAR,
    "main": COMMON + MAIN,
    "done": COMMON + DONE,
    "status": COMMON + STATUS,
    "demo": DEMO,
    "inject": INJECT,
    "check": CHECK,
    "copy": tuple(option for option in COMMON if option.flag != "--dir") + COPY,
}


# --- resolved configurations -------------------------------------------------


# Field types only: every default is the option table's (``resolve`` fills it).


class SidecarConfig(NamedTuple):
    dir: Path
    name: str
    command: tuple[str, ...]
    log_format: LogFormat
    log_level: LogLevel
    wait_for: tuple[str, ...]
    wait_mode: WaitMode
    marker: tuple[Path, ...]
    watch_process: str | None
    process_timeout: float
    start_timeout: float
    stop_on: StopOn
    stop_delay: float
    stop_signal: int | None
    stop_http: tuple[str, ...]
    stop_command: tuple[str, ...]
    ready_http: str | None
    ready_tcp: str | None
    ready_command: tuple[str, ...]
    ready_file: Path | None
    ready_interval: float
    probe_timeout: float
    live_http: str | None
    live_tcp: str | None
    live_command: tuple[str, ...]
    live_interval: float
    live_failures: int
    wait_ready: tuple[str, ...]
    ready_timeout: float
    on_ready_timeout: OnReadyTimeout
    grace_period: float
    term_hold: float
    restart: RestartPolicy
    exit_policy: ExitPolicy
    poll_interval: float
    termination_log: Path


class MainConfig(NamedTuple):
    dir: Path
    name: str
    command: tuple[str, ...]
    log_format: LogFormat
    log_level: LogLevel
    wait_ready: tuple[str, ...]
    wait_http: tuple[str, ...]
    wait_tcp: tuple[str, ...]
    ready_timeout: float
    on_ready_timeout: OnReadyTimeout
    ready_interval: float
    probe_timeout: float
    quit_http: tuple[str, ...]
    stop_on: StopOn
    preset: Preset | None
    grace_period: float
    termination_log: Path


class DoneConfig(NamedTuple):
    dir: Path
    name: str
    exit_code: int
    reason: str
    log_format: LogFormat
    log_level: LogLevel


class StatusConfig(NamedTuple):
    dir: Path
    json: bool
    require: tuple[tuple[str, tuple[str, ...]], ...]
    log_format: LogFormat
    log_level: LogLevel


class InjectConfig(NamedTuple):
    file: Path
    main: tuple[str, ...]
    image: str | None
    native: bool
    entrypoint: tuple[tuple[str, tuple[str, ...]], ...]
    preset: MeshPreset | None


class CheckConfig(NamedTuple):
    file: Path
    format: CheckFormat


class DemoConfig(NamedTuple):
    without_supervisor: bool
    task_seconds: float


class CopyConfig(NamedTuple):
    dest: Path
    bundle: Path | None
    log_format: LogFormat
    log_level: LogLevel


def defaults(command: str) -> dict[str, Any]:
    """Every option's default for ``command``, from the table."""
    return {option.dest: option.default for option in OPTIONS[command]}


Config = (
    SidecarConfig
    | MainConfig
    | DoneConfig
    | StatusConfig
    | DemoConfig
    | InjectConfig
    | CheckConfig
    | CopyConfig
)


def _value(option: Option, given: Any, env: Mapping[str, str]) -> Any:
    """flag > environment variable > default, each parsed the same way."""
    try:
        if given is not None and given != []:
            if option.repeat:
                return tuple(option.parse(item) for item in given)
            if option.switch:
                return bool(given)
            return option.parse(given)
        raw = env.get(option.env, "")
        if raw:
            if option.repeat:
                return tuple(option.parse(item.strip()) for item in raw.split(",") if item.strip())
            return option.parse(raw)
    except ValueError as exc:
        source = option.flag if given not in (None, []) else f"{option.env} (for {option.flag})"
        raise UsageError(f"{source}: {exc}") from None
    return option.default


def resolve(
    command: str,
    given: Mapping[str, Any],
    argv_command: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the frozen configuration of ``command`` from parsed flags and ``env``."""
    env = os.environ if env is None else env
    values = {opt.dest: _value(opt, given.get(opt.dest), env) for opt in OPTIONS[command]}
    if command in ("sidecar", "main"):
        if not argv_command:
            raise UsageError(f"{command}: no COMMAND given; put it after '--'")
        values["command"] = argv_command
        values["name"] = values["name"] or command
    if command == "sidecar":
        if not values["wait_for"] and not values["marker"] and not values["watch_process"]:
            values["wait_for"] = ("main",)
        if values["name"] in values["wait_for"]:
            raise UsageError(f"--wait-for: a sidecar cannot wait for itself ({values['name']!r})")
        live = values["live_http"] or values["live_tcp"] or values["live_command"]
        if live and values["restart"] == "never":
            raise UsageError(
                "--live-*: a failed liveness probe restarts the child; --restart never forbids it"
            )
        if values["name"] in values["wait_ready"]:
            raise UsageError(f"--wait-ready: a sidecar cannot wait for itself ({values['name']!r})")
        if values["stop_signal"] == AUTO_SIGNAL:
            asked_otherwise = values["stop_http"] or values["stop_command"]
            values["stop_signal"] = None if asked_otherwise else int(signal.SIGTERM)
        return SidecarConfig(**values)
    if command == "main":
        if values["preset"] is not None:
            for key, preset_value in PRESETS[values["preset"]].items():
                values[key] = values[key] or preset_value
        return MainConfig(**values)
    if command == "done":
        values["name"] = values["name"] or "main"
        return DoneConfig(**values)
    if command == "demo":
        return DemoConfig(**values)
    if command == "inject":
        return InjectConfig(**values)
    if command == "check":
        return CheckConfig(**values)
    if command == "copy":
        dest = given.get("dest")
        if not dest:
            raise UsageError("copy: no DEST given; name the folder to copy the bundle into")
        try:
            values["dest"] = path(dest)
        except ValueError as exc:
            raise UsageError(f"copy: DEST: {exc}") from None
        return CopyConfig(**values)
    return StatusConfig(**values)
