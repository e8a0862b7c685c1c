"""Run a pod's containers as real processes on this machine, as a small kubelet would.

``run_pod(manifest, workdir, timeout)`` takes a Job, a Pod or anything with a
pod template, and runs each container's ``command`` + ``args`` (or, without
``command``, the image's entrypoint, for the images in ``ENTRYPOINTS``) as a
process here:

- the image's tool is the installed one: an ``argv[0]`` named
  ``sidecar-supervisor`` becomes ``python -m supervisor``; every other program
  (busybox's ``sh``, ``seq``, ``tail``) is this machine's;
- every ``emptyDir`` is a directory under ``workdir``, and each container's
  ``mountPath`` is rewritten to it wherever it appears in its command, args
  and env; the tool's default ``--dir`` (``/run/sidecar-supervisor``) is a
  private directory per container when no volume is mounted there, as it is
  in the image, and reaches the tool through ``SIDECAR_SUPERVISOR_DIR``;
- ``$(VAR)`` references in command and args are expanded from the
  container's env as the kubelet does (``$$`` is a literal ``$``);
- each container gets a termination-log file (``/dev/termination-log``
  through ``SIDECAR_SUPERVISOR_TERMINATION_LOG``);
- each container runs in its own PID namespace (``unshare --pid --fork
  --mount-proc``) where the machine allows it, so its first process is PID 1
  and meets the PID-1 signal rules; with ``shareProcessNamespace: true`` all of
  them enter one namespace whose PID 1 is a small reaping ``pause``;
- init containers run first, one after the other; one with ``restartPolicy:
  Always`` is a native sidecar: started, kept running (restarted if it
  exits), sent SIGTERM once every regular container has exited (in reverse
  order), SIGKILLed after ``terminationGracePeriodSeconds``, and its exit
  code does not count for the phase;
- the pod's ``restartPolicy`` restarts regular containers (``OnFailure``:
  those that exit non-zero), at once and at most ``max_restarts`` times.

``substitutions`` replace text in every string of the containers first (a
test shortens the seed's ``sleep 3``); ``env`` adds variables per container,
after the manifest's; ``inject`` puts containers at the front of the list, as
a mutating webhook (istio's, with ``holdApplicationUntilProxyStarts``) does.

The outcome (``PodOutcome``) has each container's exit codes (one per
attempt; 128+N for a death by signal N), output, supervisor events and
termination message, the phase, and any process left running. (In a PID
namespace, ``unshare``/``nsenter`` 2.38 report the first process's death by a
signal as status 1; the runner knows 137 only for the kills it made itself.)

``Pod`` is the same step by step, for a test that watches a pod as it runs or
one that never completes: ``with pod(manifest, workdir) as running:``, then
``running.container(name).expect(...)``, ``running.wait()`` or
``running.kill()``. ``compose_pod`` turns a compose project into such a pod.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from supervisor.harness import UNSHARE, Process, kill_tree
from tests.support import SUPERVISOR, TIMEOUT, can_unshare

TOOL = "sidecar-supervisor"
IMAGE = "registry.example/sidecar-supervisor"  # the examples' name for the Dockerfile's image
ENTRYPOINTS: dict[str, tuple[str, ...]] = {IMAGE: (TOOL,)}  # each image's ENTRYPOINT
DEFAULT_DIR = "/run/sidecar-supervisor"
DEFAULT_GRACE = 30.0  # terminationGracePeriodSeconds when the pod does not say
LEFTOVER_GRACE = 5.0  # for a process that is exiting right now, before it counts as left over

# PID 1 of a shared PID namespace, as /pause is in a pod: reaps whatever is
# re-parented to it, exits on SIGTERM or SIGINT.
PAUSE = """\
import os, signal
wanted = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
print("paused", flush=True)
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    if signal.sigwaitinfo(wanted).si_signo != signal.SIGCHLD:
        break
"""


# --- what a pod run tells ---------------------------------------------------------


@dataclass
class ContainerOutcome:
    name: str
    init: bool = False
    native_sidecar: bool = False
    exit_codes: list[int] = field(default_factory=list)  # one per attempt
    output: list[str] = field(default_factory=list)  # stdout of every attempt
    events: list[dict[str, Any]] = field(default_factory=list)  # supervisor JSON log lines
    stderr: str = ""
    termination_message: str = ""
    killed: bool = False  # the runner had to SIGKILL it

    @property
    def exit_code(self) -> int | None:
        """The last attempt's exit code; None if it never ended on its own."""
        return self.exit_codes[-1] if self.exit_codes else None

    @property
    def restarts(self) -> int:
        return max(0, len(self.exit_codes) - 1)

    def event_names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events]


@dataclass
class PodOutcome:
    phase: str  # Succeeded, Failed, or Running: it did not complete before the runner gave up
    containers: dict[str, ContainerOutcome]
    running_at_end: list[str]  # containers still running when the runner gave up
    leftovers: list[str]  # processes of the pod left running after every container ended

    @property
    def completed(self) -> bool:
        return self.phase != "Running"

    @property
    def exit_codes(self) -> dict[str, int | None]:
        return {name: c.exit_code for name, c in self.containers.items()}

    def __getitem__(self, name: str) -> ContainerOutcome:
        return self.containers[name]


# --- manifest helpers ----------------------------------------------------------


def pod_spec(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """The PodSpec of a Pod, a Job, a CronJob or anything with a pod template."""
    kind = manifest.get("kind")
    spec: Mapping[str, Any] = manifest["spec"]
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: Mapping[str, Any] = spec["template"]
    result: Mapping[str, Any] = template["spec"]
    return result


def kubelet_expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's expansion of ``$(VAR)`` in command, args and env values.

    ``$(NAME)`` becomes NAME's value if the container defines it and stays as
    written otherwise (so a shell's ``$(seq 1 5)`` survives); ``$$`` is ``$``.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : end]
            out.append(env.get(name, f"$({name})"))
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def rewrite_paths(text: str, mounts: Mapping[str, Path]) -> str:
    """Replace each mount path (as a whole path component) by its directory here."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        pattern = r"(?<![\w./-])" + re.escape(mount_path.rstrip("/")) + r"(?=/|$|[^\w.-])"
        replacement = str(mounts[mount_path]).replace("\\", "\\\\")
        text = re.sub(pattern, replacement, text)
    return text


def substitute(text: str, substitutions: Mapping[str, str]) -> str:
    for old, new in substitutions.items():
        text = text.replace(old, new)
    return text


def exit_code(returncode: int) -> int:
    """As Kubernetes reports it: 128+N for a death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _image_repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


@dataclass(frozen=True)
class ContainerSpec:
    """One container, translated for this machine."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    init: bool
    native_sidecar: bool
    termination_log: Path


def _container_spec(
    container: Mapping[str, Any],
    *,
    volumes: Mapping[str, Path],
    private: Path,
    init: bool,
    substitutions: Mapping[str, str],
    extra_env: Mapping[str, str],
    entrypoints: Mapping[str, Sequence[str]],
) -> ContainerSpec:
    name = str(container["name"])
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        if "subPath" in mount or "subPathExpr" in mount:
            raise ValueError(f"{name}: subPath mounts are not supported by the runner")
        mounts[str(mount["mountPath"])] = volumes[str(mount["name"])]
    if DEFAULT_DIR not in mounts:  # the image's own directory, private to the container
        own = private / "run-sidecar-supervisor"
        own.mkdir(parents=True, exist_ok=True)
        mounts[DEFAULT_DIR] = own

    env: dict[str, str] = {}
    for variable in container.get("env", []):
        if "value" not in variable:
            raise ValueError(f"{name}: env {variable['name']} has no plain value")
        value = substitute(str(variable["value"]), substitutions)
        env[str(variable["name"])] = rewrite_paths(kubelet_expand(value, env), mounts)

    if "command" in container:
        command = [str(word) for word in container["command"]]
    else:
        image = _image_repository(str(container.get("image", "")))
        if image not in entrypoints:
            raise ValueError(f"{name}: no command, and the entrypoint of {image!r} is unknown")
        command = list(entrypoints[image])
    words = [*command, *(str(word) for word in container.get("args", []))]
    argv = [rewrite_paths(kubelet_expand(substitute(w, substitutions), env), mounts) for w in words]
    if not argv:
        raise ValueError(f"{name}: nothing to run")
    if Path(argv[0]).name == TOOL:
        argv = [*SUPERVISOR, *argv[1:]]

    termination_log = private / "termination-log"
    termination_log.touch()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_SUPERVISOR_")}
    full_env["SIDECAR_SUPERVISOR_DIR"] = str(mounts[DEFAULT_DIR])
    full_env["SIDECAR_SUPERVISOR_TERMINATION_LOG"] = str(termination_log)
    full_env.update(env)
    full_env.update(extra_env)
    return ContainerSpec(
        name=name,
        argv=tuple(argv),
        env=full_env,
        init=init,
        native_sidecar=init and container.get("restartPolicy") == "Always",
        termination_log=termination_log,
    )


# --- the processes ---------------------------------------------------------------


class RunningContainer:
    """A container of the pod: its attempts, their output and their exit codes."""

    def __init__(self, spec: ContainerSpec, pod: Pod) -> None:
        self.spec = spec
        self.pod = pod
        self.outcome = ContainerOutcome(
            spec.name, init=spec.init, native_sidecar=spec.native_sidecar
        )
        self.procs: list[Process] = []  # one per attempt
        self._reading = 0  # the attempt whose output expect() reads
        self._waiters: list[threading.Thread] = []
        self._killed_attempts: set[int] = set()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def proc(self) -> Process | None:
        """The current (last) attempt's process."""
        return self.procs[-1] if self.procs else None

    @property
    def attempts(self) -> int:
        return len(self.procs)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    @property
    def ended(self) -> bool:
        """Started, and every attempt's exit recorded: no restart is under way."""
        return 0 < self.attempts == len(self.outcome.exit_codes)

    @property
    def seen(self) -> list[str]:
        """The lines already taken by expect(), of every attempt."""
        return [line for proc in self.procs for line in proc.output]

    def was_killed(self, attempt: int) -> bool:
        return attempt in self._killed_attempts

    def start(self) -> None:
        attempt = self.attempts
        proc = Process(
            [*self.pod.prefix(), *self.spec.argv],
            env=self.spec.env,
            cwd=self.pod.workdir,
            log=self.pod.workdir / "logs" / f"{self.name}.{attempt}.stderr",
        )
        self.procs.append(proc)
        waiter = threading.Thread(target=self._wait, args=(proc, attempt), daemon=True)
        waiter.start()
        self._waiters.append(waiter)

    def _wait(self, proc: Process, attempt: int) -> None:
        proc.popen.wait()
        self.pod.events.put((self.name, attempt))

    def record_exit(self, attempt: int) -> int:
        returncode = self.procs[attempt].popen.wait()
        if attempt in self._killed_attempts and self.pod.isolated:
            # unshare and nsenter 2.38 report a namespaced child's death by a
            # signal as status 1; the runtime would report 128+9.
            returncode = -signal.SIGKILL
        code = exit_code(returncode)
        self.outcome.exit_codes.append(code)
        return code

    def first_process(self) -> int | None:
        """The container's first process (its PID 1 where namespaced), seen from here."""
        proc = self.proc
        if proc is None or not proc.running:
            return None
        if not self.pod.isolated:
            return proc.popen.pid
        return proc.first_child(TIMEOUT)

    def signal(self, signum: int) -> None:
        pid = self.first_process()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def kill(self) -> None:
        """SIGKILL every process of the current attempt, as the runtime does.

        The first process and its descendants, not the ``unshare``/``nsenter``
        in front: that one reaps its child and ends by itself, so once it has
        ended the namespace's processes are gone too.
        """
        pid = self.first_process()
        if pid is None:
            return
        self._killed_attempts.add(self.attempts - 1)
        self.outcome.killed = True
        kill_tree(pid)

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Block until the container prints a line matching ``pattern`` (attempts in order)."""
        deadline = time.monotonic() + timeout
        while self._reading < self.attempts:
            proc = self.procs[self._reading]
            remaining = deadline - time.monotonic()
            match = proc.wait_for_line(lambda line: re.search(pattern, line), remaining)
            if match:
                return match
            if not proc.eof or self._reading + 1 >= self.attempts:
                break
            self._reading += 1
        raise AssertionError(f"{self.name}: no line matching {pattern!r}; got {self.seen}")

    def events(self) -> list[dict[str, Any]]:
        """The supervisor's JSON log lines of every attempt so far."""
        return [event for proc in self.procs for event in proc.events()]

    def stop(self) -> None:
        """Kill whatever of it still runs; release every attempt's pipes and log."""
        for proc in self.procs:
            proc.stop(TIMEOUT)
        for waiter in self._waiters:
            waiter.join(TIMEOUT)

    def close(self) -> ContainerOutcome:
        for waiter in self._waiters:
            waiter.join(TIMEOUT)
        for proc in self.procs:
            proc.rest(TIMEOUT)
            proc.release(TIMEOUT)
        self.outcome.output = [line for proc in self.procs for line in proc.output]
        self.outcome.events = self.events()
        logs = [proc.log for proc in self.procs if proc.log is not None]
        self.outcome.stderr = "".join(log.read_text(errors="replace") for log in logs)
        self.outcome.termination_message = self.spec.termination_log.read_text().strip()
        return self.outcome


class Pod:
    """One pod run here; ``run_pod`` is the whole of it, this is it step by step."""

    def __init__(
        self,
        manifest: Mapping[str, Any],
        workdir: Path,
        *,
        substitutions: Mapping[str, str] | None = None,
        env: Mapping[str, Mapping[str, str]] | None = None,
        inject: Sequence[Mapping[str, Any]] = (),
        max_restarts: int = 3,
        namespaces: bool = True,
        entrypoints: Mapping[str, Sequence[str]] = ENTRYPOINTS,
    ) -> None:
        spec = pod_spec(manifest)
        self.workdir = workdir
        self.restart_policy = str(spec.get("restartPolicy", "Always"))
        self.grace = float(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
        self.shared_pid = bool(spec.get("shareProcessNamespace", False))
        self.isolated = namespaces and can_unshare()
        self.max_restarts = max_restarts
        self.events: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._pause: Process | None = None
        self._pause_pid: int | None = None
        self._gave_up: list[str] = []
        self._failed_init = False
        self._before = {p.pid for p in psutil.Process().children(recursive=True)}

        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        volumes: dict[str, Path] = {}
        for volume in spec.get("volumes", []):
            if "emptyDir" not in volume:
                raise ValueError(f"volume {volume['name']}: only emptyDir volumes are supported")
            path = workdir / "volumes" / str(volume["name"])
            path.mkdir(parents=True)
            volumes[str(volume["name"])] = path

        def translate(container: Mapping[str, Any], init: bool) -> RunningContainer:
            name = str(container["name"])
            private = workdir / "containers" / name
            private.mkdir(parents=True)
            translated = _container_spec(
                container,
                volumes=volumes,
                private=private,
                init=init,
                substitutions=substitutions or {},
                extra_env=(env or {}).get(name, {}),
                entrypoints=entrypoints,
            )
            return RunningContainer(translated, self)

        self.init_containers = [translate(c, True) for c in spec.get("initContainers", [])]
        regular = [*inject, *spec["containers"]]
        self.containers = [translate(c, False) for c in regular]
        self._all = {c.name: c for c in [*self.init_containers, *self.containers]}
        self._terminating = False

    # --- namespaces -------------------------------------------------------------

    def prefix(self) -> list[str]:
        """What a container's command runs under: its namespace, or the pod's shared one."""
        if not self.isolated:
            return []
        if self.shared_pid:
            assert self._pause_pid is not None
            return [
                "nsenter",
                f"--target={self._pause_pid}",
                "--pid",
                "--mount",
                f"--wd={self.workdir}",
                "--",
            ]
        return list(UNSHARE)

    def _start_pause(self) -> None:
        self._pause = Process(
            [*UNSHARE, sys.executable, "-c", PAUSE], log=self.workdir / "logs" / "pause.stderr"
        )
        if self._pause.readline(TIMEOUT) != "paused":
            raise RuntimeError("the shared PID namespace's pause did not start")
        self._pause_pid = self._pause.first_child(TIMEOUT)

    def _stop_pause(self) -> None:
        if self._pause is not None:
            self._pause.stop(TIMEOUT)  # unshare, and the pause with it
            self._pause = None

    # --- the kubelet's loop ------------------------------------------------------------

    def container(self, name: str) -> RunningContainer:
        return self._all[name]

    def _handle(self, name: str, attempt: int) -> None:
        """A container attempt ended: record it, and restart it if the policy says so."""
        container = self._all[name]
        code = container.record_exit(attempt)
        if container.was_killed(attempt) or self._terminating:
            return
        if container.spec.native_sidecar:
            wanted = True  # restartPolicy: Always, whatever the pod's policy
        elif self.restart_policy == "Always":
            wanted = True
        else:
            wanted = self.restart_policy == "OnFailure" and code != 0
        if wanted and container.attempts - 1 < self.max_restarts:
            container.start()

    def _run_until(self, done: Callable[[], bool], deadline: float) -> bool:
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                name, attempt = self.events.get(timeout=remaining)
            except queue.Empty:
                return False
            self._handle(name, attempt)
        return True

    def start(self, timeout: float = TIMEOUT) -> None:
        """Init containers in order (regular ones to completion), then the containers."""
        if self.isolated and self.shared_pid:
            self._start_pause()
        deadline = time.monotonic() + timeout
        for init in self.init_containers:
            init.start()
            if init.spec.native_sidecar:
                continue  # started is enough (no startupProbe here)
            if not self._run_until(functools.partial(getattr, init, "ended"), deadline):
                raise AssertionError(f"init container {init.name} did not finish")
            if init.outcome.exit_code != 0:
                self._failed_init = True
                return
        for container in self.containers:
            container.start()

    def wait(self, timeout: float = TIMEOUT) -> PodOutcome:
        """Run until every regular container has ended for good, or ``timeout`` passes.

        Then native sidecars get SIGTERM, last started first, and SIGKILL after
        the grace period. On timeout everything still running is killed and the
        phase is ``Running``.
        """
        deadline = time.monotonic() + timeout
        if not self._failed_init:
            ended = self._run_until(lambda: all(c.ended for c in self.containers), deadline)
            if not ended:
                return self.kill()
        self._terminating = True
        for sidecar in reversed([c for c in self.init_containers if c.spec.native_sidecar]):
            sidecar.signal(signal.SIGTERM)
            grace = min(self.grace, max(0.0, deadline - time.monotonic()))
            stopped = functools.partial(getattr, sidecar, "ended")
            if not self._run_until(stopped, time.monotonic() + grace):
                sidecar.kill()
        return self._outcome()

    def kill(self) -> PodOutcome:
        """Give up: SIGKILL whatever runs; the phase is ``Running`` if a container still ran."""
        self._terminating = True
        for container in self._all.values():
            if container.running:
                self._gave_up.append(container.name)
                container.kill()
        return self._outcome()

    def _outcome(self) -> PodOutcome:
        # Every attempt that ended has its exit on the queue; record those not yet handled.
        while any(c.attempts > len(c.outcome.exit_codes) for c in self._all.values()):
            self._handle(*self.events.get(timeout=TIMEOUT))
        leftovers = self._leftovers()
        self._stop_pause()
        outcomes = {c.name: c.close() for c in self._all.values()}
        regular = [outcomes[c.name] for c in self.containers]
        inits = [outcomes[c.name] for c in self.init_containers if not c.spec.native_sidecar]
        if any(name in self._gave_up for name in (c.name for c in self.containers)):
            phase = "Running"
        elif all(o.exit_code == 0 for o in [*inits, *regular]):
            phase = "Succeeded"
        else:
            phase = "Failed"
        return PodOutcome(phase, outcomes, list(self._gave_up), leftovers)

    def _leftovers(self) -> list[str]:
        """Processes started by the pod still alive now that every container has ended.

        The pause is not one; a process that is exiting right now (killed with
        its container) gets a moment to finish.
        """
        ours = set(self._before)
        if self._pause is not None:
            ours |= {self._pause.popen.pid, self._pause_pid or -1}
        candidates = []
        for proc in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.pid not in ours and proc.status() != psutil.STATUS_ZOMBIE:
                    candidates.append(proc)
        _, alive = psutil.wait_procs(candidates, timeout=LEFTOVER_GRACE)
        found = []
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(f"{proc.pid} {shlex.join(proc.cmdline())}")
        return found

    def close(self) -> None:
        """Kill whatever still runs (a test that failed half-way)."""
        for container in self._all.values():
            container.kill()
            container.stop()
        self._stop_pause()


@contextlib.contextmanager
def pod(manifest: Mapping[str, Any], workdir: Path, **options: Any) -> Iterator[Pod]:
    """A started ``Pod`` that is cleaned up however the test ends."""
    running = Pod(manifest, workdir, **options)
    try:
        running.start()
        yield running
    finally:
        running.close()


def run_pod(
    manifest: Mapping[str, Any], workdir: Path, timeout: float = TIMEOUT, **options: Any
) -> PodOutcome:
    """Run the pod to its end (or ``timeout``); see the module's docstring for ``options``."""
    with pod(manifest, workdir, **options) as running:
        return running.wait(timeout)


# --- compose ---------------------------------------------------------------------


def compose_interpolate(text: str) -> str:
    """Compose's interpolation, for files that use none: ``$$`` is a literal ``$``."""
    if re.search(r"(?<!\$)(?:\$\$)*\$(?=[{A-Za-z_])", text):
        raise ValueError(f"compose variables are not supported by the runner: {text!r}")
    return text.replace("$$", "$")


def compose_pod(project: Mapping[str, Any]) -> dict[str, Any]:
    """The pod a compose project stands for: one container per service, named volumes
    as emptyDirs, ``pid: service:...`` as a shared PID namespace, no restarts."""

    def literal(word: Any) -> str:
        # Compose's text, escaped again for the kubelet's $(VAR) expansion.
        return compose_interpolate(str(word)).replace("$", "$$")

    def words(value: Any) -> list[str]:
        return [literal(w) for w in (shlex.split(value) if isinstance(value, str) else value)]

    containers: list[dict[str, Any]] = []
    shared_pid = False
    for name, service in project["services"].items():
        container: dict[str, Any] = {"name": name, "image": service.get("image", "")}
        if "entrypoint" in service:
            container["command"] = words(service["entrypoint"])
        if "command" in service:
            container["args"] = words(service["command"])
        mounts = []
        for volume in service.get("volumes", []):
            source, _, rest = str(volume).partition(":")
            mounts.append({"name": source, "mountPath": rest.split(":", 1)[0]})
        container["volumeMounts"] = mounts
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        container["env"] = [{"name": k, "value": literal(v)} for k, v in environment.items()]
        shared_pid = shared_pid or str(service.get("pid", "")).startswith("service:")
        containers.append(container)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": str(project.get("name", "compose"))},
        "spec": {
            "restartPolicy": "Never",
            "shareProcessNamespace": shared_pid,
            "volumes": [{"name": v, "emptyDir": {}} for v in project.get("volumes", {})],
            "containers": containers,
        },
    }
