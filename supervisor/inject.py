"""``inject``: rewrite Jobs, CronJobs and Pods (alone, in a List, or among other
documents) to use the supervisor.

Default mode, for any cluster: one ``emptyDir`` named ``sidecar-supervisor`` is
added and mounted at ``/run/sidecar-supervisor`` in every container; an init
container (``--image``, restricted securityContext) copies the self-contained
bundle into it, so images without Python can run it; every container's
``command`` is prefixed with the bundle and its role: ``main`` for the mains
(with ``--preset`` in a mesh, ``--wait-ready`` for each sidecar that has a
readiness probe), ``sidecar --wait-for MAIN...`` for the rest (its probe as a
``--ready-*`` flag, ``--stop-on success`` under ``restartPolicy: OnFailure``).
A container that already runs the tool is kept and made consistent; a mesh's
own proxy is left to the mesh. The pod's shutdown budget is made to fit.

``--native`` mode, for clusters with native sidecars (1.29+): the sidecars move
to the init containers with ``restartPolicy: Always``, in their order, with a
``startupProbe`` copied from their ``readinessProbe``.

Which containers are mains: ``--main`` (repeatable), else the pod template's
annotation ``sidecar-supervisor/mains: a,b``, else those already wrapped as
main, else the first container that is no mesh proxy; the result carries the
annotation. Injecting the output again changes nothing. YAML is read and
written round-trip (ruamel.yaml): field order and comments survive.
"""

from __future__ import annotations

import copy
import io
import math
import shlex
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from supervisor import manifest
from supervisor.config import InjectConfig, SidecarConfig
from supervisor.errors import UsageError
from supervisor.manifest import (
    ANNOTATION,
    DEFAULT_GRACE_PERIOD,
    EXECUTABLE,
    INIT_NAME,
    LINKERD_SHUTDOWN,
    MOUNT,
    PROXIES,
    RESTRICTED_CONTEXT,
    VOLUME,
    Pod,
    Wrapped,
)

# Images known to have no glibc, which the bundle needs.
NO_GLIBC = ("distroless/static", "scratch", "alpine", "musl")


class Report:
    """What was rewritten and what was left, for the summary line and the warnings."""

    def __init__(self) -> None:
        self.rewritten: list[str] = []
        self.left: list[str] = []
        self.notes: list[str] = []

    def summary(self) -> str:
        parts = []
        if self.rewritten:
            parts.append("rewrote " + "; ".join(self.rewritten))
        if self.left:
            parts.append("left " + "; ".join(self.left))
        return "inject: " + (". ".join(parts) or "no documents")


def run_inject(
    config: InjectConfig,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    """Read, rewrite every document, and write only if all of them could be rewritten."""
    text = manifest.read_input(config.file, stdin)
    out, report = inject_text(text, config)
    for note in report.notes:
        print(f"inject: {note}", file=stderr)
    print(report.summary(), file=stderr)
    stdout.write(out)
    return 0


def inject_text(text: str, config: InjectConfig) -> tuple[str, Report]:
    yaml, documents = manifest.load_rt(text)
    report = Report()
    for document in documents:
        for item in manifest.objects(document):
            pod = manifest.object_pod(item)
            if pod is not None:
                _inject_pod(pod, config, report)
            else:
                what = manifest.describe(item) if isinstance(item, Mapping) else "a document"
                report.left.append(f"{what} (not a Job, CronJob or Pod)")
    out = io.StringIO()
    yaml.explicit_start = len(documents) > 1 or text.lstrip().startswith("---")
    yaml.dump_all(documents, out)
    return out.getvalue(), report


def _check_containers(pod: Pod) -> None:
    for key in ("containers", "initContainers"):
        items = manifest.containers(pod, key)
        for index, container in enumerate(items):
            if isinstance(container, Mapping) and container.get("name"):
                continue
            line = ""
            lc = getattr(items, "lc", None)
            if lc is not None:
                line = f" (line {lc.item(index)[0] + 1})"
            raise UsageError(
                f"{pod.where}: {key}[{index}]{line} is {container!r}, not a container "
                "(a mapping with a name, an image and a command)"
            )


def _mains(config: InjectConfig, pod: Pod) -> list[str]:
    mains = list(config.main) or manifest.default_mains(pod)
    names = {str(c.get("name")) for c in manifest.containers(pod)}
    names |= {str(c.get("name")) for c in manifest.native_sidecars(pod)}
    for main in mains:
        if main not in names:
            flag = "--main" if config.main else f"annotation {ANNOTATION}"
            raise UsageError(f"{flag}: {pod.where} has no container named {main!r}")
    return mains


def _metadata(pod: Pod, field: str) -> Any:
    if pod.template.get("metadata") is None:
        pod.template["metadata"] = {}
    metadata = pod.template["metadata"]
    if metadata.get(field) is None:
        metadata[field] = {}
    return metadata[field]


def _inject_pod(pod: Pod, config: InjectConfig, report: Report) -> None:
    _check_containers(pod)
    mains = _mains(config, pod)
    _metadata(pod, "annotations")[ANNOTATION] = ",".join(mains)
    if config.native:
        moved = _make_native(pod.spec, mains)
        mesh = manifest.mesh(pod, config.preset)
        if mesh:
            report.notes.append(
                f"{pod.where}: the {mesh} proxy is not moved by --native; turn on the mesh's "
                "native-sidecar mode, or inject without --native"
            )
        report.rewritten.append(f"{pod.where} (native sidecars: {', '.join(moved) or 'none'})")
        return
    _Wrapper(pod, mains, config, report).run()


class _Wrapper:
    """Default mode for one pod: wrap, keep, make consistent."""

    def __init__(self, pod: Pod, mains: list[str], config: InjectConfig, report: Report) -> None:
        self.pod, self.spec, self.mains = pod, pod.spec, mains
        self.config, self.report = config, report
        self.mesh = manifest.mesh(pod, config.preset)
        self.on_failure = self.spec.get("restartPolicy") == "OnFailure"
        self.wrapped: list[str] = []
        self.kept: list[str] = []
        self.left: list[str] = []
        self.ready_sidecars: list[str] = []  # sidecars with a readiness probe
        self.new_ready: list[str] = []  # ... of them, wrapped just now
        # The volume and --dir of the containers wrapped already, which new ones must share.
        self.volume, self.dir = VOLUME, MOUNT
        for container in manifest.containers(pod):
            found = manifest.wrapped(container)
            if found is not None and found.config is not None:
                volume = manifest.volume_at(container, str(found.config.dir))
                if volume is not None:
                    self.volume, self.dir = volume, str(found.config.dir)
                    break

    def run(self) -> None:
        regular = manifest.containers(self.pod)
        for container in regular:  # sidecars first: the mains wait for their readiness
            if str(container["name"]) not in self.mains:
                self._sidecar(container)
        for container in regular:
            if str(container["name"]) in self.mains:
                self._main(container)
        if self.mesh == "linkerd":
            key, value = LINKERD_SHUTDOWN
            _metadata(self.pod, "annotations").setdefault(key, value)
        uses_bundle = any(
            c.get("command") and str(c["command"][0]) == EXECUTABLE
            for c in [*regular, *manifest.containers(self.pod, "initContainers")]
        )
        if self.wrapped or self.kept:
            _add_volume(self.spec, self.volume)
        if uses_bundle:
            _add_init(self.spec, self.config.image, self.volume, self.pod.where)
        self._budget()
        described = [
            f"wrapped {', '.join(self.wrapped)}" if self.wrapped else "",
            f"kept {', '.join(self.kept)}" if self.kept else "",
            f"left {', '.join(self.left)}" if self.left else "",
        ]
        self.report.rewritten.append(f"{self.pod.where} ({'; '.join(d for d in described if d)})")

    # --- one container --------------------------------------------------------------

    def _command(self, container: Any) -> list[str] | None:
        name = str(container["name"])
        command = container.get("command")
        if command:
            return [str(word) for word in command]
        entrypoints = dict(self.config.entrypoint)
        if name not in entrypoints:
            raise UsageError(
                f"{self.pod.where}: container {name!r} has no command (its image's entrypoint is "
                f"not in the manifest); give it with --entrypoint {name}=/path/to/cmd, and the "
                "image's CMD, if it needs one, as args"
            )
        if not container.get("args"):
            self.report.notes.append(
                f"{self.pod.where}: container {name!r}: a command replaces the image's CMD too; "
                "if the image has one, give it as args"
            )
        return list(entrypoints[name])

    def _wrap(self, container: Any, role_flags: list[str]) -> None:
        command = self._command(container)
        assert command is not None
        name = str(container["name"])
        where = ["--dir", self.dir] if self.dir != MOUNT else []
        words = [EXECUTABLE, role_flags[0], "--name", name, *where, *role_flags[1:], "--", *command]
        container["command"] = _like(container.get("command"), words)
        _mount(container, MOUNT, self.volume)
        _mount(container, self.dir, self.volume)
        self.wrapped.append(name)
        self._warn_glibc(container)

    def _sidecar(self, container: Any) -> None:
        name = str(container["name"])
        found = manifest.wrapped(container)
        if found is not None:
            self._keep(container, found)
            return
        if name in PROXIES and self.mesh:
            self.left.append(f"{name} (the {self.mesh} proxy: the mains quit it)")
            return
        flags = ["sidecar"]
        for main in manifest.containers(self.pod):
            if str(main["name"]) in self.mains:
                flags += ["--wait-for", manifest.marker_name(main, manifest.wrapped(main))]
        if self.on_failure:
            flags += ["--stop-on", "success"]
        probe = _probe_flags(container)
        if isinstance(probe, str):
            self.report.notes.append(f"{self.pod.where}: container {name!r}: {probe}")
        elif probe:
            flags += probe
            self.ready_sidecars.append(name)
            self.new_ready.append(name)
        self._wrap(container, flags)

    def _main(self, container: Any) -> None:
        found = manifest.wrapped(container)
        if found is not None:
            self._keep(container, found)
            return
        flags = ["main"]
        if self.mesh:
            flags += ["--preset", self.mesh]
            if self.on_failure:
                flags += ["--stop-on", "success"]
        for sidecar in self.ready_sidecars:
            flags += ["--wait-ready", sidecar]
        self._wrap(container, flags)

    def _keep(self, container: Any, found: Wrapped) -> None:
        """A container that runs the tool already: no second wrapper, only what is missing."""
        name = str(container["name"])
        self.kept.append(name)
        if found.role not in manifest.WRAPPER_ROLES or found.config is None:
            return
        _mount(container, str(found.config.dir), self.volume)
        cfg = found.config
        added: list[str] = []
        if isinstance(cfg, SidecarConfig):
            if cfg.ready_http or cfg.ready_tcp or cfg.ready_command or cfg.ready_file:
                self.ready_sidecars.append(cfg.name)
            if self.on_failure and cfg.stop_on == "exit" and cfg.wait_for and not cfg.watch_process:
                added += ["--stop-on", "success"]
        else:
            if self.mesh and not found.flags.get("preset") and not cfg.quit_http:
                added += ["--preset", self.mesh]
            if self.mesh and self.on_failure and cfg.stop_on == "exit":
                added += ["--stop-on", "success"]
            added += [
                word
                for sidecar in self.new_ready
                if sidecar not in cfg.wait_ready
                for word in ("--wait-ready", sidecar)
            ]
        found.words[found.at + 1 : found.at + 1] = added

    def _warn_glibc(self, container: Any) -> None:
        image = str(container.get("image") or "").lower()
        if any(word in image for word in NO_GLIBC):
            self.report.notes.append(
                f"{self.pod.where}: container {container['name']!r}: its image {image!r} has no "
                "glibc, which the bundle needs; use --native (Kubernetes 1.29+) or an image "
                "with glibc"
            )

    # --- the shutdown budget --------------------------------------------------------------

    def _budget(self) -> None:
        """terminationGracePeriodSeconds >= --term-hold + --grace-period of every sidecar."""
        sidecars = [
            (container, found)
            for container in manifest.containers(self.pod)
            if (found := manifest.wrapped(container)) is not None
            and isinstance(found.config, SidecarConfig)
        ]
        needs = [
            f.config.term_hold + f.config.grace_period
            for _, f in sidecars
            if isinstance(f.config, SidecarConfig)
        ]
        if not needs:
            return
        given = self.spec.get("terminationGracePeriodSeconds")
        if given is None:
            need = math.ceil(max(needs))
            if need > DEFAULT_GRACE_PERIOD:
                self.spec["terminationGracePeriodSeconds"] = need
                self.report.notes.append(
                    f"{self.pod.where}: set terminationGracePeriodSeconds: {need} (the default "
                    f"{DEFAULT_GRACE_PERIOD} is shorter than --term-hold + --grace-period)"
                )
            return
        limit = float(given)
        for container, found in sidecars:
            cfg = found.config
            assert isinstance(cfg, SidecarConfig)
            if cfg.term_hold + cfg.grace_period <= limit:
                continue
            grace = min(cfg.grace_period, limit)
            hold = max(0.0, limit - grace)
            changes = {"--term-hold": _number(hold)}
            if grace != cfg.grace_period:
                changes["--grace-period"] = _number(grace)
            for flag, value in changes.items():
                _set_flag(container, found, flag, value)
            said = ", ".join(f"{flag} {value}" for flag, value in changes.items())
            self.report.notes.append(
                f"{self.pod.where}: container {container['name']!r}: lowered to {said}, to fit "
                f"terminationGracePeriodSeconds: {given}"
            )


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _set_flag(container: Any, found: Wrapped, flag: str, value: str) -> None:
    """Give ``flag`` this value where the wrapper's options are, or add it after the role."""
    lists = [(found.words, found.at + 1)]
    args = container.get("args")
    if found.words is container.get("command") and isinstance(args, list):
        lists.append((args, 0))
    for words, start in lists:
        for i in range(start, len(words)):
            word = str(words[i])
            if word == "--":
                break
            if word == flag and i + 1 < len(words):
                words[i + 1] = value
                return
            if word.startswith(flag + "="):
                words[i] = f"{flag}={value}"
                return
    found.words[found.at + 1 : found.at + 1] = [flag, value]


def _probe_flags(container: Any) -> list[str] | str:
    """The sidecar's readiness (or startup) probe as the wrapper's --ready-* flag.

    An empty list: no probe. A string: why the probe could not be carried over.
    """
    for key in ("readinessProbe", "startupProbe"):
        probe = container.get(key)
        if not isinstance(probe, Mapping):
            continue
        if isinstance(probe.get("httpGet"), Mapping):
            http = probe["httpGet"]
            port = _port(container, http.get("port"))
            if port is None:
                return f"{key}: port {http.get('port')!r} is not among its ports; not carried over"
            scheme = str(http.get("scheme") or "HTTP").lower()
            path = str(http.get("path") or "/")
            host = http.get("host") or "127.0.0.1"
            return ["--ready-http", f"{scheme}://{host}:{port}/{path.lstrip('/')}"]
        if isinstance(probe.get("tcpSocket"), Mapping):
            tcp = probe["tcpSocket"]
            port = _port(container, tcp.get("port"))
            if port is None:
                return f"{key}: port {tcp.get('port')!r} is not among its ports; not carried over"
            return ["--ready-tcp", f"{tcp.get('host') or '127.0.0.1'}:{port}"]
        command = (probe.get("exec") or {}).get("command")
        if isinstance(command, list) and command:
            return ["--ready-command", shlex.join(str(word) for word in command)]
        return f"{key}: only httpGet, tcpSocket and exec probes are carried over"
    return []


def _port(container: Any, port: Any) -> int | None:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for declared in container.get("ports") or []:
        if isinstance(declared, Mapping) and declared.get("name") == port:
            return int(declared["containerPort"])
    return None


def _like(original: Any, words: list[str]) -> Any:
    """A new list in the original's style (``[a, b]`` stays on one line)."""
    from ruamel.yaml.comments import CommentedSeq  # noqa: PLC0415

    seq = CommentedSeq(words)
    if getattr(original, "fa", None) is not None and original.fa.flow_style():
        seq.fa.set_flow_style()
    return seq


def _mount(container: Any, path: str, volume: str) -> None:
    if manifest.volume_at(container, path) is not None:
        return
    if container.get("volumeMounts") is None:
        container["volumeMounts"] = []
    container["volumeMounts"].append({"name": volume, "mountPath": path})


def _add_volume(spec: Any, volume: str) -> None:
    volumes = spec.get("volumes")
    if volumes is None:
        spec["volumes"] = volumes = []
    if not any(isinstance(v, Mapping) and v.get("name") == volume for v in volumes):
        volumes.append({"name": volume, "emptyDir": {}})


def _add_init(spec: Any, image: str | None, volume: str, where: str) -> None:
    inits = spec.get("initContainers")
    if inits is None:
        spec["initContainers"] = inits = []
    if any(isinstance(c, Mapping) and c.get("name") == INIT_NAME for c in inits):
        return
    if image is None:
        raise UsageError(
            f"--image: {where} needs the image built from the Dockerfile, for the init container "
            "that copies the bundle; no image is published: build and push it, then give "
            "--image (or SIDECAR_SUPERVISOR_IMAGE)"
        )
    inits.insert(
        0,
        {
            "name": INIT_NAME,
            "image": image,
            "command": ["sidecar-supervisor", "copy", MOUNT],
            "securityContext": copy.deepcopy(RESTRICTED_CONTEXT),
            "volumeMounts": [{"name": volume, "mountPath": MOUNT}],
        },
    )


def _make_native(spec: Any, mains: list[str]) -> list[str]:
    containers = spec["containers"]
    sidecars = [c for c in containers if str(c.get("name")) not in {*mains, *PROXIES}]
    if not sidecars:
        return []
    inits = spec.get("initContainers")
    if inits is None:
        spec["initContainers"] = inits = []
    for sidecar in sidecars:
        containers.remove(sidecar)
        sidecar["restartPolicy"] = "Always"
        if "readinessProbe" in sidecar and "startupProbe" not in sidecar:
            sidecar["startupProbe"] = copy.deepcopy(sidecar["readinessProbe"])
        inits.append(sidecar)
    return [str(s.get("name")) for s in sidecars]
