"""``check``: find the Jobs that will hang, or fail, because of their sidecars.

Reads Jobs, CronJobs and Pods (alone, in a ``List``, among other documents)
and reports each reason, one finding a line: the object, the container, what
is wrong, and the fix. Exit 1 if there is any. It reads with the fastest YAML
parser installed and never starts anything; a Pod is checked only when it
can complete (``restartPolicy`` Never or OnFailure).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, TextIO

from supervisor import manifest
from supervisor.config import CheckConfig, MainConfig, SidecarConfig
from supervisor.manifest import DEFAULT_GRACE_PERIOD, EXECUTABLE, LINKERD_SHUTDOWN, Pod, Wrapped

RESTRICTED = (
    "runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, "
    "seccompProfile: {type: RuntimeDefault}"
)


class Finding(NamedTuple):
    object: str  # "Job nightly"
    container: str  # "" for the pod as a whole
    code: str  # a short stable name, for machines
    what: str
    fix: str

    def line(self) -> str:
        where = f"{self.object}: container {self.container}" if self.container else self.object
        return f"{where}: {self.code}: {self.what}; fix: {self.fix}"


def run_check(config: CheckConfig, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    text = manifest.read_input(config.file, stdin)
    findings = check_text(text)
    if config.format == "json":
        stdout.write(json.dumps([f._asdict() for f in findings], indent=2) + "\n")
    else:
        stdout.writelines(f.line() + "\n" for f in findings)
    return 1 if findings else 0


def check_text(text: str) -> list[Finding]:
    findings: list[Finding] = []
    for document in manifest.load_fast(text):
        for pod in manifest.documents_pods(document):
            findings += check_pod(pod)
    return findings


class _Container(NamedTuple):
    name: str
    spec: Mapping[str, Any]
    found: Wrapped | None
    config: SidecarConfig | MainConfig | None  # set for a main or sidecar wrapper whose flags parse
    native: bool


def check_pod(pod: Pod) -> list[Finding]:
    if pod.template.get("kind") == "Pod" and pod.spec.get("restartPolicy", "Always") == "Always":
        return []  # a pod that is never meant to complete
    return list(_Checker(pod).findings())


class _Checker:
    def __init__(self, pod: Pod) -> None:
        self.pod, self.spec = pod, pod.spec
        self.bad: list[int] = []
        self.regular = self._read(manifest.containers(pod), init=False)
        inits = [c for c in manifest.containers(pod, "initContainers") if isinstance(c, Mapping)]
        self.inits = self._read(inits, init=True)
        self.natives = [c for c in self.inits if c.native]
        self.wrappers = [c for c in [*self.regular, *self.natives] if c.config is not None]
        names = {c.name for c in self.regular}
        self.mains = [m for m in manifest.default_mains(pod) if m in names]
        self.mesh = manifest.mesh(pod)

    def _read(self, items: list[Any], init: bool) -> list[_Container]:
        read = []
        for index, container in enumerate(items):
            if not isinstance(container, Mapping):
                self.bad.append(index)
                continue
            found = manifest.wrapped(container)
            config = found.config if found is not None else None
            native = init and _is_native(container)
            read.append(_Container(str(container.get("name")), container, found, config, native))
        return read

    def finding(self, container: str, code: str, what: str, fix: str) -> Finding:
        return Finding(self.pod.where, container, code, what, fix)

    def findings(self) -> Iterator[Finding]:
        for index in self.bad:
            yield self.finding(
                "", "not-a-container", f"containers[{index}] is not a mapping",
                "write each container as a mapping with name, image and command",
            )  # fmt: skip
        for c in [*self.regular, *self.inits]:
            if c.found is not None and c.found.error:
                yield self.finding(
                    c.name, "bad-flags", f"its wrapper would refuse its flags ({c.found.error})",
                    "correct the flag (see `sidecar-supervisor "
                    f"{c.found.role} --help`)",
                )  # fmt: skip
        yield from self._unwrapped()
        yield from self._mesh()
        yield from self._on_failure()
        yield from self._budget()
        yield from self._volumes()
        yield from self._names()
        yield from self._bundle()
        yield from self._restricted()

    # --- the rules ------------------------------------------------------------------

    def _unwrapped(self) -> Iterator[Finding]:
        if len(self.regular) < 2:
            return
        wait = " ".join(f"--wait-for {m}" for m in self.mains)
        for c in self.regular:
            if c.name in self.mains or (c.found and c.found.role in manifest.WRAPPER_ROLES):
                continue
            if self.mesh and c.name in manifest.PROXIES:
                continue  # the mesh's proxy: the mains quit it (see _mesh)
            yield self.finding(
                c.name, "unwrapped-sidecar",
                "a sidecar that is neither wrapped nor native keeps running after the mains "
                "exit, so the Job never completes",
                f"start its command with `sidecar-supervisor sidecar --name {c.name} {wait} --` "
                "(`sidecar-supervisor inject` does it), or make it a native sidecar (1.29+)",
            )  # fmt: skip

    def _mesh(self) -> Iterator[Finding]:
        if not self.mesh:
            return
        quitting = False
        for c in self.regular:
            if c.name not in self.mains:
                continue
            if not isinstance(c.config, MainConfig):
                fix = f"start its command with `sidecar-supervisor main --preset {self.mesh} --`"
            elif not c.config.quit_http:
                fix = f"add --preset {self.mesh} to its wrapper"
            else:
                quitting = True
                continue
            yield self.finding(
                c.name, "mesh-no-quit",
                f"the {self.mesh} proxy injected into this pod keeps running after this main "
                "exits, so the Job never completes",
                fix,
            )  # fmt: skip
        annotations = manifest.metadata_field(self.pod, "annotations")
        key, value = LINKERD_SHUTDOWN
        if self.mesh == "linkerd" and quitting and str(annotations.get(key)) != value:
            yield self.finding(
                "", "linkerd-shutdown-off",
                "linkerd's /shutdown endpoint is off by default, so the quit request fails",
                f"annotate the pod template with {key}: {value}",
            )  # fmt: skip

    def _on_failure(self) -> Iterator[Finding]:
        if self.spec.get("restartPolicy") != "OnFailure":
            return
        for c in self.wrappers:
            if isinstance(c.config, SidecarConfig) and c.config.stop_on == "exit":
                if c.config.watch_process:
                    fix = "use restartPolicy: Never (a watched process's exit code is unknown)"
                elif not c.config.wait_for:
                    continue
                else:
                    fix = "add --stop-on success to its wrapper"
                yield self.finding(
                    c.name, "stops-on-failure",
                    "under restartPolicy: OnFailure it stops when a main fails, and the "
                    "restarted main runs without it",
                    fix,
                )  # fmt: skip
            main = c.config
            if isinstance(main, MainConfig) and main.quit_http and main.stop_on == "exit":
                yield self.finding(
                    c.name, "stops-on-failure",
                    "under restartPolicy: OnFailure a failed attempt quits the proxy, and "
                    "the restarted main runs without it",
                    "add --stop-on success to its wrapper",
                )  # fmt: skip

    def _budget(self) -> Iterator[Finding]:
        given = self.spec.get("terminationGracePeriodSeconds")
        limit = DEFAULT_GRACE_PERIOD if given is None else given
        for c in self.wrappers:
            if not isinstance(c.config, SidecarConfig) or c.native:
                continue
            need = c.config.term_hold + c.config.grace_period
            if need > float(limit):
                said = "the default 30" if given is None else str(given)
                yield self.finding(
                    c.name, "shutdown-budget",
                    f"--term-hold + --grace-period is {need:g} s, longer than "
                    f"terminationGracePeriodSeconds ({said}): at pod deletion the kubelet "
                    "SIGKILLs it before it has stopped cleanly",
                    f"set terminationGracePeriodSeconds: {need:g}, or lower --term-hold",
                )  # fmt: skip

    def _volumes(self) -> Iterator[Finding]:
        waits = any(
            (isinstance(c.config, SidecarConfig) and (c.config.wait_for or c.config.wait_ready))
            or (isinstance(c.config, MainConfig) and c.config.wait_ready)
            for c in self.wrappers
        )
        if not waits:
            return  # no container reads another's records
        shared: dict[str, list[str]] = {}
        for c in self.wrappers:
            assert c.config is not None
            directory = str(c.config.dir)
            if isinstance(c.config, SidecarConfig) and not (
                c.config.wait_for or c.config.wait_ready
            ):
                continue  # waits for a marker or a process, not for records
            volume = manifest.volume_at(c.spec, directory)
            if volume is not None:
                shared.setdefault(volume, []).append(c.name)
        main_volume = max(shared, key=lambda v: len(shared[v])) if shared else None
        for c in self.wrappers:
            assert c.config is not None
            directory = str(c.config.dir)
            if isinstance(c.config, SidecarConfig) and not (
                c.config.wait_for or c.config.wait_ready
            ):
                continue
            if manifest.volume_at(c.spec, directory) is not None:
                continue
            elsewhere = manifest.mount_path(c.spec, main_volume) if main_volume else None
            if elsewhere:
                what = f"mounts the shared volume {main_volume} at {elsewhere}, not at its --dir"
                fix = f"mount it at {directory}, or give --dir {elsewhere}"
            else:
                what = (
                    f"has no volume at its --dir {directory}: no other container sees its records"
                )
                fix = f"mount the shared emptyDir at {directory}"
            yield self.finding(c.name, "no-shared-volume", what, fix)
        if len(shared) > 1:
            described = "; ".join(f"{v}: {', '.join(n)}" for v, n in shared.items())
            yield self.finding(
                "", "no-shared-volume",
                f"the wrapped containers keep their records on different volumes ({described})",
                "mount one emptyDir at the --dir of every wrapped container",
            )  # fmt: skip

    def _names(self) -> Iterator[Finding]:
        records = Counter(c.config.name for c in self.wrappers if c.config is not None)
        for name, count in records.items():
            if count > 1:
                holders = [c.name for c in self.wrappers if c.config and c.config.name == name]
                yield self.finding(
                    ", ".join(holders), "duplicate-name",
                    f"{count} wrapped containers use the name {name!r}: all but one fail "
                    "(another supervisor holds the lock)",
                    "give each its own --name (its container's name)",
                )  # fmt: skip
        by_container = {c.name: c for c in [*self.regular, *self.natives]}
        sidecars = {c.config.name for c in self.wrappers if isinstance(c.config, SidecarConfig)}
        for c in self.wrappers:
            if isinstance(c.config, SidecarConfig):
                for target in c.config.wait_for:
                    yield from self._target(c, "--wait-for", target, records, by_container)
            if isinstance(c.config, SidecarConfig | MainConfig):
                for target in c.config.wait_ready:
                    if target in sidecars:
                        continue
                    yield from self._target(c, "--wait-ready", target, records, by_container)

    def _target(
        self,
        c: _Container,
        flag: str,
        target: str,
        records: Counter[str],
        by_container: dict[str, _Container],
    ) -> Iterator[Finding]:
        hang = "it never stops" if flag == "--wait-for" else "it waits --ready-timeout and fails"
        other = by_container.get(target)
        if flag == "--wait-ready" and target in records:
            yield self.finding(
                c.name, "unknown-name",
                f"{flag} {target}: that is not a wrapped sidecar, so {target}.ready never "
                f"appears: {hang}",
                f"name a wrapped sidecar, or drop {flag} {target}",
            )  # fmt: skip
            return
        if target in records:
            return
        if other is None:
            known = ", ".join(sorted(records)) or "none"
            yield self.finding(
                c.name, "unknown-name",
                f"{flag} {target}: no container writes records under that name: {hang}",
                f"name one of the wrapped containers ({known})",
            )  # fmt: skip
        elif other.config is not None:
            yield self.finding(
                c.name, "unknown-name",
                f"{flag} {target}: container {target} writes its records as "
                f"{other.config.name!r}: {hang}",
                f"give {target}'s wrapper --name {target}, or write {flag} {other.config.name}",
            )  # fmt: skip
        elif flag == "--wait-for" and not _writes_done(other.spec):
            yield self.finding(
                c.name, "unknown-name",
                f"{flag} {target}: container {target} is not wrapped and writes no completion "
                f"record: {hang}",
                f"start {target}'s command with `sidecar-supervisor main --name {target} --`",
            )  # fmt: skip
        elif flag == "--wait-ready":
            yield self.finding(
                c.name, "unknown-name",
                f"{flag} {target}: container {target} is not wrapped, so {target}.ready "
                f"never appears: {hang}",
                f"wrap {target} with `sidecar-supervisor sidecar --name {target}`",
            )  # fmt: skip

    def _bundle(self) -> Iterator[Finding]:
        copies = {
            volume
            for c in self.inits
            if not c.native and c.found is not None and c.found.role == "copy"
            for volume in _volumes(c.spec)
        }
        for c in [*self.regular, *self.inits]:
            if c.found is None or c.found.role == "copy":
                continue
            program = str((c.spec.get("command") or [""])[0])
            if not program.startswith("/"):
                continue
            volume = _volume_holding(c.spec, program)
            if volume is None and program == EXECUTABLE:
                yield self.finding(
                    c.name, "bundle-not-copied",
                    f"runs the bundle at {program}, but no volume is mounted there",
                    f"mount the shared emptyDir at {manifest.MOUNT}",
                )  # fmt: skip
            elif volume is not None and volume not in self.spec_volumes_emptydir():
                continue  # a volume the user fills some other way
            elif volume is not None and volume not in copies:
                yield self.finding(
                    c.name, "bundle-not-copied",
                    f"runs the bundle at {program} from volume {volume}, but no init container "
                    "copies it there",
                    f"add an init container that runs `sidecar-supervisor copy` with {volume} "
                    "mounted (`sidecar-supervisor inject` adds it)",
                )  # fmt: skip

    def spec_volumes_emptydir(self) -> set[str]:
        volumes = self.spec.get("volumes") or []
        return {str(v.get("name")) for v in volumes if isinstance(v, Mapping) and "emptyDir" in v}

    def _restricted(self) -> Iterator[Finding]:
        pod_context = self.spec.get("securityContext") or {}
        for c in self.inits:
            if c.found is None or c.found.role != "copy":
                continue
            missing = _restricted_problems(c.spec.get("securityContext") or {}, pod_context)
            if missing:
                yield self.finding(
                    c.name, "not-restricted",
                    f"a namespace that enforces the restricted Pod Security Standard rejects "
                    f"the pod: {', '.join(missing)}",
                    f"give it securityContext: {{{RESTRICTED}}}",
                )  # fmt: skip


def _is_native(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def _volumes(container: Mapping[str, Any]) -> list[str]:
    return [
        str(m.get("name")) for m in container.get("volumeMounts") or [] if isinstance(m, Mapping)
    ]


def _volume_holding(container: Mapping[str, Any], program: str) -> str | None:
    best, best_len = None, -1
    for mount in container.get("volumeMounts") or []:
        if not isinstance(mount, Mapping):
            continue
        path = str(mount.get("mountPath", "")).rstrip("/")
        if program.startswith(path + "/") and len(path) > best_len:
            best, best_len = str(mount.get("name")), len(path)
    return best


def _writes_done(container: Mapping[str, Any]) -> bool:
    """A script that writes its own completion record (``sidecar-supervisor done``)."""
    words = [str(w) for w in [*(container.get("command") or []), *(container.get("args") or [])]]
    text = " ".join(words)
    return manifest.TOOL in text and " done" in text


def _restricted_problems(context: Mapping[str, Any], pod: Mapping[str, Any]) -> list[str]:
    """What the restricted Pod Security Standard would refuse in this container."""
    problems = []
    if context.get("privileged") is True:
        problems.append("privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append("capabilities do not drop ALL")
    if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append("capabilities add more than NET_BIND_SERVICE")
    if context.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
        problems.append("runAsNonRoot is not true")
    if context.get("runAsUser", pod.get("runAsUser")) == 0:
        problems.append("runAsUser is 0")
    seccomp = context.get("seccompProfile") or pod.get("seccompProfile") or {}
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("no RuntimeDefault seccompProfile")
    return problems
