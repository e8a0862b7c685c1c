"""The self-contained bundle: ``copy DEST`` and the bundle itself in a sandbox without Python.

The first half drives ``copy`` with a fake bundle (a few files and an executable).
The second half builds the real bundle once per code version (bundle/build.py,
cached in build/test-bundle/) and runs the seed's Job with the sidecar inside an
``unshare`` + ``chroot`` sandbox that holds a shell, ``sleep``, the glibc
libraries and the copied bundle, and no Python at all; the main runs outside
with the pip-installed tool; the two share one directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from supervisor import __version__, bundle
from supervisor.config import CopyConfig, defaults
from supervisor.errors import SupervisorError
from tests.conftest import StartContainer
from tests.support import SUPERVISOR, TIMEOUT, read_json, wait_until

ROOT = Path(__file__).resolve().parent.parent
NAME = "sidecar-supervisor"
BUILD_TIMEOUT = 900.0


# --- copy, with a fake bundle ------------------------------------------------------


@pytest.fixture
def fake_bundle(tmp_path: Path) -> Path:
    """A bundle's shape: the executable, a folder of files, a relative link."""
    root = tmp_path / "fake-bundle"
    (root / "_internal" / "lib").mkdir(parents=True)
    program = root / NAME
    program.write_text('#!/bin/sh\necho fake bundle "$@"\n')
    program.chmod(0o755)
    (root / "_internal" / "bundle.json").write_text(json.dumps({"version": "9.8.7"}))
    (root / "_internal" / "lib" / "libfake.so.1").write_bytes(os.urandom(4096))
    (root / "_internal" / "lib" / "libfake.so.1").chmod(0o755)
    (root / "_internal" / "private.dat").write_text("owner only\n")
    (root / "_internal" / "private.dat").chmod(0o600)
    (root / "_internal" / "lib" / "libfake.so").symlink_to("libfake.so.1")
    return root


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


def copy(
    dest: Path | str, source: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``sidecar-supervisor copy DEST [--bundle SOURCE]`` as a process."""
    args = [*SUPERVISOR, "copy", os.fspath(dest)]
    if source is not None:
        args += ["--bundle", os.fspath(source)]
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
        env={**os.environ, "SIDECAR_SUPERVISOR_LOG_FORMAT": "json", **(env or {})},
    )


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every entry below ``root``: its mode and its content (a link's target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content = "-> " + os.readlink(path)
        elif stat.S_ISDIR(info.st_mode):
            content = "dir"
        else:
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        found[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), content)
    return found


def written(root: Path) -> dict[str, tuple[int, ...]]:
    """What a write would change (reading changes only the access time)."""
    return {
        str(p.relative_to(root)): (p.lstat().st_ino, p.lstat().st_mtime_ns, p.lstat().st_ctime_ns)
        for p in root.rglob("*")
    }


def published(dest: Path) -> list[str]:
    """The hidden entries ``copy`` made: bundle folders, the lock, leftovers."""
    return sorted(p.name for p in dest.iterdir() if p.name.startswith("."))


def test_copy_publishes_the_bundle_and_prints_the_path(fake_bundle: Path, dest: Path) -> None:
    result = copy(dest, fake_bundle)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{dest}/{NAME}/{NAME}\n"
    link = dest / NAME
    assert link.is_symlink()
    assert os.readlink(link).startswith(f"{bundle.PREFIX}9.8.7-")  # relative: any mount path
    assert tree(link.resolve()) == tree(fake_bundle)  # modes (executable bits) and links kept
    ran = subprocess.run(
        [result.stdout.strip(), "hello"], capture_output=True, text=True, check=True
    )
    assert ran.stdout == "fake bundle hello\n"
    assert published(dest) == [os.readlink(link), bundle.LOCK]
    event = json.loads(result.stderr)
    assert event["event"] == "bundle_copied"


def test_copying_again_changes_nothing(fake_bundle: Path, dest: Path) -> None:
    first = copy(dest, fake_bundle)
    before = written(dest)

    second = copy(dest, fake_bundle)

    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert written(dest) == before  # same inodes, same times: nothing was written
    assert json.loads(second.stderr)["event"] == "bundle_present"


def test_a_changed_bundle_is_published_next_to_the_old_one(fake_bundle: Path, dest: Path) -> None:
    copy(dest, fake_bundle)
    old = os.readlink(dest / NAME)
    (fake_bundle / "_internal" / "private.dat").write_text("changed\n")

    result = copy(dest, fake_bundle)

    assert result.returncode == 0, result.stderr
    new = os.readlink(dest / NAME)
    assert new != old
    assert (dest / old).is_dir()  # a running sidecar may still load from it
    assert (dest / NAME / "_internal" / "private.dat").read_text() == "changed\n"


def test_a_copy_killed_halfway_is_never_run_and_is_cleaned_up(
    fake_bundle: Path, dest: Path
) -> None:
    # What a copier SIGKILLed halfway leaves: a hidden temporary folder, a stray link.
    leftover = dest / f"{bundle.TMP_PREFIX}crashed"
    (leftover / "_internal").mkdir(parents=True)
    (leftover / NAME).write_text("#!/bin/sh\necho half a bundle\n")
    (dest / f"{bundle.TMP_PREFIX}link-99999").symlink_to(leftover.name)

    result = copy(dest, fake_bundle)

    assert result.returncode == 0, result.stderr
    assert not [p for p in dest.iterdir() if p.name.startswith(bundle.TMP_PREFIX)]
    assert tree(dest / NAME) == tree(fake_bundle)


def test_a_failed_copy_leaves_nothing_behind(
    fake_bundle: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def disk_full(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copyfileobj", disk_full)

    with pytest.raises(SupervisorError, match="No space left on device"):
        bundle.copy_bundle(CopyConfig(**{**defaults("copy"), "dest": dest, "bundle": fake_bundle}))

    assert sorted(p.name for p in dest.iterdir()) == [bundle.LOCK]  # no link, no folder


def test_concurrent_copies_agree(fake_bundle: Path, dest: Path) -> None:
    env = {**os.environ, "SIDECAR_SUPERVISOR_LOG_FORMAT": "json"}
    args = [*SUPERVISOR, "copy", str(dest), "--bundle", str(fake_bundle)]
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    results = [(p.wait(TIMEOUT), *p.communicate()) for p in procs]

    assert {(code, out) for code, out, _ in results} == {(0, f"{dest}/{NAME}/{NAME}\n")}
    assert len(published(dest)) == 2  # one bundle folder and the lock
    assert tree(dest / NAME) == tree(fake_bundle)


def test_a_second_copier_waits_for_the_first(fake_bundle: Path, dest: Path) -> None:
    """While a copier holds the lock, its temporary folder is left alone."""
    in_progress = dest / f"{bundle.TMP_PREFIX}busy"
    in_progress.mkdir()
    fd = os.open(dest / bundle.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        waiting = subprocess.Popen(
            [*SUPERVISOR, "copy", str(dest), "--bundle", str(fake_bundle)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        inode = os.fstat(fd).st_ino
        wait_until(
            lambda: any(  # a blocked flock waiter on our lock file
                "->" in line and f":{inode} " in line
                for line in Path("/proc/locks").read_text().splitlines()
            ),
            what="the second copier to wait for the lock",
        )
        assert waiting.poll() is None
        assert in_progress.is_dir()
        assert not (dest / NAME).exists()
    finally:
        os.close(fd)  # the first copier "dies": the kernel releases its lock
    assert waiting.wait(TIMEOUT) == 0
    out, _ = waiting.communicate()
    assert out == f"{dest}/{NAME}/{NAME}\n"
    assert not in_progress.exists()


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{NAME}: error: copy: ")
    for word in words:
        assert word in lines[0]


def test_missing_dest_is_one_line(fake_bundle: Path, tmp_path: Path) -> None:
    one_line_error(copy(tmp_path / "nowhere", fake_bundle), "does not exist")
    assert not (tmp_path / "nowhere").exists()


def test_dest_that_is_a_file_is_one_line(fake_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    one_line_error(copy(tmp_path / "file", fake_bundle), "is not a directory")


def test_no_bundle_is_one_line(dest: Path, tmp_path: Path) -> None:
    one_line_error(copy(dest, tmp_path / "no-bundle"), "no bundle at", "SIDECAR_SUPERVISOR_BUNDLE")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(copy(dest, env={"SIDECAR_SUPERVISOR_BUNDLE": str(empty)}), str(empty))
    assert sorted(dest.iterdir()) == []


def test_the_default_bundle_is_the_images(dest: Path) -> None:
    if (bundle.DEFAULT_BUNDLE / NAME).exists():
        pytest.skip(f"{bundle.DEFAULT_BUNDLE} exists on this machine")
    one_line_error(copy(dest), str(bundle.DEFAULT_BUNDLE))


def test_something_else_at_the_link_name_is_not_replaced(fake_bundle: Path, dest: Path) -> None:
    (dest / NAME).mkdir()
    one_line_error(copy(dest, fake_bundle), "was not made by 'copy'")
    assert (dest / NAME).is_dir()
    assert published(dest) == [bundle.LOCK]


def test_no_dest_is_a_usage_error() -> None:
    result = subprocess.run(
        [*SUPERVISOR, "copy"], capture_output=True, text=True, check=False, timeout=TIMEOUT
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "DEST" in result.stderr


@functools.cache
def can_mount() -> bool:
    """True where a test may make a private mount namespace (root, no seccomp veto)."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none "$0"', "/mnt"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def copy_read_only(dest: Path, source: Path) -> subprocess.CompletedProcess[str]:
    """``copy`` with DEST a read-only bind mount in a private mount namespace."""
    script = (
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && '
        'exec "$1" -m supervisor copy "$0" --bundle "$2"'
    )
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, str(dest), sys.executable, str(source)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
        env={**os.environ, "SIDECAR_SUPERVISOR_LOG_FORMAT": "json"},
    )


@pytest.mark.skipif(not can_mount(), reason="needs unshare --mount (root) for a read-only mount")
def test_read_only_dest_is_one_line(fake_bundle: Path, dest: Path) -> None:
    one_line_error(copy_read_only(dest, fake_bundle), "Read-only file system")
    assert sorted(dest.iterdir()) == []


@pytest.mark.skipif(not can_mount(), reason="needs unshare --mount (root) for a read-only mount")
def test_read_only_dest_that_has_the_bundle_already_is_fine(fake_bundle: Path, dest: Path) -> None:
    first = copy(dest, fake_bundle)
    again = copy_read_only(dest, fake_bundle)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def _entry() -> ModuleType:
    """bundle/entry.py, the frozen program's script, loaded as a module (it runs nothing)."""
    spec = importlib.util.spec_from_file_location("bundle_entry", ROOT / "bundle" / "entry.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_restore_environment_removes_what_the_bundle_added(tmp_path: Path) -> None:
    restore_environment = _entry().restore_environment
    contents = tmp_path / "_internal"
    contents.mkdir()
    environ = {
        "LD_LIBRARY_PATH": f"{contents}:{contents}/:/opt/lib",
        "LD_LIBRARY_PATH_ORIG": f"{contents}:/opt/lib",
        "_PYI_ARCHIVE_FILE": "x",
        "_PYI_PARENT_PROCESS_LEVEL": "1",
        "PATH": "/bin",
    }
    restore_environment(environ, [str(contents)])
    assert environ == {"LD_LIBRARY_PATH": "/opt/lib", "PATH": "/bin"}

    environ = {"LD_LIBRARY_PATH": str(contents), "HOME": "/root"}
    restore_environment(environ, [str(contents)])
    assert environ == {"HOME": "/root"}


def test_own_bundle_is_the_folder_above_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "b" / "_internal" / NAME))
    assert bundle.own_bundle() == tmp_path / "b"
    monkeypatch.setattr(sys, "executable", str(tmp_path / "plain" / NAME))
    assert bundle.own_bundle() == tmp_path / "plain"


# --- the real bundle, in a sandbox without Python -------------------------------------


def _build_key() -> str:
    """Changes whenever what goes into the bundle does."""
    digest = hashlib.sha256(f"{sys.executable}\n{sys.version}\n".encode())
    makers = ("build.py", "entry.py", "launcher.c")
    sources = [*sorted((ROOT / "supervisor").glob("*.py")), *(ROOT / "bundle" / m for m in makers)]
    for path in sources:
        if path.is_file():
            digest.update(f"{path.name}\n".encode() + path.read_bytes())
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        digest.update(importlib.metadata.version("pyinstaller").encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def built_bundle() -> Path:
    """The real bundle, built once per version of the code (build/test-bundle/KEY/)."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) to build the bundle's static launcher")
    cache = ROOT / "build" / "test-bundle"
    final = cache / _build_key()
    if (final / NAME / NAME).is_file():
        return final / NAME
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [sys.executable, str(ROOT / "bundle" / "build.py"), "--out", str(staging / NAME)],
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        staging.rename(final)
    except OSError:  # another session built it at the same time
        shutil.rmtree(staging, ignore_errors=True)
    for old in cache.iterdir():  # earlier versions of the code, not used for an hour
        if old != final and time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    return final / NAME


def _libraries(files: list[Path], bundled: Path) -> set[Path]:
    """The system libraries (glibc) that ``ldd`` says the files need."""
    env = {**os.environ, "LD_LIBRARY_PATH": str(bundled)}
    needed = set()
    for path in files:
        result = subprocess.run(
            ["ldd", str(path)], capture_output=True, text=True, check=False, env=env
        )
        for line in result.stdout.splitlines():
            if "not found" in line:
                raise AssertionError(f"ldd {path}: {line.strip()}")
            for word in line.split():
                if word.startswith("/") and not word.startswith(str(bundled)):
                    needed.add(Path(word))
    return needed


def _elf_files(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as stream:
                if stream.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def _install(root: Path, path: Path) -> None:
    """Copy a host file into the sandbox at the same path (links resolved)."""
    target = root / path.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path.resolve(), target)


@pytest.fixture
def sandbox_root(tmp_path: Path, built_bundle: Path) -> Path:
    """A root file system with a shell, sleep and glibc: no Python, no bundle yet."""
    root = tmp_path / "root"
    for folder in ("bin", "proc", "shared", "tools", "tmp"):
        (root / folder).mkdir(parents=True)
    tools = [Path(shutil.which(t) or t).resolve() for t in ("sh", "sleep")]
    for tool in tools:
        target = root / "bin" / tool.name
        shutil.copy2(tool, target)
        if tool.name == "dash":
            (root / "bin" / "sh").symlink_to("dash")
    contents = built_bundle / "_internal"
    for library in _libraries([*tools, *_elf_files(contents)], contents):
        _install(root, library)
    return root


def _chroot(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("chroot") or "chroot", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
        env={"PATH": "/bin"},
    )


def _needs_root_sandbox() -> None:
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        pytest.skip("needs root and chroot for the sandbox")
    if not can_mount():
        pytest.skip("needs unshare --mount (root) for the sandbox")


SIDECAR_LOOP = (
    "export -p > /shared/sidecar.env; "
    'echo "sidecar starting"; while true; do echo "collecting logs"; sleep 0.2; done'
)
MAIN_TASKS = (
    'echo "main container is starting..."; '
    'for i in 1 2 3 4 5; do echo "main task $i/5"; sleep 0.1; done; '
    'echo "main container completed tasks"'
)
# The sidecar container: its own PID namespace (the supervisor is PID 1) and mount
# namespace; a read-only root holding no Python; the bundle's volume mounted
# read-only at /tools and the shared emptyDir read-write at /shared.
SANDBOX = """
set -e
root=$1; shift
mount --bind "$root" "$root"
mount --bind "$SANDBOX_SHARED" "$root/shared"
mount --bind "$SANDBOX_TOOLS" "$root/tools"
mount -o remount,bind,ro "$root/tools"
mount -t proc proc "$root/proc"
mount -o remount,bind,ro "$root"
chroot=$(command -v chroot)
unset SANDBOX_SHARED SANDBOX_TOOLS
export PATH=/bin
exec "$chroot" "$root" "$@"
"""


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT + 120)
def test_the_seed_job_with_the_sidecar_in_a_sandbox_without_python(
    tmp_path: Path,
    shared: Path,
    start: StartContainer,
    sandbox_root: Path,
    built_bundle: Path,
) -> None:
    _needs_root_sandbox()
    root = sandbox_root
    # The init container: the bundle's own `copy` puts it on the tools volume.
    tools = tmp_path / "tools"
    tools.mkdir()
    copied = subprocess.run(
        [str(built_bundle / NAME), "copy", str(tools)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout == f"{tools}/{NAME}/{NAME}\n"
    command = f"/tools/{NAME}/{NAME}"  # the same path inside the sidecar's mount

    # No Python in there, and no tool could find one.
    found = _chroot(root, "/bin/sh", "-c", "command -v python3 || command -v python || echo none")
    assert found.stdout == "none\n", found.stdout
    assert not list(root.rglob("python*"))
    # Without /proc the launcher and the bootloader find themselves from argv[0].
    shutil.copytree(tools, root / "tools", symlinks=True, dirs_exist_ok=True)
    version = _chroot(root, command, "--version")
    assert (version.returncode, version.stdout) == (0, f"{NAME} {__version__}\n"), version.stderr
    shutil.rmtree(root / "tools")
    (root / "tools").mkdir()

    out_path, err_path = tmp_path / "sidecar.out", tmp_path / "sidecar.err"
    env = {
        "PATH": os.environ["PATH"],  # to find unshare, mount and chroot; /bin inside
        "SIDECAR_SUPERVISOR_LOG_FORMAT": "json",
        "SANDBOX_SHARED": str(shared),
        "SANDBOX_TOOLS": str(tools),
    }
    argv = [command, "sidecar", "--dir", "/shared", "--", "sh", "-c", SIDECAR_LOOP]
    prefix = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", SANDBOX, "sh"]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        side = subprocess.Popen(
            [*prefix, str(root), *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: "sidecar starting" in out_path.read_text() or side.poll() is not None,
            what="the sidecar's child in the sandbox",
        )
        assert side.poll() is None, err_path.read_text()

        primary = start("main", "--dir", shared, "--", "sh", "-c", MAIN_TASKS)
        assert primary.wait() == 0
        assert side.wait(TIMEOUT) == 0, err_path.read_text()
    finally:
        if side.poll() is None:
            os.killpg(side.pid, signal.SIGKILL)
            side.wait(TIMEOUT)

    assert read_json(shared / "main.done")["exit_code"] == 0
    assert read_json(shared / "sidecar.started")["pid"] == 1  # PID 1 of its namespace
    done = read_json(shared / "sidecar.done")
    assert (done["exit_code"], done["reason"]) == (0, "Stopped")
    events = [json.loads(line) for line in err_path.read_text().splitlines() if line[:1] == "{"]
    names = [event["event"] for event in events]
    assert "child_started" in names
    detected = next(e for e in events if e["event"] == "completion_detected")
    assert (detected["target"], detected["exit_code"]) == ("main", 0)
    assert "stop_requested" in names
    stopped = [e for e in events if e["event"] == "child_exited"]
    assert stopped[-1]["before_completion"] is False
    assert "collecting logs" in out_path.read_text()
    # COMMAND got the container's environment, not the bundle's library path.
    child_env = (shared / "sidecar.env").read_text()
    assert "LD_LIBRARY_PATH" not in child_env
    assert "_PYI_" not in child_env
    assert "SIDECAR_SUPERVISOR_LOG_FORMAT" in child_env
    assert "SANDBOX_" not in child_env


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT + 60)
def test_the_bundle_says_why_it_cannot_start_without_glibc(
    tmp_path: Path, built_bundle: Path
) -> None:
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        pytest.skip("needs root and chroot")
    root = tmp_path / "no-glibc"
    root.mkdir()
    assert copy(root, built_bundle).returncode == 0
    assert not (root / "lib64").exists()

    result = _chroot(root, f"/{NAME}/{NAME}", "sidecar", "--", "/bin/true")

    assert result.returncode == 127
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "no glibc" in lines[0]
    assert "/lib64/ld-linux-x86-64.so.2" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT + 60)
def test_the_bundle_says_why_it_cannot_start_on_too_old_a_glibc(
    tmp_path: Path, built_bundle: Path
) -> None:
    """An older glibc, simulated: libpython asks for a symbol version no glibc has."""
    old = tmp_path / "bundle"
    shutil.copytree(built_bundle, old, symlinks=True)
    libpython = next((old / "_internal").glob("libpython3*.so.1.0"))
    data = libpython.read_bytes()
    newest = max(set(re.findall(rb"GLIBC_2\.\d+\0", data)), key=lambda v: int(v[8:-1]))
    never = b"GLIBC_9." + b"9" * (len(newest) - 9) + b"\0"  # same length: GLIBC_9.99
    libpython.write_bytes(data.replace(newest, never))

    result = subprocess.run(
        [str(old / NAME), "--version"], capture_output=True, text=True, check=False, timeout=TIMEOUT
    )

    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "GLIBC_9.9" in lines[0]
    assert "not found" in lines[0]
    assert "Traceback" not in result.stderr
