"""Startup and shutdown ordering, end to end with real processes.

Startup: the main waits for its gates (a sidecar's ``.ready``, an HTTP answer,
an accepted connection) and gives up as ``--on-ready-timeout`` says. Shutdown:
sidecars stop through an HTTP call, a command or a signal, after a delay that
lets a log shipper read the last lines, in reverse order of ``--wait-for``, and
after the main when the whole pod is deleted; the main tells proxies it cannot
wrap to quit. Each container is a real supervisor in its own PID namespace
(where allowed), all sharing one directory as the emptyDir.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartContainer
from tests.http_server import RecordingServer
from tests.support import HERE, PRINT_SIGNALS, SUPERVISOR, TIMEOUT, Container, read_json, wait_until

FAKE_PROXY = [sys.executable, str(HERE / "helpers" / "fake_proxy.py")]
FAST = ("--ready-interval", "0.1")  # check gates and probes often: the tests wait less


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as recording:
        yield recording


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def free_port() -> int:
    """An ephemeral port nobody uses right now, for a server that must be told its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def names(container: Container) -> list[str]:
    return [e["event"] for e in container.events()]


def has_event(container: Container, name: str) -> bool:
    return name in names(container)


def before(container: Container, first: str, then: str) -> bool:
    """``first`` was logged, and before the first ``then``."""
    logged = names(container)
    return first in logged and then in logged and logged.index(first) < logged.index(then)


def stopped_exit(container: Container) -> dict[str, Any]:
    """The sidecar's ``child_exited`` for the stop it started."""
    found = [
        e
        for e in container.events()
        if e["event"] == "child_exited" and e.get("before_completion") is False
    ]
    assert len(found) == 1, container.events()
    return found[0]


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def q(path: Path) -> str:
    return shlex.quote(str(path))


# A child that runs until SIGTERM, then takes a second to finish (like a main
# that flushes its work), appending "NAME-term" and "NAME-exit" to ORDER.
SLOW_TO_STOP = (
    "trap 'echo {name}-term >> {order}; sleep 1; echo {name}-exit >> {order}; exit 0' TERM; "
    "echo {name}-up; while :; do sleep 0.1; done"
)
# A child that says, when SIGTERM arrives, whether MARKER existed by then.
REPORTS_MARKER_AT_TERM = (
    "trap 'if [ -f {marker} ]; then echo TERM after {label}; "
    "else echo TERM before {label}; fi; exit 0' TERM; "
    "echo up; while :; do sleep 0.1; done"
)


# --- startup: the main's gates ------------------------------------------------


def test_main_starts_only_after_the_sidecar_is_ready(start: StartContainer, shared: Path) -> None:
    primary = start(
        "main",
        "--dir",
        shared,
        "--wait-ready",
        "sidecar",
        *FAST,
        "--",
        *sh(f"cat {q(shared / 'sidecar.ready')} && echo was-ready"),
    )
    wait_until(lambda: has_event(primary, "waiting_for_gates"), what="waiting_for_gates")
    port = free_port()
    side = start(
        "sidecar",
        "--dir",
        shared,
        "--ready-http",
        f"http://127.0.0.1:{port}/ready",
        *FAST,
        "--",
        *FAKE_PROXY,
        "--ready-after",
        "3",
        "--port",
        str(port),
    )

    assert primary.wait() == 0
    ready, was_ready = primary.rest_of_output()
    assert was_ready == "was-ready"
    assert json.loads(ready)["name"] == "sidecar"  # what the main found as it started
    assert before(primary, "gates_ready", "child_started")
    assert side.wait() == 0
    # Three 503s before the 200 that made the sidecar ready.
    assert side.rest_of_output().count("GET /ready") == 4
    assert not (shared / "sidecar.ready").exists()  # it left with the sidecar
    assert side.event("child_ready")["probe"] == f"http http://127.0.0.1:{port}/ready"


def test_the_gate_opens_on_the_file_event_not_at_the_next_interval(
    start: StartContainer, shared: Path
) -> None:
    """The main checks a peer's ``.ready`` again when the file appears: with an
    hour between its checks, only the file event can open the gate in time."""
    hour = ("--ready-interval", "3600", "--ready-timeout", "7200")
    primary = start("main", "--dir", shared, "--wait-ready", "sidecar", *hour, "--", "true")
    wait_until(lambda: has_event(primary, "waiting_for_probe"), what="the first check failed")
    side = start(
        "sidecar", "--dir", shared, "--ready-command", "true", *FAST, "--", *sh("sleep 600")
    )

    assert primary.wait() == 0
    assert before(primary, "gates_ready", "child_started")
    assert side.wait() == 0  # it stops once the main is done


def test_main_waits_for_an_http_gate(start: StartContainer, shared: Path) -> None:
    proxy = start(
        "sidecar", "--dir", shared, "--name", "proxy", "--", *FAKE_PROXY, "--ready-after", "3"
    )
    port = proxy.expect(r"listening on (\d+)").group(1)
    primary = start(
        "main",
        "--dir",
        shared,
        "--wait-http",
        f"http://127.0.0.1:{port}/ready",
        *FAST,
        "--",
        "echo",
        "started",
    )

    assert primary.wait() == 0
    assert primary.rest_of_output() == ["started"]
    assert primary.event("waiting_for_probe")["last"] == "HTTP 503"
    assert before(primary, "gates_ready", "child_started")
    assert proxy.wait() == 0
    proxy.rest_of_output()
    assert proxy.output.count("GET /ready") == 4  # three 503s, then the 200


def test_main_waits_for_a_tcp_gate(start: StartContainer, shared: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening yet: connections are refused
        port = sock.getsockname()[1]
        primary = start(
            "main",
            "--dir",
            shared,
            "--wait-tcp",
            f"127.0.0.1:{port}",
            *FAST,
            "--",
            "echo",
            "started",
        )
        wait_until(lambda: has_event(primary, "waiting_for_probe"), what="a refused connection")
        assert has_event(primary, "waiting_for_gates")
        assert primary.running
        assert not has_event(primary, "child_started")
        sock.listen()

        assert primary.wait() == 0
    assert primary.rest_of_output() == ["started"]
    assert before(primary, "gates_ready", "child_started")
    assert primary.event("waiting_for_gates")["gates"] == [f"tcp 127.0.0.1:{port}"]


def test_ready_timeout_fail_skips_command_and_stops_the_sidecar(
    start: StartContainer, shared: Path, closed_port: int
) -> None:
    side = start("sidecar", "--dir", shared, "--", *PRINT_SIGNALS)
    side.expect(r"ready \(pid")
    primary = start(
        "main",
        "--dir",
        shared,
        "--wait-tcp",
        f"127.0.0.1:{closed_port}",
        "--ready-timeout",
        "1",
        "--on-ready-timeout",
        "fail",
        *FAST,
        "--",
        *sh(f"touch {q(shared / 'ran')}; echo ran"),
    )

    assert primary.wait() == 1
    assert primary.rest_of_output() == []
    assert not (shared / "ran").exists()
    done = read_json(shared / "main.done")
    assert done["reason"] == "ReadyTimeout"
    assert done["exit_code"] == 1
    assert primary.event("ready_timeout")["level"] == "error"
    assert not has_event(primary, "child_started")

    assert side.wait() == 0
    assert side.rest_of_output() == [str(int(signal.SIGTERM))]
    detected = side.event("completion_detected")
    assert (detected["target"], detected["exit_code"]) == ("main", 1)


def test_ready_timeout_start_runs_command_anyway(
    start: StartContainer, shared: Path, closed_port: int
) -> None:
    primary = start(
        "main",
        "--dir",
        shared,
        "--wait-tcp",
        f"127.0.0.1:{closed_port}",
        "--ready-timeout",
        "1",
        "--on-ready-timeout",
        "start",
        *FAST,
        "--",
        *sh("echo ran; exit 4"),
    )

    assert primary.wait() == 4
    assert primary.rest_of_output() == ["ran"]
    assert primary.event("ready_timeout")["level"] == "warning"
    assert before(primary, "ready_timeout", "child_started")
    assert read_json(shared / "main.done")["exit_code"] == 4


# --- shutdown: how a sidecar asks its child to stop ---------------------------


def test_stop_http_quits_the_proxy_without_a_signal(start: StartContainer, shared: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/quitquitquit"
    side = start(
        "sidecar", "--dir", shared, "--stop-http", url, "--", *FAKE_PROXY, "--port", str(port)
    )
    side.expect(rf"listening on {port}")
    primary = start("main", "--dir", shared, "--", "true")

    assert primary.wait() == 0
    assert side.wait() == 0
    assert "POST /quitquitquit" in side.rest_of_output()
    exited = stopped_exit(side)
    assert exited["exit_code"] == 0  # exited on its own: SIGTERM would make it 143
    assert "signal" not in exited
    assert side.event("stop_requested")["actions"] == [f"POST {url}"]
    assert not has_event(side, "grace_period_expired")
    assert read_json(shared / "sidecar.done")["exit_code"] == 0


def test_stop_command_asks_the_child_to_stop(start: StartContainer, shared: Path) -> None:
    quit_file = shared / "quit"
    child = (
        "trap 'echo got-TERM; exit 143' TERM; echo watching; "
        f"while [ ! -f {q(quit_file)} ]; do sleep 0.05; done; echo quitting"
    )
    side = start(
        "sidecar",
        "--dir",
        shared,
        "--stop-command",
        f"touch {q(quit_file)}",
        "--stop-signal",
        "none",
        "--",
        *sh(child),
    )
    side.expect("watching")
    assert not quit_file.exists()
    primary = start("main", "--dir", shared, "--", "true")

    assert primary.wait() == 0
    assert side.wait() == 0
    assert side.rest_of_output() == ["quitting"]
    assert quit_file.exists()
    assert stopped_exit(side)["exit_code"] == 0
    assert not has_event(side, "grace_period_expired")


def test_main_abandons_a_hanging_quit_endpoint(
    start: StartContainer, shared: Path, server: RecordingServer
) -> None:
    server.hang.add("/hang")
    primary = start(
        "main", "--dir", shared, "--quit-http", server.url("/hang"), "--", *sh("exit 3")
    )

    assert primary.wait() == 3
    server.wait_for("POST", "/hang")
    assert read_json(shared / "main.done")["exit_code"] == 3
    abandoned = [
        e
        for e in primary.events()
        if e["event"] == "http_call_abandoned" or (e["event"] == "quit_http_sent" and "error" in e)
    ]
    assert abandoned, primary.events()
    assert not any(e["event"] == "quit_http_sent" and "status" in e for e in primary.events())


def test_sidecar_signals_when_the_stop_endpoint_hangs(
    start: StartContainer, shared: Path, server: RecordingServer
) -> None:
    server.hang.add("/hang")
    side = start(
        "sidecar",
        "--dir",
        shared,
        "--stop-http",
        server.url("/hang"),
        "--stop-signal",
        "TERM",
        "--",
        *PRINT_SIGNALS,
    )
    side.expect(r"ready \(pid")
    primary = start("main", "--dir", shared, "--", "true")

    assert primary.wait() == 0
    assert side.wait() == 0
    # POSTed before the signal (README, "The `sidecar` role", step 4): by now it has
    # arrived or it never will.
    server.wait_for("POST", "/hang", timeout=10)
    assert side.rest_of_output() == [str(int(signal.SIGTERM))]
    assert stopped_exit(side)["signal"] == "SIGTERM"
    assert not has_event(side, "grace_period_expired")


# --- the main's quit calls ----------------------------------------------------


@pytest.mark.parametrize("code", [0, 3])
def test_quit_http_is_posted_after_command_exits(
    start: StartContainer, shared: Path, server: RecordingServer, code: int
) -> None:
    server.on_request = lambda _method, _path: (shared / "main.done").exists()
    primary = start(
        "main",
        "--dir",
        shared,
        "--quit-http",
        server.url("/quitquitquit"),
        "--",
        *sh(f"echo working; exit {code}"),
    )

    assert primary.wait() == code
    assert primary.rest_of_output() == ["working"]
    assert [(r.method, r.path) for r in server.requests] == [("POST", "/quitquitquit")]
    assert server.requests[0].seen is True  # main.done was there when the call arrived
    sent = primary.event("quit_http_sent")
    assert (sent["url"], sent["status"]) == (server.url("/quitquitquit"), 200)


def test_stop_on_success_sends_no_quit_after_a_failure(
    start: StartContainer, shared: Path, server: RecordingServer
) -> None:
    primary = start(
        "main",
        "--dir",
        shared,
        "--quit-http",
        server.url("/quitquitquit"),
        "--stop-on",
        "success",
        "--",
        *sh("exit 1"),
    )

    assert primary.wait() == 1
    assert server.requests == []  # the role sends its calls before it exits
    assert has_event(primary, "quit_skipped")
    assert not has_event(primary, "quit_http_sent")
    assert read_json(shared / "main.done")["exit_code"] == 1


# --- presets --------------------------------------------------------------------


def test_istio_preset_fills_wait_and_quit_urls(start: StartContainer, shared: Path) -> None:
    primary = start(
        "main", "--dir", shared, "--preset", "istio", "--ready-timeout", "0.5", "--", "true"
    )

    assert primary.wait() == 1  # nothing answers on 15021 here
    gates = primary.event("waiting_for_gates")["gates"]
    assert len(gates) == 1
    assert "http://127.0.0.1:15021/healthz/ready" in gates[0]
    assert primary.event("quit_http_sent")["url"] == "http://127.0.0.1:15020/quitquitquit"
    assert read_json(shared / "main.done")["reason"] == "ReadyTimeout"


@pytest.mark.parametrize("source", ["flag", "env"])
def test_explicit_wait_http_replaces_the_presets(
    start: StartContainer, shared: Path, server: RecordingServer, source: str
) -> None:
    url = server.url("/healthz")
    flag = ("--wait-http", url) if source == "flag" else ()
    env = {"SIDECAR_SUPERVISOR_WAIT_HTTP": url} if source == "env" else None
    primary = start(
        "main",
        "--dir",
        shared,
        "--preset",
        "istio",
        *flag,
        *FAST,
        "--",
        "echo",
        "started",
        env=env,
    )

    assert primary.wait() == 0
    assert primary.rest_of_output() == ["started"]
    gates = primary.event("waiting_for_gates")["gates"]
    assert len(gates) == 1
    assert url in gates[0]
    assert server.received("GET", "/healthz")
    # The preset still fills what was not given: the quit URL.
    assert primary.event("quit_http_sent")["url"] == "http://127.0.0.1:15020/quitquitquit"


# --- shutdown order -------------------------------------------------------------


def test_log_shipper_reads_the_last_line_before_it_stops(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    log_file = tmp_path / "app.log"
    log_file.touch()
    shipper = start(
        "sidecar",
        "--dir",
        shared,
        "--name",
        "logs",
        "--stop-delay",
        "1",
        "--",
        "tail",
        "-n",
        "+1",
        "-F",
        log_file,
    )
    wait_until(lambda: has_event(shipper, "child_started"), what="tail to start")
    primary = start(
        "main",
        "--dir",
        shared,
        "--",
        *sh(f"echo 'first line' >> {q(log_file)}; echo 'LAST LINE' >> {q(log_file)}"),
    )

    assert primary.wait() == 0
    assert shipper.wait() == 0
    shipped = shipper.rest_of_output()
    assert shipped[-2:] == ["first line", "LAST LINE"]
    assert before(shipper, "stop_delayed", "stop_requested")


def test_pod_deletion_holds_the_sidecar_until_the_main_is_done(
    start: StartContainer, shared: Path
) -> None:
    side = start(
        "sidecar",
        "--dir",
        shared,
        "--term-hold",
        "60",
        "--",
        *sh(REPORTS_MARKER_AT_TERM.format(marker=q(shared / "main.done"), label="main.done")),
    )
    side.expect("up")
    primary = start(
        "main",
        "--dir",
        shared,
        "--",
        *sh(
            "trap 'sleep 1; echo main-stopping; exit 0' TERM; "
            "echo main-up; while :; do sleep 0.1; done"
        ),
    )
    primary.expect("main-up")
    pids = (side.supervisor_pid, primary.supervisor_pid)
    for pid in pids:  # the kubelet deletes the pod: SIGTERM to every container at once
        os.kill(pid, signal.SIGTERM)

    assert primary.wait() == 0
    assert primary.rest_of_output() == ["main-stopping"]
    assert read_json(shared / "main.done")["exit_code"] == 0
    assert side.wait() == 0
    # Exactly one SIGTERM reached the sidecar's child, and only once main.done existed.
    assert side.rest_of_output() == ["TERM after main.done"]
    assert before(side, "term_hold_started", "completion_detected")
    assert before(side, "completion_detected", "stop_requested")
    assert stopped_exit(side)["exit_code"] == 0


def test_chained_sidecars_stop_in_reverse_order(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    order = tmp_path / "order"
    waits = {"a": ["main"], "b": ["main", "a"], "c": ["main", "a", "b"]}
    sidecars = {}
    for name, targets in waits.items():
        flags = [arg for target in targets for arg in ("--wait-for", target)]
        sidecars[name] = start(
            "sidecar",
            "--dir",
            shared,
            "--name",
            name,
            *flags,
            "--",
            *sh(SLOW_TO_STOP.format(name=name, order=q(order))),
        )
    for name, container in sidecars.items():
        container.expect(f"{name}-up")
    primary = start("main", "--dir", shared, "--", "true")

    assert primary.wait() == 0
    for container in sidecars.values():
        assert container.wait() == 0
    # Each stop begins only after the one it waits for has finished.
    assert order.read_text().split() == ["a-term", "a-exit", "b-term", "b-exit", "c-term", "c-exit"]
    for name in waits:
        assert read_json(shared / f"{name}.done")["exit_code"] == 0
    detected = {e["target"] for e in sidecars["c"].events() if e["event"] == "completion_detected"}
    assert detected == {"main", "a", "b"}


def test_proxy_stays_up_until_the_log_shipper_has_stopped(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    order = tmp_path / "order"
    shipper = start(
        "sidecar",
        "--dir",
        shared,
        "--name",
        "logs",
        "--",
        *sh(SLOW_TO_STOP.format(name="logs", order=q(order))),
    )
    proxy = start(
        "sidecar",
        "--dir",
        shared,
        "--name",
        "proxy",
        "--wait-for",
        "main",
        "--wait-for",
        "logs",
        "--",
        *sh(REPORTS_MARKER_AT_TERM.format(marker=q(shared / "logs.done"), label="logs.done")),
    )
    shipper.expect("logs-up")
    proxy.expect("up")
    primary = start("main", "--dir", shared, "--", "true")

    assert primary.wait() == 0
    assert shipper.wait() == 0
    assert proxy.wait() == 0
    assert proxy.rest_of_output() == ["TERM after logs.done"]
    assert order.read_text().split() == ["logs-term", "logs-exit"]
    assert stopped_exit(proxy)["exit_code"] == 0


# --- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "args", "named"),
    [
        ("sidecar", ["--ready-http", "notaurl"], "--ready-http"),
        ("sidecar", ["--ready-tcp", "nohostport"], "--ready-tcp"),
        ("sidecar", ["--stop-http", "ftp://127.0.0.1/quit"], "--stop-http"),
        ("sidecar", ["--stop-signal", "NOPE"], "--stop-signal"),
        ("sidecar", ["--stop-command", "unbalanced 'quote"], "--stop-command"),
        ("main", ["--wait-tcp", "nohostport"], "--wait-tcp"),
        ("main", ["--wait-tcp", "host:99999"], "--wait-tcp"),
        ("main", ["--wait-http", "notaurl"], "--wait-http"),
        ("main", ["--quit-http", "notaurl"], "--quit-http"),
        ("main", ["--preset", "nope"], "--preset"),
        ("main", ["--on-ready-timeout", "later"], "--on-ready-timeout"),
    ],
)
def test_bad_ordering_flags_are_one_line_usage_errors(
    shared: Path, role: str, args: list[str], named: str
) -> None:
    marker = shared / "ran"
    result = subprocess.run(
        [*SUPERVISOR, role, "--dir", shared, *args, "--", "touch", marker],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert_only_a_failed_record(shared, role)


def assert_only_a_failed_record(shared: Path, role: str) -> None:
    """Nothing ran: a main leaves its failed record (the sidecars wait for it), a
    sidecar nothing."""
    if role == "sidecar":
        assert list(shared.iterdir()) == []
        return
    assert [p.name for p in shared.iterdir()] == ["main.done"]
    record = read_json(shared / "main.done")
    assert (record["exit_code"], record["reason"]) == (2, "UsageError")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SIDECAR_SUPERVISOR_WAIT_TCP", "nohostport"),
        ("SIDECAR_SUPERVISOR_PRESET", "nope"),
    ],
)
def test_bad_ordering_variables_name_the_variable(shared: Path, variable: str, value: str) -> None:
    result = subprocess.run(
        [*SUPERVISOR, "main", "--dir", shared, "--", "true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
        env={**os.environ, variable: value},
    )

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert_only_a_failed_record(shared, "main")
