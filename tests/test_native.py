"""What native sidecars do that the wrapper does too: liveness, startup order, restarts.

Real supervisors, each in its own PID namespace (where allowed), sharing one
directory as the pod's ``emptyDir``; real TCP ports, a real loopback HTTP
server, real probe commands. A child's health is decided by the child (a
listener it closes, a file it writes before it listens), never by a clock.
"""

from __future__ import annotations

import shlex
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.config import SidecarConfig, resolve
from supervisor.errors import UsageError
from supervisor.events import LivenessFailed
from supervisor.loop import Loop
from supervisor.sidecar_role import Phase, Sidecar
from tests.conftest import StartContainer
from tests.http_server import RecordingServer
from tests.kubelet import has_event, logged, nth_run, pod_phase, wait_for_event
from tests.support import HERE, PRINT_SIGNALS, Container, read_json, wait_until

TCP_SERVICE = [sys.executable, str(HERE / "helpers" / "tcp_service.py")]
STAYS = shlex.join(["exec", *PRINT_SIGNALS])
FAST = ("--ready-interval", "0.1")
LIVE = ("--live-interval", "0.2", "--live-failures", "2")
TERM = str(int(signal.SIGTERM))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def finish_main(shared: Path) -> None:
    (shared / "main.done").write_text("0\n")


def q(path: Path) -> str:
    return shlex.quote(str(path))


@pytest.fixture
def server(shared: Path) -> Iterator[RecordingServer]:
    """``GET /live`` answers 500 while ``shared/sick`` exists, 200 otherwise."""

    def health(method: str, path: str) -> bool:
        healthy = not (shared / "sick").exists()
        recording.status[path] = 200 if healthy else 500
        return healthy

    with RecordingServer(on_request=health) as recording:
        yield recording


# --- the options ------------------------------------------------------------------------


def test_liveness_and_gate_options_default_like_kubernetes() -> None:
    config = resolve("sidecar", {}, ("true",), env={})
    assert isinstance(config, SidecarConfig)
    assert (config.live_interval, config.live_failures) == (10.0, 3)
    assert (config.live_http, config.live_tcp, config.live_command) == (None, None, ())
    assert (config.wait_ready, config.ready_timeout, config.on_ready_timeout) == ((), 60.0, "fail")


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "three", "", "\u00b2"])
def test_live_failures_is_a_whole_number_from_one(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--live-failures: "):
        resolve("sidecar", {"live_failures": text}, ("true",), env={})


@pytest.mark.parametrize(
    ("given", "refusal"),
    [
        ({"live_tcp": "127.0.0.1:80", "restart": "never"}, "--restart never"),
        ({"wait_ready": ["sidecar"]}, "--wait-ready.*itself"),
    ],
)
def test_contradictions_are_refused(given: dict[str, object], refusal: str) -> None:
    with pytest.raises(UsageError, match=refusal):
        resolve("sidecar", given, ("true",), env={})


# --- liveness ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "http", "command"])
def test_a_failed_liveness_probe_restarts_the_child_in_place(
    start: StartContainer,
    shared: Path,
    tmp_path: Path,
    server: RecordingServer,
    kind: str,
) -> None:
    """The first child turns unhealthy once ready, the second stays healthy: one
    restart, and the container itself neither exits nor fails."""
    port = free_port()
    service = shlex.join([*TCP_SERVICE, "--port", str(port)])
    sick = shared / "sick"
    checks = shared / "checks"
    # Each run decides its health before it listens, so before it is ready.
    first = f"touch {q(sick)}; exec {service}"
    second = f"rm -f {q(sick)}; exec {service}"
    healthy_checks: Callable[[], int]
    if kind == "tcp":
        first = f"exec {service} --close-after 1"  # the readiness check, then it refuses
        probe, live = f"tcp 127.0.0.1:{port}", ("--live-tcp", f"127.0.0.1:{port}")
        last = "Connection refused"

        def healthy_checks() -> int:  # the second run's connections, its readiness check aside
            while side.readline(0) is not None:
                pass
            output = side.output
            return output[output.index("run 2") :].count("accepted") - 1 if "run 2" in output else 0

    elif kind == "http":
        url = server.url("/live")
        probe, live, last = f"http {url}", ("--live-http", url), "HTTP 500"
        healthy_checks = lambda: sum(r.seen for r in server.received("GET", "/live"))  # noqa: E731
    else:
        command = f"sh -c 'test ! -e {sick} && echo ok >> {checks}'"
        probe, live, last = f"command {command}", ("--live-command", command), "exit status 1"
        healthy_checks = lambda: len(checks.read_text().splitlines()) if checks.exists() else 0  # noqa: E731

    side = start(
        "sidecar",
        "--dir",
        shared,
        "--ready-tcp",
        f"127.0.0.1:{port}",
        *FAST,
        *live,
        *LIVE,
        "--",
        *nth_run(tmp_path / "runs", first, second),
    )

    wait_for_event(side, "child_ready", count=2)
    wait_until(lambda: healthy_checks() >= 3, what="the new child passing liveness checks")
    (restarting,) = logged(side, "child_restarting")
    assert restarting["level"] == "warning"
    assert (restarting["reason"], restarting["probe"]) == ("LivenessFailed", probe)
    assert last in restarting["last"]
    assert restarting["delay"] == 1.0  # the crash back-off
    first_child, second_child = (e["pid"] for e in logged(side, "child_started"))
    failed = side.event("liveness_failed")
    assert (failed["pid"], failed["failures"]) == (first_child, 2)
    assert read_json(shared / "sidecar.ready")["pid"] == second_child
    assert side.running

    finish_main(shared)
    code = side.wait()
    assert code == 0
    assert pod_phase("Never", [0, code]) == "Succeeded"
    done = read_json(shared / "sidecar.done")
    assert (done["reason"], done["exit_code"]) == ("Stopped", 0)
    assert len(logged(side, "child_restarting")) == 1


def test_a_late_liveness_result_of_an_old_child_does_not_restart_the_new_one(
    start: StartContainer, shared: Path, tmp_path: Path
) -> None:
    """A liveness check of the first child is still running when that child
    crashes; it fails after the second child has started, and changes nothing."""
    runs, probing, go, finished, checks = (
        tmp_path / "runs",
        shared / "probing",
        shared / "go",
        shared / "finished",
        shared / "checks",
    )
    crashes_while_probed = f"while [ ! -e {q(probing)} ]; do sleep 0.05; done; exit 1"
    check = (
        f'if [ "$(cat {q(runs)})" = 1 ]; then touch {q(probing)}; '
        f"while [ ! -e {q(go)} ]; do sleep 0.05; done; touch {q(finished)}; exit 1; fi; "
        f"echo ok >> {q(checks)}"
    )
    side = start(
        "sidecar",
        "--dir",
        shared,
        "--live-command",
        shlex.join(["sh", "-c", check]),
        "--live-interval",
        "0.2",
        "--live-failures",
        "1",
        "--probe-timeout",
        "60",
        "--",
        *nth_run(runs, crashes_while_probed, STAYS),
    )

    wait_for_event(side, "child_ready", count=2)
    go.touch()  # the old child's check now fails
    wait_until(finished.exists, what="the old child's check to end")
    seen = len(checks.read_text().splitlines()) if checks.exists() else 0
    wait_until(
        lambda: checks.exists() and len(checks.read_text().splitlines()) >= seen + 2,
        what="two more checks of the new child",
    )

    (restarting,) = logged(side, "child_restarting")
    assert restarting["reason"] == "Error"  # the crash, not the liveness check
    assert not has_event(side, "liveness_failed")
    assert len(logged(side, "child_started")) == 2
    assert side.running
    finish_main(shared)
    assert side.wait() == 0


def test_a_liveness_result_for_another_generation_is_ignored(tmp_path: Path) -> None:
    config = resolve("sidecar", {"dir": str(tmp_path), "live_tcp": "127.0.0.1:1"}, ("true",))
    assert isinstance(config, SidecarConfig)
    loop = Loop()
    sidecar = Sidecar(config, loop)
    try:
        sidecar.phase, sidecar.generation = Phase.RUNNING, 2

        sidecar.on_event(LivenessFailed(1, "tcp 127.0.0.1:1", "refused", 3))

        assert sidecar.phase is Phase.RUNNING
        assert not loop.pending("restart")
        assert sidecar.restarts == 0
    finally:
        sidecar.watcher.close()
        loop.close()


# --- startup order among sidecars ------------------------------------------------------


def shipper(start: StartContainer, shared: Path, *args: str) -> Container:
    """A log shipper that waits for the proxy; its child says whether it was ready."""
    child = f"test -f {q(shared / 'proxy.ready')} && echo proxy-was-ready; {STAYS}"
    return start(
        "sidecar", "--dir", shared, "--name", "shipper", "--wait-ready", "proxy", *FAST, *args,
        "--", "sh", "-c", child,
    )  # fmt: skip


def test_a_sidecar_starts_only_after_the_sidecar_it_waits_for_is_ready(
    start: StartContainer, shared: Path
) -> None:
    logs = shipper(start, shared)
    wait_for_event(logs, "waiting_for_gates")
    port = free_port()
    proxy = start(
        "sidecar", "--dir", shared, "--name", "proxy", "--ready-tcp", f"127.0.0.1:{port}",
        *FAST, "--", *TCP_SERVICE, "--port", str(port),
    )  # fmt: skip
    proxy.expect(f"listening on {port}")

    logs.expect("proxy-was-ready")
    logs.expect(r"ready \(pid")
    assert logs.event("waiting_for_gates")["gates"] == [f"ready {shared / 'proxy.ready'}"]
    names = [e["event"] for e in logs.events()]
    assert names.index("gates_ready") < names.index("child_started")

    finish_main(shared)
    assert proxy.wait() == 0
    assert logs.wait() == 0
    assert logs.rest_of_output() == [TERM]
    assert read_json(shared / "shipper.done")["reason"] == "Stopped"


def test_a_sidecar_at_its_gate_exits_without_starting_when_the_main_completes(
    start: StartContainer, shared: Path
) -> None:
    logs = shipper(start, shared)
    wait_for_event(logs, "waiting_for_gates")

    finish_main(shared)

    assert logs.wait() == 0
    assert logs.rest_of_output() == []
    assert not has_event(logs, "child_started")
    assert logs.event("already_complete")["waited_for"] == ["main"]
    done = read_json(shared / "shipper.done")
    assert (done["reason"], done["exit_code"]) == ("AlreadyComplete", 0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_at_the_gate_ends_the_sidecar_at_once(
    start: StartContainer, shared: Path, signum: signal.Signals
) -> None:
    logs = shipper(start, shared)  # --term-hold 25 by default: nothing runs to hold up
    wait_for_event(logs, "waiting_for_gates")

    logs.signal(signum)

    assert logs.wait() == 0
    assert logs.rest_of_output() == []
    assert not has_event(logs, "child_started")
    done = read_json(shared / "shipper.done")
    assert (done["reason"], done["why"], done["exit_code"]) == ("Stopped", "signal", 0)
    assert done["child_exit_code"] is None


def test_a_sidecar_gives_up_at_its_gate_after_the_ready_timeout(
    start: StartContainer, shared: Path
) -> None:
    logs = shipper(start, shared, "--ready-timeout", "0.5")

    assert logs.wait() == 1
    assert logs.rest_of_output() == []
    assert logs.event("ready_timeout")["level"] == "error"
    assert not has_event(logs, "child_started")
    done = read_json(shared / "shipper.done")
    assert (done["reason"], done["exit_code"]) == ("ReadyTimeout", 1)
