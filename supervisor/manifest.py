"""Reading Kubernetes manifests, for ``inject`` and ``check`` alike.

One place for: where the pod specs are in a document (a Job, a CronJob, a Pod,
or a ``List`` of them, as ``kubectl get -o yaml`` prints), which containers
already run the tool and with which flags (read with the option table of
``config``, so defaults are never written twice), which mesh injects a proxy,
and which containers are the mains.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from supervisor.config import (
    DEFAULT_DIR,
    ENV_PREFIX,
    OPTIONS,
    MainConfig,
    Option,
    SidecarConfig,
    resolve,
)
from supervisor.errors import SupervisorError, UsageError

TOOL = "sidecar-supervisor"
VOLUME = "sidecar-supervisor"
MOUNT = DEFAULT_DIR
EXECUTABLE = f"{MOUNT}/{TOOL}/{TOOL}"  # what ``copy`` publishes on the volume
INIT_NAME = "sidecar-supervisor-copy"
ANNOTATION = "sidecar-supervisor/mains"
DEFAULT_GRACE_PERIOD = 30  # terminationGracePeriodSeconds when the pod does not say

# The containers a mesh's webhook injects, and what turns the injection on.
PROXIES = {"istio-proxy": "istio", "linkerd-proxy": "linkerd"}
ISTIO_INJECT = "sidecar.istio.io/inject"
LINKERD_INJECT = "linkerd.io/inject"
# linkerd's /shutdown endpoint is off unless the pod asks for it.
LINKERD_SHUTDOWN = ("config.linkerd.io/proxy-admin-shutdown", "enabled")

# What a Pod Security Standard "restricted" namespace asks of every container;
# inject gives it to the containers it adds (the image runs as user 10001).
RESTRICTED_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

WRAPPER_ROLES = ("main", "sidecar")


def read_input(path: Path, stdin: TextIO) -> str:
    """The manifest text of ``-f`` (``-``: standard input)."""
    if str(path) == "-":
        return stdin.read()
    try:
        return path.read_text()
    except OSError as exc:
        raise UsageError(f"-f: cannot read {path}: {exc.strerror or exc}") from exc


def option(command: str, flag: str) -> Option:
    """The row of the option table, for its default."""
    return next(o for o in OPTIONS[command] if o.flag == flag)


# --- reading ------------------------------------------------------------------------


def load_fast(text: str) -> list[Any]:
    """Plain data from every document, with the fastest parser installed.

    libyaml (PyYAML's C loader) reads a hundred Jobs in tens of milliseconds;
    ruamel.yaml's pure-Python one takes half a second. Errors name the line
    and column either way.
    """
    try:
        import yaml  # noqa: PLC0415 - only check reads this way

        loader = yaml.CSafeLoader
    except (ImportError, AttributeError):
        return _load_ruamel(text, "safe")
    try:
        return list(yaml.load_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        raise UsageError(f"-f: not YAML: {_yaml_problem(exc)}") from None


def yaml_rt() -> Any:
    """ruamel.yaml's round-trip reader and writer: field order and comments survive."""
    try:
        from ruamel.yaml import YAML  # noqa: PLC0415 - only inject and check need YAML
    except ImportError:  # pragma: no cover - depends on the install
        raise SupervisorError(
            "this command needs ruamel.yaml: pip install 'sidecar-supervisor[inject]'"
        ) from None
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long command line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load_ruamel(text: str, typ: str) -> list[Any]:
    yaml = yaml_rt()
    if typ != "rt":
        from ruamel.yaml import YAML  # noqa: PLC0415

        yaml = YAML(typ=typ, pure=True)
    try:
        return list(yaml.load_all(text))
    except Exception as exc:  # noqa: BLE001 - ruamel raises many kinds; all mean "not YAML"
        raise UsageError(f"-f: not YAML: {_yaml_problem(exc)}") from None


def load_rt(text: str) -> tuple[Any, list[Any]]:
    """The round-trip YAML object and every document, for rewriting."""
    yaml = yaml_rt()
    try:
        return yaml, list(yaml.load_all(text))
    except Exception as exc:  # noqa: BLE001 - ruamel raises many kinds; all mean "not YAML"
        raise UsageError(f"-f: not YAML: {_yaml_problem(exc)}") from None


def _yaml_problem(exc: BaseException) -> str:
    """``line L, column C: what`` from a parser's error (marks count from 0)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


# --- where the pods are ------------------------------------------------------------


class Pod(NamedTuple):
    where: str  # "Job nightly", for messages
    spec: Any  # the pod spec (a mapping with a list of containers)
    template: Any  # the mapping that holds spec and metadata (metadata may be missing)


def objects(document: Any) -> Iterator[Any]:
    """The document, or each item of a List (``kind: List``, ``JobList``...)."""
    kind = document.get("kind") if isinstance(document, Mapping) else None
    if isinstance(kind, str) and kind.endswith("List") and isinstance(document.get("items"), list):
        for item in document["items"]:
            yield from objects(item)
    elif document is not None:
        yield document


def documents_pods(document: Any) -> Iterator[Pod]:
    """Every pod spec of a Job, CronJob or Pod, or of each item of a List."""
    for item in objects(document):
        pod = object_pod(item)
        if pod is not None:
            yield pod


def object_pod(document: Any) -> Pod | None:
    """The pod spec of a Job, CronJob or Pod; None for anything else."""
    if not isinstance(document, Mapping):
        return None
    kind = document.get("kind")
    holder: Any = None
    if kind == "Pod":
        holder = document
    elif kind == "Job":
        holder = _get(document, "spec", "template")
    elif kind == "CronJob":
        holder = _get(document, "spec", "jobTemplate", "spec", "template")
    if not isinstance(holder, Mapping):
        return None
    spec = holder.get("spec")
    if isinstance(spec, Mapping) and isinstance(spec.get("containers"), list):
        return Pod(describe(document), spec, holder)
    return None


def describe(document: Any) -> str:
    metadata = document.get("metadata") if isinstance(document, Mapping) else None
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    name = name or (metadata or {}).get("generateName") or "(no name)"
    return f"{document.get('kind')} {name}"


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def metadata_field(pod: Pod, field: str) -> Mapping[str, Any]:
    """The template's labels or annotations, empty when absent."""
    value = _get(pod.template, "metadata", field)
    return value if isinstance(value, Mapping) else {}


def containers(pod: Pod, key: str = "containers") -> list[Any]:
    value = pod.spec.get(key)
    return value if isinstance(value, list) else []


def native_sidecars(pod: Pod) -> list[Any]:
    return [
        c
        for c in containers(pod, "initContainers")
        if isinstance(c, Mapping) and c.get("restartPolicy") == "Always"
    ]


def mesh(pod: Pod, forced: str | None = None) -> str | None:
    """The mesh whose proxy is (or will be) in this pod and must be told to quit.

    A proxy injected as a native sidecar (an init container with
    ``restartPolicy: Always``) is stopped by the kubelet: no mesh to handle.
    """
    if any(PROXIES.get(str(c.get("name"))) for c in native_sidecars(pod)):
        return None
    if forced:
        return forced
    for container in containers(pod):
        if isinstance(container, Mapping) and str(container.get("name")) in PROXIES:
            return PROXIES[str(container.get("name"))]
    labels, annotations = metadata_field(pod, "labels"), metadata_field(pod, "annotations")
    if str(annotations.get(ISTIO_INJECT, labels.get(ISTIO_INJECT, ""))).lower() == "true":
        return "istio"
    if str(annotations.get(LINKERD_INJECT, "")).lower() == "enabled":
        return "linkerd"
    return None


def annotated_mains(pod: Pod) -> list[str]:
    text = str(metadata_field(pod, "annotations").get(ANNOTATION, ""))
    return [name.strip() for name in text.split(",") if name.strip()]


def default_mains(pod: Pod) -> list[str]:
    """The annotation, else the containers wrapped as main, else the first that is no proxy."""
    mains = annotated_mains(pod)
    if mains:
        return mains
    regular = [c for c in containers(pod) if isinstance(c, Mapping)]
    wrapped_mains = [str(c.get("name")) for c in regular if (w := wrapped(c)) and w.role == "main"]
    if wrapped_mains:
        return wrapped_mains
    names = [str(c.get("name")) for c in regular if str(c.get("name")) not in PROXIES]
    return names[:1]


# --- containers that run the tool ---------------------------------------------------


class Wrapped(NamedTuple):
    role: str  # main, sidecar, or another command of the tool (copy, done, status...)
    words: Any  # the list (command or args) that holds the role word
    at: int  # the role word's index in ``words``
    flags: dict[str, list[str]]  # the flags as given, by their name in the table (dest)
    config: SidecarConfig | MainConfig | None  # resolved as the tool would; None if it cannot
    error: str | None  # why the tool would refuse these flags, if it would


def is_tool(word: Any) -> bool:
    """The tool, pip-installed (``sidecar-supervisor``) or the bundle's path."""
    return isinstance(word, str) and word.rsplit("/", 1)[-1] == TOOL


def _image_is_tool(image: Any) -> bool:
    """An image built from the Dockerfile: its ENTRYPOINT is the tool."""
    repository = str(image or "").split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    return last.split(":", 1)[0] == TOOL


def wrapped(container: Mapping[str, Any]) -> Wrapped | None:
    """How ``container`` runs the tool, or None when its command does not start with it."""
    command, args = container.get("command"), container.get("args")
    command = command if isinstance(command, list) else None
    args = args if isinstance(args, list) else []
    if command:
        if not is_tool(command[0]):
            return None
        words, at = (command, 1) if len(command) > 1 else (args, 0)
    elif _image_is_tool(container.get("image")) and args:
        words, at = args, 0
    else:
        return None
    if at >= len(words):
        return None
    argv = [str(w) for w in [*words[at:], *(args if words is command else [])]]
    role = argv[0]
    if role not in WRAPPER_ROLES:
        return Wrapped(role, words, at, {}, None, None)
    flags, rest, error = _parse_flags(role, argv[1:])
    config: SidecarConfig | MainConfig | None = None
    if error is None:
        try:
            resolved = resolve(role, flags, tuple(rest), _literal_env(container))
        except UsageError as exc:
            error = str(exc)
        else:
            assert isinstance(resolved, SidecarConfig | MainConfig)
            config = resolved
    if error and "$(" in " ".join(argv):
        error = None  # the kubelet expands $(VAR) first: cannot tell from here
    return Wrapped(role, words, at, flags, config, error)


def _parse_flags(role: str, argv: list[str]) -> tuple[dict[str, Any], list[str], str | None]:
    """The wrapper's options before its COMMAND, read as its argument parser does."""
    table = {o.flag: o for o in OPTIONS[role]}
    flags: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return flags, argv[i + 1 :], None
        if not word.startswith("-") or word == "-":
            return flags, argv[i:], None
        name, equals, value = word.partition("=")
        found = table.get(name)
        if found is None:
            return flags, [], f"unrecognized argument: {name}"
        if found.switch:
            flags[found.dest] = True
        else:
            if not equals:
                i += 1
                if i >= len(argv):
                    return flags, [], f"{name}: expected one argument"
                value = argv[i]
            if found.repeat:
                flags.setdefault(found.dest, []).append(value)
            else:
                flags[found.dest] = value
        i += 1
    return flags, [], None


def _literal_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The tool's variables the manifest sets to a literal value."""
    env = container.get("env")
    return {
        str(e["name"]): str(e["value"])
        for e in (env if isinstance(env, list) else [])
        if isinstance(e, Mapping)
        and str(e.get("name", "")).startswith(ENV_PREFIX)
        and e.get("value") is not None
    }


def marker_name(container: Mapping[str, Any], found: Wrapped | None) -> str:
    """The name a container's records carry: its wrapper's --name, else the container's."""
    if found is not None and found.config is not None:
        return found.config.name
    return str(container.get("name"))


def mount_path(container: Mapping[str, Any], volume: str) -> str | None:
    for mount in container.get("volumeMounts") or []:
        if isinstance(mount, Mapping) and mount.get("name") == volume:
            return str(mount.get("mountPath"))
    return None


def volume_at(container: Mapping[str, Any], path: str) -> str | None:
    """The volume mounted at ``path`` in ``container``, if any."""
    for mount in container.get("volumeMounts") or []:
        if isinstance(mount, Mapping) and str(mount.get("mountPath", "")).rstrip(
            "/"
        ) == path.rstrip("/"):
            return str(mount.get("name"))
    return None
