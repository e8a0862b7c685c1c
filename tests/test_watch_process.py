"""``--watch-process``: completion is the exit of a process seen in a shared PID namespace.

A pod with ``shareProcessNamespace: true`` is one ``unshare --pid --fork
--mount-proc`` namespace whose PID 1 is a small shell script: it starts the
sidecar supervisor and a plain main process (``main.sh``, no wrapper), in the
order the test needs, each step held back until the test opens a FIFO "gate".
The main exits when the test opens its "exit" FIFO. No test waits by sleeping.

The sidecar's pattern is ``main[.]sh``: it matches ``sh .../main.sh`` but not
its own command line, where the text is ``main[.]sh``.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import StartContainer
from tests.kubelet import NAMESPACE, RawContainer, before, has_event, logged, wait_for_event
from tests.support import PRINT_SIGNALS, SUPERVISOR, TIMEOUT, Container, read_json, wait_until

PATTERN = "main[.]sh"
READY = r"ready \(pid: \d+\)"
TERM = str(int(signal.SIGTERM))


class Pod:
    """The FIFOs and scripts of one shared-PID pod, in ``tmp_path``."""

    def __init__(self, tmp_path: Path, shared: Path) -> None:
        self.tmp = tmp_path
        self.shared = shared
        self.gate = tmp_path / "gate"
        self.exit = tmp_path / "exit"
        for fifo in (self.gate, self.exit):
            os.mkfifo(fifo)
        self.main = tmp_path / "main.sh"
        self.main.write_text(
            f"echo main-up\nread _ < {shlex.quote(str(self.exit))}\necho main-exiting\n"
        )

    def sidecar(self, *options: str) -> str:
        return shlex.join(
            [*SUPERVISOR, "sidecar", "--dir", str(self.shared), *options, "--", *PRINT_SIGNALS]
        )

    def script(self, *, main_first: bool, options: tuple[str, ...]) -> Path:
        """PID 1 of the pod; it exits with the sidecar supervisor's status."""
        gate = f"read _ < {shlex.quote(str(self.gate))}"
        main = f"sh {shlex.quote(str(self.main))}"
        if main_first:
            lines = [f"{main} &", "main=$!", gate, self.sidecar(*options), "code=$?"]
            lines += ['wait "$main"', 'exit "$code"']
        else:
            lines = [f"{self.sidecar(*options)} &", "side=$!", gate, main, 'wait "$side"']
        path = self.tmp / "pod.sh"
        path.write_text("\n".join(lines) + "\n")
        return path


def open_fifo(fifo: Path) -> None:
    """Let the pod past a ``read _ < FIFO`` once it waits there."""

    def writer() -> int | None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nobody reads it yet
                return None
            raise

    fd: int = wait_until(writer, what=f"a reader on {fifo}")
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


StartPod = Callable[..., Container]


@pytest.fixture
def start_pod(tmp_path: Path, shared: Path) -> Iterator[StartPod]:
    """Start a shared-PID pod: ``start_pod(layout, main_first=..., options=(...))``."""
    started: list[Container] = []

    def factory(pod: Pod, *, main_first: bool, options: tuple[str, ...]) -> Container:
        script = pod.script(main_first=main_first, options=options)
        container = RawContainer([*NAMESPACE, "sh", str(script)], tmp_path / "pod.log")
        started.append(container)
        return container

    yield factory
    for container in started:
        container.close()


def assert_process_completion(pod: Container, shared: Path) -> None:
    detected = pod.event("completion_detected")
    assert detected["target"] == f"process /{PATTERN}/"
    assert detected["source"] == "process"
    assert detected["exit_code"] is None
    assert detected["failed"] is False
    assert detected["reason"] == "Exited"
    assert before(pod, "completion_detected", "stop_requested")
    done = read_json(shared / "sidecar.done")
    assert (done["exit_code"], done["reason"]) == (0, "Stopped")


def test_sidecar_stops_after_the_watched_process_exits(
    start_pod: StartPod, tmp_path: Path, shared: Path
) -> None:
    layout = Pod(tmp_path, shared)
    pod = start_pod(layout, main_first=True, options=("--watch-process", PATTERN))
    pod.expect("main-up")
    open_fifo(layout.gate)  # now the sidecar starts, with the main already running
    pod.expect(READY)
    found = wait_for_event(pod, "process_found")[0]
    assert found["cmdline"] == ["sh", str(layout.main)]
    assert not has_event(pod, "waiting_for_process")
    assert not has_event(pod, "completion_detected")

    open_fifo(layout.exit)
    assert pod.wait() == 0
    assert pod.rest_of_output() == ["main-exiting", TERM]
    assert_process_completion(pod, shared)


def test_sidecar_waits_for_a_process_that_appears_later(
    start_pod: StartPod, tmp_path: Path, shared: Path
) -> None:
    layout = Pod(tmp_path, shared)
    pod = start_pod(layout, main_first=False, options=("--watch-process", PATTERN))
    pod.expect(READY)
    waiting = wait_for_event(pod, "waiting_for_process")[0]
    assert waiting["pattern"] == PATTERN
    assert not has_event(pod, "process_found")

    open_fifo(layout.gate)  # the main starts only now
    pod.expect("main-up")
    wait_for_event(pod, "process_found")
    assert before(pod, "waiting_for_process", "process_found")
    assert not has_event(pod, "completion_detected")
    open_fifo(layout.exit)
    assert pod.wait() == 0
    assert pod.rest_of_output() == ["main-exiting", TERM]
    assert_process_completion(pod, shared)


def test_process_that_never_appears_ends_the_wait_after_the_timeout(
    start: StartContainer, shared: Path
) -> None:
    side = start(
        "sidecar",
        "--dir",
        shared,
        "--watch-process",
        "never-appe[a]rs",
        "--process-timeout",
        "1",
        "--",
        *PRINT_SIGNALS,
    )
    side.expect(READY)

    assert side.wait() == 0
    assert side.rest_of_output() == [TERM]
    assert side.event("waiting_for_process")["timeout"] == 1.0
    detected = side.event("completion_detected")
    assert detected["source"] == "process"
    assert detected["reason"] == "ProcessNeverAppeared"
    assert detected["exit_code"] is None
    assert detected["failed"] is True
    assert detected["level"] == "warning"  # a failed completion is worth a look
    assert len(logged(side, "stop_requested")) == 1
    assert read_json(shared / "sidecar.done")["exit_code"] == 0


def test_bad_regex_is_a_usage_error(shared: Path) -> None:
    result = subprocess.run(
        [*SUPERVISOR, "sidecar", "--dir", str(shared), "--watch-process", "(", "--", "true"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--watch-process" in lines[0]
    assert "Traceback" not in result.stderr
    assert list(shared.iterdir()) == []  # nothing started, nothing written


def test_two_sidecars_with_one_pattern_never_watch_each_other(tmp_path: Path, shared: Path) -> None:
    """Two ``--watch-process`` sidecars in one pod, started before the main, with a
    pattern that also matches their own command lines (``main.sh``, no brackets):
    neither takes the other supervisor for the main; each says its pattern found
    only a supervisor, and both stop once the real main has exited."""
    layout = Pod(tmp_path, shared)
    loose = "main.sh"

    def sidecar(name: str) -> str:
        return shlex.join(
            [*SUPERVISOR, "sidecar", "--dir", str(shared), "--name", name,
             "--watch-process", loose, "--", *PRINT_SIGNALS]
        )  # fmt: skip

    gate = f"read _ < {shlex.quote(str(layout.gate))}"
    script = tmp_path / "pod.sh"
    script.write_text(
        "\n".join(
            [f"{sidecar('side-a')} &", "a=$!", f"{sidecar('side-b')} &", "b=$!", gate,
             f"sh {shlex.quote(str(layout.main))}", 'wait "$a"; ca=$?', 'wait "$b"; cb=$?',
             'echo "codes $ca $cb"']
        ) + "\n"
    )  # fmt: skip
    pod = RawContainer([*NAMESPACE, "sh", str(script)], tmp_path / "pod.log")
    try:
        # Both children print "ready" into one pipe, maybe on one line: read the logs.
        wait_until(
            lambda: {e["name"] for e in logged(pod, "child_ready")} == {"side-a", "side-b"},
            what="both sidecars' children ready",
        )
        warned = wait_until(
            lambda: (
                {e["name"] for e in logged(pod, "process_pattern_matches_a_supervisor")}
                == {"side-a", "side-b"}
                or None
            ),
            what="both sidecars to say their pattern found only a supervisor",
        )
        assert warned
        assert not has_event(pod, "process_found")

        open_fifo(layout.gate)  # the main starts only now
        pod.expect("main-up")
        wait_until(lambda: len(logged(pod, "process_found")) == 2, what="both find the main")
        for found in logged(pod, "process_found"):
            assert found["cmdline"] == ["sh", str(layout.main)]
        open_fifo(layout.exit)
        assert pod.wait() == 0
        output = pod.rest_of_output()
        assert output[-1] == "codes 0 0"
        assert "main-exiting" in output
        # Both children were stopped (their lines may interleave: count the signals).
        assert "".join(output[:-1]).replace("main-exiting", "").count(TERM) == 2
        stopped = {e["name"] for e in logged(pod, "child_exited") if e.get("requested")}
        assert stopped == {"side-a", "side-b"}
    finally:
        pod.close()


def test_stop_on_success_ignores_a_process_that_never_appeared_and_waits_again(
    start: StartContainer, shared: Path
) -> None:
    """The ignored failure re-arms the watch: the next matching process is followed."""
    token = f"late-proc-{os.getpid()}-{id(shared)}"
    side = start(
        "sidecar", "--dir", shared, "--watch-process", f"[{token[0]}]{token[1:]}",
        "--process-timeout", "0.5", "--stop-on", "success", "--", *PRINT_SIGNALS,
        namespace=False,
    )  # fmt: skip
    side.expect(READY)
    wait_for_event(side, "completion_ignored")
    late = subprocess.Popen(["sh", "-c", f"read _; exit 0 # {token}"], stdin=subprocess.PIPE)
    try:
        wait_for_event(side, "process_found")
        assert late.stdin is not None
        late.stdin.close()  # the process ends
        assert late.wait(TIMEOUT) == 0
        assert side.wait() == 0
    finally:
        if late.poll() is None:
            late.kill()
            late.wait()
    found = side.event("process_found")
    assert found["pid"] == late.pid
    assert side.event("completion_detected")["reason"] == "Exited"
