"""``copy DEST``: put the self-contained bundle on a shared volume (an init container's job).

The bundle is a folder holding ``sidecar-supervisor`` (a small static launcher) and
``_internal/`` (the frozen program, its libraries and Python), so it runs in images
that have no Python. ``copy`` publishes it in DEST so that a half-copied bundle is
never run::

    DEST/.sidecar-supervisor.lock                   flock: one copier at a time
    DEST/.sidecar-supervisor-tmp-*                  being copied; removed if a copier died
    DEST/.sidecar-supervisor-<version>-<hash>/      complete, renamed into place, never changed
    DEST/sidecar-supervisor -> .sidecar-supervisor-<version>-<hash>    replaced atomically

and prints ``DEST/sidecar-supervisor/sidecar-supervisor``, the command to put in
front of the sidecar's. The link is relative, so the volume may be mounted at
another path in the sidecar. Copying the same bundle again writes nothing.
A published version is never removed: a running sidecar may still load from it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from supervisor import log
from supervisor.config import CopyConfig
from supervisor.errors import SupervisorError

EXECUTABLE = "sidecar-supervisor"
CONTENTS = "_internal"
MANIFEST = "bundle.json"  # in CONTENTS, written by bundle/build.py: {"version", "glibc", ...}
DEFAULT_BUNDLE = Path("/opt/sidecar-supervisor")
LINK = "sidecar-supervisor"
PREFIX = ".sidecar-supervisor-"
TMP_PREFIX = ".sidecar-supervisor-tmp-"
LOCK = ".sidecar-supervisor.lock"
HASH_CHARS = 12


# --- the running bundle ---------------------------------------------------------


def frozen() -> bool:
    """True inside the bundle (PyInstaller sets ``sys.frozen``)."""
    return bool(getattr(sys, "frozen", False))


def own_bundle() -> Path:
    """The folder of the bundle this process runs from.

    The frozen program is ``<bundle>/_internal/sidecar-supervisor`` behind the
    launcher (or ``<bundle>/sidecar-supervisor`` in a plain PyInstaller layout).
    """
    contents = Path(sys.executable).resolve().parent
    return contents.parent if contents.name == CONTENTS else contents


# --- what is copied -------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    path: str  # relative, "/"-separated
    kind: str  # "dir", "file" or "link"
    mode: int
    target: str = ""  # a link's target, kept as written (relative, inside the bundle)


def source_bundle(config: CopyConfig) -> Path:
    """``--bundle``, else this bundle when running from one, else the image's copy."""
    if config.bundle is not None:
        source = config.bundle
    elif frozen():
        source = own_bundle()
    else:
        source = DEFAULT_BUNDLE
    program = source / EXECUTABLE
    try:
        info = program.stat()
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o111:
        raise SupervisorError(
            f"copy: no bundle at {source}: {program} is not an executable file "
            "(set --bundle or SIDECAR_SUPERVISOR_BUNDLE to the bundle's folder)"
        )
    return source.resolve()


def _inside(relative_dir: str, target: str) -> bool:
    """Whether a relative link target stays inside the bundle."""
    if os.path.isabs(target):
        return False
    joined = os.path.normpath(os.path.join(relative_dir, target))
    return joined != ".." and not joined.startswith("../")


def scan(root: Path) -> tuple[list[Entry], str]:
    """Every entry below ``root`` in a stable order, and the hash of it all.

    The hash covers names, kinds, permission bits, link targets and file
    contents, so a bundle that differs in any of them gets another name.
    """
    entries: list[Entry] = []
    digest = hashlib.sha256()

    def walk(directory: Path, relative: str) -> None:
        for child in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = f"{relative}/{child.name}" if relative else child.name
            target = ""
            if child.is_symlink():
                target = os.readlink(child.path)
                if _inside(relative, target):
                    entry = Entry(rel, "link", 0o777, target)
                else:  # a link out of the bundle: copy what it points at
                    entry = _followed(Path(child.path), rel)
            elif child.is_dir():
                entry = Entry(rel, "dir", stat.S_IMODE(child.stat().st_mode) & 0o777)
            elif child.is_file():
                entry = Entry(rel, "file", stat.S_IMODE(child.stat().st_mode) & 0o777)
            else:
                raise SupervisorError(f"copy: {child.path} is not a file, folder or link")
            if entry.kind == "file":
                with open(child.path, "rb") as stream:
                    target = hashlib.file_digest(stream, "sha256").hexdigest()
            digest.update(f"{entry.kind} {entry.mode:o} {rel}\0{target}\n".encode())
            entries.append(entry)
            if entry.kind == "dir":
                walk(Path(child.path), rel)

    walk(root, "")
    return entries, digest.hexdigest()


def _followed(path: Path, rel: str) -> Entry:
    try:
        info = path.stat()
    except OSError as exc:
        raise SupervisorError(f"copy: {path} is a broken link: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise SupervisorError(f"copy: {path} links to a folder outside the bundle")
    return Entry(rel, "file", stat.S_IMODE(info.st_mode) & 0o777)


def version_of(root: Path) -> str | None:
    """The bundle's version from its manifest, if it has a readable one."""
    try:
        manifest = json.loads((root / CONTENTS / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    if isinstance(version, str) and version and all(c.isalnum() or c in "._+-" for c in version):
        return version
    return None


# --- publishing -------------------------------------------------------------------


def copy_bundle(config: CopyConfig) -> int:
    """Publish the bundle in ``config.dest``; print the path of its executable."""
    dest = Path(os.path.abspath(config.dest))
    if not dest.is_dir():
        missing = not dest.exists()
        raise SupervisorError(
            f"copy: {dest} {'does not exist' if missing else 'is not a directory'} "
            "(mount the shared volume there first)"
        )
    source = source_bundle(config)
    started = time.monotonic()
    try:
        entries, digest = scan(source)
    except OSError as exc:
        where = exc.filename or source
        raise SupervisorError(f"copy: cannot read the bundle at {where}: {exc.strerror}") from exc
    version = version_of(source)
    name = (
        f"{PREFIX}{version}-{digest[:HASH_CHARS]}" if version else f"{PREFIX}{digest[:HASH_CHARS]}"
    )
    command = dest / LINK / EXECUTABLE
    fields: dict[str, object] = {
        "source": str(source),
        "dest": str(dest),
        "bundle": name,
        "path": str(command),
    }

    if _published(dest, name):  # the same bundle is there already: write nothing
        log.info("bundle_present", **fields)
        print(command)
        return 0
    with _locked(dest):
        _check_link(dest)
        _remove_leftovers(dest)
        if not (dest / name).is_dir():
            size = _copy_tree(source, entries, dest, name)
            fields |= {"files": len(entries), "bytes": size}
        if not _published(dest, name):
            _publish(dest, name)
    log.info("bundle_copied", **fields, seconds=round(time.monotonic() - started, 3))
    print(command)
    return 0


def _published(dest: Path, name: str) -> bool:
    try:
        return os.readlink(dest / LINK) == name and (dest / name).is_dir()
    except OSError:
        return False


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """Hold ``DEST/.sidecar-supervisor.lock``; a second copier waits for the first.

    The kernel releases it when a copier dies, and leftovers of a dead copier
    are removed only while holding it, so no live copy is ever disturbed.
    """
    path = dest / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise SupervisorError(f"copy: cannot write to {dest}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_link(dest: Path) -> None:
    link = dest / LINK
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: there, but not a link
            raise SupervisorError(f"copy: cannot read {link}: {exc.strerror}") from exc
        target = None
    if target is None or not target.startswith(PREFIX) or "/" in target:
        raise SupervisorError(
            f"copy: {link} exists and was not made by 'copy'; remove it or choose another DEST"
        )


def _remove_leftovers(dest: Path) -> None:
    """Temporary folders and links of copiers that died (we hold the lock)."""
    for entry in os.scandir(dest):
        if not entry.name.startswith(TMP_PREFIX):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError as exc:
            raise SupervisorError(
                f"copy: cannot remove the leftover {entry.path}: {exc.strerror}"
            ) from exc


def _copy_tree(source: Path, entries: list[Entry], dest: Path, name: str) -> int:
    """Copy into a hidden temporary folder, make it durable, rename it to ``name``."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dest))
    except OSError as exc:
        raise SupervisorError(f"copy: cannot write to {dest}: {exc.strerror or exc}") from exc
    size = 0
    try:
        for entry in entries:
            target = tmp / entry.path
            if entry.kind == "dir":
                target.mkdir(mode=0o700)
            elif entry.kind == "link":
                target.symlink_to(entry.target)
            else:
                size += _copy_file(source / entry.path, target, entry.mode)
        for entry in reversed(entries):  # folders last: their modes may forbid writing
            if entry.kind == "dir":
                target = tmp / entry.path
                _fsync(target)
                target.chmod(entry.mode)
        _fsync(tmp)
        tmp.chmod(stat.S_IMODE(source.stat().st_mode) & 0o777)
        tmp.rename(dest / name)
        _fsync(dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        where = exc.filename or dest
        raise SupervisorError(f"copy: cannot copy the bundle to {where}: {exc.strerror}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return size


def _copy_file(source: Path, target: Path, mode: int) -> int:
    with open(source, "rb") as reader, open(target, "xb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        writer.flush()
        os.fchmod(writer.fileno(), mode)  # the source's bits, whatever the umask says
        os.fsync(writer.fileno())
        return writer.tell()


def _fsync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(dest: Path, name: str) -> None:
    """Point ``DEST/sidecar-supervisor`` at ``name``: a new link renamed over the old."""
    tmp_link = dest / f"{TMP_PREFIX}link-{os.getpid()}"
    try:
        tmp_link.symlink_to(name)
        tmp_link.replace(dest / LINK)
        _fsync(dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp_link.unlink()
        raise SupervisorError(
            f"copy: cannot link {dest / LINK} to {name}: {exc.strerror or exc}"
        ) from exc
