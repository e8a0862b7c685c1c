"""``sidecar-supervisor demo``: the Job that cannot complete, run on this machine.

Two "containers" share a temporary directory as their emptyDir: a main that
does five tasks and exits 0, and a sidecar that collects logs forever. With the
supervisor, the sidecar stops the moment the main has finished and the "Job"
succeeds; with ``--without-supervisor`` the sidecar keeps running after the
main has exited, which on a cluster leaves the Job hanging. Each container
runs in its own PID namespace where the machine allows it. Every process and
the temporary directory are cleaned up, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from supervisor.harness import LogTail, Process, namespace_prefix

MAIN_SCRIPT = (
    'echo "main container is starting..."; '
    'for i in 1 2 3 4 5; do echo "main container is doing task $i/5"; sleep {task}; done; '
    'echo "main container completed its tasks and exits"'
)
SIDECAR_SCRIPT = (
    'echo "sidecar container is starting..."; '
    'while true; do echo "sidecar container is collecting logs..."; sleep {tick}; done'
)
COLOURS = {"main": "\033[36m", "sidecar": "\033[35m"}
RESET, DIM, BOLD = "\033[0m", "\033[2m", "\033[1m"
# Supervisor events worth showing in the demo, with the fields that tell the story.
SHOWN_EVENTS = {
    "child_started": ("pid",),
    "child_ready": (),
    "completion_detected": ("target", "source", "exit_code"),
    "stop_requested": ("actions",),
    "child_exited": ("exit_code", "signal"),
    "supervisor_exiting": ("exit_code",),
}


@dataclass
class Container:
    name: str
    argv: list[str]
    log: Path  # its stderr: the supervisor's JSON log
    process: Process | None = None
    ended: float | None = None
    events: dict[str, float] = field(default_factory=dict)  # event -> wall-clock time

    @property
    def started(self) -> float:
        assert self.process is not None
        return self.process.started_ns / 1e9

    @property
    def exit_code(self) -> int | None:
        if self.process is None or self.process.popen.returncode is None:
            return None
        code = self.process.popen.returncode
        return 128 - code if code < 0 else code


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _timestamp(line: str) -> str:
    """The ISO timestamp of a JSON log line (they sort as text); "" for other lines."""
    with contextlib.suppress(ValueError):
        event = json.loads(line)
        if isinstance(event, dict):
            return str(event.get("timestamp", ""))
    return ""


class Demo:
    def __init__(self, *, with_supervisor: bool, task_seconds: float, out: TextIO) -> None:
        self.with_supervisor = with_supervisor
        self.task_seconds = task_seconds
        self.out = out
        self.colour = out.isatty()
        self.root = Path(tempfile.mkdtemp(prefix="sidecar-supervisor-demo-"))
        self.dir = self.root / "emptyDir"  # shared by the containers; their logs beside it
        self.dir.mkdir()
        self.prefix = list(namespace_prefix(map_root=True, timeout=10))
        self.containers = [
            Container(
                "sidecar",
                self._argv("sidecar", SIDECAR_SCRIPT.format(tick=task_seconds)),
                self.root / "sidecar.log",
            ),
            Container(
                "main",
                self._argv("main", MAIN_SCRIPT.format(task=task_seconds)),
                self.root / "main.log",
            ),
        ]
        self.tails = {c.name: LogTail(c.log) for c in self.containers}

    def _argv(self, role: str, script: str) -> list[str]:
        command = ["sh", "-c", script]
        if not self.with_supervisor:
            return [*self.prefix, *command]
        # Inside the self-contained bundle, the executable is the tool itself.
        tool = (
            [sys.executable]
            if getattr(sys, "frozen", False)
            else [sys.executable, "-m", "supervisor"]
        )
        wrapper = [*tool, role, "--dir", str(self.dir)]
        wrapper += ["--name", role, "--log-format", "json", "--termination-log", os.devnull]
        return [*self.prefix, *wrapper, "--", *command]

    # --- output -----------------------------------------------------------------

    def say(self, text: str, style: str = "") -> None:
        if self.colour and style:
            text = f"{style}{text}{RESET}"
        self.out.write(text + "\n")
        self.out.flush()

    def _show(self, name: str, line: str, from_supervisor: bool) -> None:
        label = f"{name:<8}|"
        if self.colour:
            label = f"{COLOURS[name]}{label}{RESET}"
        if from_supervisor:
            text = f"[supervisor] {line}"
            line = f"{DIM}{text}{RESET}" if self.colour else text
        self.out.write(f"{label} {line}\n")
        self.out.flush()

    def _render_event(self, container: Container, line: str) -> str | None:
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            return line
        name = event.get("event", "")
        stamp = event.get("timestamp")
        if isinstance(stamp, str):
            with contextlib.suppress(ValueError):
                container.events.setdefault(name, datetime.fromisoformat(stamp).timestamp())
        if name not in SHOWN_EVENTS:
            return None
        fields = " ".join(
            f"{key}={_shown(event[key])}"
            for key in SHOWN_EVENTS[name]
            if event.get(key) is not None
        )
        text = f"{name} {fields}".rstrip()
        code = event.get("exit_code")
        if name == "child_exited" and "stop_requested" in container.events and code:
            # A reader's first question: why 143 when the Job succeeded?
            text += (
                f"  ({code} = 128 + {code - 128}: it ended on the "
                f"{event.get('signal') or 'signal'} the supervisor sent; the container exits 0)"
                if isinstance(code, int) and code > 128
                else "  (the container still exits 0)"
            )
        return text

    def _drain(self, wait: float = 0.0) -> bool:
        """Show what the containers printed, then what their supervisors logged (in the
        order of the log's timestamps), since the last call; True if there was any.

        ``wait``: how long to wait for a container to close its stdout (at the end).
        """
        started = [c for c in self.containers if c.process is not None]
        printed = [(c, line) for c in started if c.process for line in c.process.rest(wait)]
        for container, line in printed:
            self._show(container.name, line, False)
        logged = [(c, line) for c in started for line in self.tails[c.name].lines()]
        logged.sort(key=lambda entry: _timestamp(entry[1]))
        for container, line in logged:
            text = self._render_event(container, line)
            if text:
                self._show(container.name, text, True)
        return bool(printed or logged)

    # --- running ----------------------------------------------------------------

    def _start(self, container: Container) -> None:
        container.process = Process(container.argv, log=container.log)

    def _pump_until(self, done: Any, deadline: float | None = None) -> bool:
        """Show output until ``done()``; False if ``deadline`` came first."""
        while not done():
            if deadline is not None and time.monotonic() >= deadline:
                self._drain()
                return False
            if not self._drain():
                time.sleep(0.02)
            for container in self.containers:
                process = container.process
                if container.ended is None and process is not None and not process.running:
                    container.ended = time.monotonic()
        return True

    def run(self) -> int:
        sidecar, main = self.containers
        self.say(
            "A Job that cannot complete on its own: a main container that does 5 tasks and "
            "exits, and a sidecar that collects logs forever.",
            BOLD,
        )
        if self.with_supervisor:
            self.say(
                "Here both run under sidecar-supervisor: the sidecar's wrapper stops it once "
                "the main has finished."
            )
        else:
            self.say(
                "Here both run bare, as in the Job as written: watch the sidecar outlive the main."
            )
        self.say("Each container runs once, as in a pod with restartPolicy: Never.")
        namespaces = "yes" if self.prefix else "no (unshare is not allowed here)"
        self.say(
            f"shared emptyDir: {self.dir}; each container in its own PID namespace: {namespaces}",
            DIM,
        )
        self._start(sidecar)
        if self.with_supervisor:
            ready = self.dir / "sidecar.ready"
            self._pump_until(ready.exists, time.monotonic() + 30)
        self._start(main)
        self._pump_until(lambda: main.ended is not None)
        if self.with_supervisor:
            self._pump_until(lambda: sidecar.ended is not None, time.monotonic() + 60)
        else:
            hold = max(3 * self.task_seconds, 1.0)
            self._pump_until(lambda: sidecar.ended is not None, time.monotonic() + hold)
        self._drain(wait=1)
        return self._summary()

    def _summary(self) -> int:
        sidecar, main = self.containers
        self.say("")
        self.say("summary", BOLD)
        self.say(f"  {'container':<10} {'exit':>5} {'ran for':>9}")
        for container in (main, sidecar):
            code = "-" if container.exit_code is None else str(container.exit_code)
            ran = (container.ended or time.monotonic()) - container.started
            state = "" if container.ended is not None else "  still running"
            self.say(f"  {container.name:<10} {code:>5} {ran:>7.2f} s{state}")
        if sidecar.ended is None:
            assert main.ended is not None
            waited = time.monotonic() - main.ended
            self.say(f"  the sidecar is still running {waited:.1f} s after the main exited.")
            self.say(
                "  Job: never completes. On a cluster the pod stays Running and the Job "
                "hangs; the demo stops the sidecar now.",
                BOLD,
            )
            self.say("")
            self.say(
                "Next: 'sidecar-supervisor demo' runs the same pair with the supervisor; "
                "'sidecar-supervisor check -f job.yaml' finds the Jobs of yours that would hang."
            )
            return 0
        stopped_after = self._stop_latency_ms()
        if stopped_after is not None:
            self.say(f"  the sidecar stopped {stopped_after:.1f} ms after the main completed.")
        codes = [c.exit_code for c in self.containers]
        if all(code == 0 for code in codes):
            self.say(
                "  Job: Succeeded. Every container ran once and exited 0, which is what a pod "
                "with restartPolicy: Never needs.",
                BOLD,
            )
        else:
            self.say(
                "  Job: Failed. Under restartPolicy: Never a container that exits non-zero "
                "fails the pod.",
                BOLD,
            )
        self.say("")
        self.say("Next, for a cluster:")
        self.say(
            "  examples/kubernetes/job-fixed.yaml (in the project's repository) is this Job, fixed"
        )
        self.say("  sidecar-supervisor inject --image IMAGE -f job.yaml   rewrites a Job of yours")
        self.say("  sidecar-supervisor check -f job.yaml                  finds what would hang")
        return 0 if all(code == 0 for code in codes) else 1

    def _stop_latency_ms(self) -> float | None:
        """From the main's COMMAND exit to the sidecar's, as both supervisors logged them."""
        sidecar, main = self.containers
        main_done = main.events.get("child_exited")
        sidecar_done = sidecar.events.get("child_exited")
        if main_done is None or sidecar_done is None:
            return None
        return max(0.0, (sidecar_done - main_done) * 1000)

    def close(self) -> None:
        """Stop every process of every container, then remove the shared dir."""
        for container in self.containers:
            if container.process is not None:
                container.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def run_demo(*, with_supervisor: bool, task_seconds: float = 1.0, out: TextIO = sys.stdout) -> int:
    demo = Demo(with_supervisor=with_supervisor, task_seconds=task_seconds, out=out)

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        return demo.run()
    except KeyboardInterrupt:
        demo.say("\ninterrupted: stopping every container and removing the shared dir")
        return 130
    finally:
        demo.close()
        signal.signal(signal.SIGTERM, previous)
