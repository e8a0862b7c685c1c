"""``inject``: rewrite a Job, CronJob or Pod manifest to use the supervisor.

Default mode, for any cluster: one ``emptyDir`` named ``sidecar-supervisor`` is
added and mounted at ``/run/sidecar-supervisor`` in every container; an init
container copies the self-contained bundle into it (``copy``), so images
without Python can run it; every container's ``command`` is prefixed with the
bundle and its role (``main`` for the mains, ``sidecar --wait-for MAIN...``
for the rest, with ``--stop-on success`` under ``restartPolicy: OnFailure``).

``--native`` mode, for clusters with native sidecars (1.29+): the sidecars move
to the init containers with ``restartPolicy: Always``, in their order, with a
``startupProbe`` copied from their ``readinessProbe``.

Which containers are mains: ``--main`` (repeatable), else the pod template's
annotation ``sidecar-supervisor/mains: a,b``, else the first container; the
result carries that annotation, so injecting it again changes nothing. Any
other kind of document passes through unchanged. YAML is read and written
round-trip (ruamel.yaml): field order and comments survive.
"""

from __future__ import annotations

import copy
import io
import sys
from typing import Any, TextIO

from supervisor.config import InjectConfig
from supervisor.errors import SupervisorError, UsageError

VOLUME = "sidecar-supervisor"
MOUNT = "/run/sidecar-supervisor"
EXECUTABLE = f"{MOUNT}/sidecar-supervisor/sidecar-supervisor"  # what ``copy`` publishes
INIT_NAME = "sidecar-supervisor-copy"
ANNOTATION = "sidecar-supervisor/mains"


def _yaml() -> Any:
    try:
        from ruamel.yaml import YAML  # noqa: PLC0415 - only inject needs a YAML library
    except ImportError:  # pragma: no cover - depends on the install
        raise SupervisorError(
            "inject needs ruamel.yaml: pip install 'sidecar-supervisor[inject]'"
        ) from None
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long command line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def run_inject(config: InjectConfig, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Read, rewrite every document, and write only if all of them could be rewritten."""
    if str(config.file) == "-":
        text = stdin.read()
    else:
        try:
            text = config.file.read_text()
        except OSError as exc:
            raise UsageError(f"-f: cannot read {config.file}: {exc.strerror or exc}") from exc
    stdout.write(inject_text(text, config))
    return 0


def inject_text(text: str, config: InjectConfig) -> str:
    yaml = _yaml()
    try:
        documents = list(yaml.load_all(text))
    except Exception as exc:  # noqa: BLE001 - ruamel raises many kinds; all mean "not YAML"
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"-f: not YAML: {problem}") from None
    for document in documents:
        _inject_document(document, config)
    out = io.StringIO()
    yaml.explicit_start = len(documents) > 1 or text.lstrip().startswith("---")
    yaml.dump_all(documents, out)
    return out.getvalue()


def _template(document: Any) -> tuple[Any, Any] | None:
    """(pod spec, pod template metadata) of a Job, CronJob or Pod; None otherwise."""
    if not isinstance(document, dict):
        return None
    kind = document.get("kind")
    try:
        if kind == "Pod":
            holder = document
        elif kind == "Job":
            holder = document["spec"]["template"]
        elif kind == "CronJob":
            holder = document["spec"]["jobTemplate"]["spec"]["template"]
        else:
            return None
    except (KeyError, TypeError):
        return None
    spec = holder.get("spec") if isinstance(holder, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list):
        return None
    if holder.get("metadata") is None:
        holder["metadata"] = {}
    return spec, holder["metadata"]


def _describe(document: Any) -> str:
    name = (document.get("metadata") or {}).get("name", "?")
    return f"{document.get('kind')} {name}"


def _mains(config: InjectConfig, spec: Any, metadata: Any, where: str) -> list[str]:
    names = [str(c.get("name")) for c in spec["containers"]]
    annotated = str((metadata.get("annotations") or {}).get(ANNOTATION, ""))
    mains = list(config.main) or [n.strip() for n in annotated.split(",") if n.strip()]
    if not mains:
        mains = names[:1]
    native_sidecars = [str(c.get("name")) for c in spec.get("initContainers") or []]
    for main in mains:
        if main not in names and main not in native_sidecars:
            flag = "--main" if config.main else f"annotation {ANNOTATION}"
            raise UsageError(f"{flag}: {where} has no container named {main!r}")
    return mains


def _inject_document(document: Any, config: InjectConfig) -> None:
    found = _template(document)
    if found is None:
        return
    spec, metadata = found
    where = _describe(document)
    mains = _mains(config, spec, metadata, where)
    if metadata.get("annotations") is None:
        metadata["annotations"] = {}
    metadata["annotations"][ANNOTATION] = ",".join(mains)
    if config.native:
        _make_native(spec, mains)
    else:
        _wrap(spec, mains, config, where)


def _wrap(spec: Any, mains: list[str], config: InjectConfig, where: str) -> None:
    on_failure = spec.get("restartPolicy") == "OnFailure"
    entrypoints = dict(config.entrypoint)
    for container in spec["containers"]:
        name = str(container.get("name"))
        command = container.get("command")
        if command and str(command[0]) == EXECUTABLE:
            _mount(container)
            continue  # injected already
        if not command:
            if name not in entrypoints:
                raise UsageError(
                    f"{where}: container {name!r} has no command (its image's entrypoint is "
                    f"not in the manifest); give it with --entrypoint {name}=/path/to/cmd"
                )
            command = list(entrypoints[name])
        if name in mains:
            prefix = [EXECUTABLE, "main", "--name", name]
        else:
            prefix = [EXECUTABLE, "sidecar", "--name", name]
            for main in mains:
                prefix += ["--wait-for", main]
            if on_failure:
                prefix += ["--stop-on", "success"]
        container["command"] = _like(command, [*prefix, "--", *(str(word) for word in command)])
        _mount(container)
    _add_volume(spec)
    _add_init(spec, config.image)


def _like(original: Any, words: list[str]) -> Any:
    """A new list in the original's style (``[a, b]`` stays on one line)."""
    from ruamel.yaml.comments import CommentedSeq  # noqa: PLC0415

    seq = CommentedSeq(words)
    if getattr(original, "fa", None) is not None and original.fa.flow_style():
        seq.fa.set_flow_style()
    return seq


def _mount(container: Any) -> None:
    mounts = container.get("volumeMounts")
    if mounts is None:
        container["volumeMounts"] = mounts = []
    if not any(m.get("mountPath") == MOUNT for m in mounts):
        mounts.append({"name": VOLUME, "mountPath": MOUNT})


def _add_volume(spec: Any) -> None:
    volumes = spec.get("volumes")
    if volumes is None:
        spec["volumes"] = volumes = []
    if not any(v.get("name") == VOLUME for v in volumes):
        volumes.append({"name": VOLUME, "emptyDir": {}})


def _add_init(spec: Any, image: str) -> None:
    inits = spec.get("initContainers")
    if inits is None:
        spec["initContainers"] = inits = []
    if any(c.get("name") == INIT_NAME for c in inits):
        return
    inits.insert(
        0,
        {
            "name": INIT_NAME,
            "image": image,
            "command": ["sidecar-supervisor", "copy", MOUNT],
            "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT}],
        },
    )


def _make_native(spec: Any, mains: list[str]) -> None:
    containers = spec["containers"]
    sidecars = [c for c in containers if str(c.get("name")) not in mains]
    if not sidecars:
        return
    inits = spec.get("initContainers")
    if inits is None:
        spec["initContainers"] = inits = []
    for sidecar in sidecars:
        containers.remove(sidecar)
        sidecar["restartPolicy"] = "Always"
        if "readinessProbe" in sidecar and "startupProbe" not in sidecar:
            sidecar["startupProbe"] = copy.deepcopy(sidecar["readinessProbe"])
        inits.append(sidecar)
