"""Readiness probes and HTTP calls: is the sidecar ready, is the proxy up, please quit.

A probe is checked in a helper thread, never in the loop: each attempt has its
own timeout, attempts repeat every interval, and the thread only posts
``ProbeReady(label, generation)`` on the loop's queue when every probe of its set has passed.
The loop decides what a probe that never passes means (``--ready-timeout``);
nothing here can hang a role.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from supervisor import log
from supervisor.errors import CommandError
from supervisor.events import LivenessFailed, ProbeReady
from supervisor.signals import start_thread

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator

    from supervisor.loop import Loop
    from supervisor.process import Processes

MAX_LINE = 64 * 1024  # of the status line, as http.client allows


class Probe(NamedTuple):
    kind: str  # "http", "tcp", "command", "file" or "ready" (a peer's NAME.ready)
    target: str

    def __str__(self) -> str:
        return f"{self.kind} {self.target}"


def probe_set(
    *,
    file: Path | None = None,
    tcp: str | None = None,
    http: str | None = None,
    command: tuple[str, ...] = (),
) -> tuple[Probe, ...]:
    """The probes a role's flags ask for, in the order they are checked."""
    import shlex  # noqa: PLC0415 - command probes only

    probes = [Probe("file", str(file))] if file is not None else []
    probes += [Probe("tcp", tcp)] if tcp is not None else []
    probes += [Probe("http", http)] if http is not None else []
    probes += [Probe("command", shlex.join(command))] if command else []
    return tuple(probes)


def http_request(method: str, url: str, timeout: float) -> int:
    """Send one request; return the status code. Raises OSError on failure.

    HTTP/1.1 over a plain socket (TLS for https://, the certificate checked):
    ``Host``, ``User-Agent``, ``Connection: close``, ``Content-Length: 0`` for a
    POST; only the answer's status line is read (a ``100 Continue`` is passed
    over). A redirect is not followed: its 3xx is the answer. ``timeout`` bounds
    the whole call. No ``http.client`` (it loads the email package): this
    runs in every probe and quit call, and its memory stays for the process's
    life.
    """
    from urllib.parse import urlsplit  # noqa: PLC0415 - only probes and quit calls need it

    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(c <= " " or c == "\x7f" for c in host + target):
        raise OSError(f"URL can't contain control characters or spaces: {url!r}")
    name = f"[{host}]" if ":" in host else host
    authority = name if port == (443 if https else 80) else f"{name}:{port}"
    try:
        request = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (
            method.encode("ascii"),
            target.encode("ascii"),
            authority.encode("ascii" if authority.isascii() else "idna"),
        )
    except UnicodeError as exc:
        raise OSError(f"URL can't contain characters that are not ASCII: {url!r}") from exc
    request += b"User-Agent: sidecar-supervisor\r\nAccept-Encoding: identity\r\n"
    if method == "POST":
        request += b"Content-Length: 0\r\n"
    request += b"Connection: close\r\n\r\n"
    deadline = time.monotonic() + timeout
    sock = connect(host, port, timeout)
    try:
        if https:
            sock = _tls(sock, host, deadline)
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(request)
        return _status(sock, deadline)
    finally:
        sock.close()


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first address of ``host`` that answers, each
    given ``timeout`` (``socket.create_connection``, with an ASCII name passed
    as bytes: as text it goes through the idna codec, which loads
    ``unicodedata`` for the rest of the process's life)."""
    import socket  # noqa: PLC0415 - only probes and calls need it

    name = host.encode("ascii") if host.isascii() else host
    error: OSError = OSError(f"no address for {host!r}")
    for family, kind, proto, _, address in socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


def _tls(sock: socket.socket, host: str, deadline: float) -> socket.socket:
    import ssl  # noqa: PLC0415 - https:// only

    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    return context.wrap_socket(sock, server_hostname=host)


def _status(sock: socket.socket, deadline: float) -> int:
    """The status of the answer on ``sock``; OSError for anything but an HTTP answer."""
    lines = _lines(sock, deadline)
    for line in lines:
        fields = line.split(None, 2)
        if (
            len(fields) < 2
            or not fields[0].startswith(b"HTTP/")
            or not fields[1].isdigit()
            or not 100 <= int(fields[1]) <= 999
        ):
            raise OSError(f"bad HTTP answer: {line.strip()[:80].decode('latin-1')!r}")
        status = int(fields[1])
        if status != 100:
            return status
        for header in lines:  # 100 Continue: its headers, then the answer
            if not header.strip():
                break
    raise OSError("bad HTTP answer: the connection closed without one")


def _lines(sock: socket.socket, deadline: float) -> Iterator[bytes]:
    """The lines ``sock`` receives before ``deadline`` (TimeoutError after it)."""
    buffer = b""
    while True:
        line, found, rest = buffer.partition(b"\n")
        if found:
            buffer = rest
            yield line
            continue
        if len(buffer) > MAX_LINE:
            raise OSError("bad HTTP answer: a line over 64 KiB")
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        data = sock.recv(4096)
        if not data:
            if buffer:
                yield buffer
            return
        buffer += data


def split_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``; ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def check(probe: Probe, timeout: float, procs: Processes | None = None) -> tuple[bool, str]:
    """One attempt: (passed, what happened)."""
    try:
        if probe.kind == "http":
            status = http_request("GET", probe.target, timeout)
            return 200 <= status < 300, f"HTTP {status}"
        if probe.kind == "tcp":
            host, port = split_host_port(probe.target)
            with connect(host, port, timeout):
                return True, "connected"
        if probe.kind == "ready":
            from supervisor.markers import ready_state  # noqa: PLC0415

            return ready_state(Path(probe.target))
        if probe.kind == "file":
            return os.path.lexists(probe.target), "exists" if os.path.lexists(
                probe.target
            ) else "absent"
        if probe.kind == "command":
            assert procs is not None, "command probes need the loop to reap them"
            return _run_command(procs, probe.target, timeout)
    except (OSError, ValueError) as exc:
        return False, str(exc) or type(exc).__name__
    raise ValueError(f"unknown probe kind {probe.kind!r}")


def _run_command(procs: Processes, command: str, timeout: float) -> tuple[bool, str]:
    import shlex  # noqa: PLC0415

    try:
        child = procs.spawn(shlex.split(command))
    except CommandError as exc:
        return False, str(exc)
    if not child.exited.wait(timeout):
        child.signal_group(9)
        child.exited.wait(timeout)
        return False, f"timed out after {timeout} s"
    return child.code == 0, f"exit status {child.code}"


def start_prober(
    procs: Processes,
    probes: tuple[Probe, ...],
    *,
    label: str,
    interval: float,
    timeout: float,
    generation: int = 0,
    nudge: threading.Event | None = None,
) -> threading.Event:
    """Check ``probes`` in order until each passes, then post ``ProbeReady``.

    Returns an event that stops the thread when set; a failure of the thread
    reaches the loop as ``ThreadFailed("probe-LABEL", ...)``. Setting ``nudge``
    makes the next check come at once instead of after ``interval`` (a file
    event on a ``.ready``); whoever sets the returned event sets ``nudge`` too.
    """
    loop: Loop = procs.loop
    stop = threading.Event()

    def run() -> None:
        for probe in probes:
            announced = False
            while not stop.is_set():
                passed, detail = check(probe, timeout, procs)
                if passed:
                    log.debug("probe_passed", probe=str(probe), detail=detail)
                    break
                if not announced:
                    log.info("waiting_for_probe", probe=str(probe), last=detail)
                    announced = True
                if nudge is None:
                    stop.wait(interval)
                else:
                    nudge.wait(interval)
                    nudge.clear()
        if not stop.is_set():
            loop.post(ProbeReady(label, generation))

    start_thread(run, name=f"probe-{label}", report=loop.post)
    return stop


# What a refused call to a known endpoint usually means, and what to change.
REFUSALS = {
    ("http://127.0.0.1:4191/shutdown", 404): "linkerd's shutdown endpoint is disabled: "
    "annotate the pod template with config.linkerd.io/proxy-admin-shutdown: enabled",
}


def start_liveness(
    procs: Processes,
    probes: tuple[Probe, ...],
    *,
    interval: float,
    timeout: float,
    failures: int,
    generation: int,
) -> threading.Event:
    """Check ``probes`` every ``interval`` seconds, on a fixed grid from now.

    When one of them has failed ``failures`` checks in a row, post
    ``LivenessFailed(generation, ...)`` once and end; a pass resets its count.
    Returns an event that stops the thread when set; a failure of the thread
    reaches the loop as ``ThreadFailed("live-GENERATION", ...)``.
    """
    loop: Loop = procs.loop
    stop = threading.Event()

    def run() -> None:
        failed = dict.fromkeys(probes, 0)
        due = time.monotonic()
        while True:
            due += interval
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            for probe in probes:
                passed, detail = check(probe, timeout, procs)
                if stop.is_set():
                    return  # a late answer: the child it was for is gone
                if passed:
                    failed[probe] = 0
                    continue
                failed[probe] += 1
                log.info(
                    "liveness_check_failed",
                    probe=str(probe),
                    last=detail,
                    failures=failed[probe],
                    threshold=failures,
                )
                if failed[probe] >= failures:
                    loop.post(LivenessFailed(generation, str(probe), detail, failed[probe]))
                    return
            now = time.monotonic()
            if due + interval <= now:  # the checks took more than a period: keep the grid
                due += interval * ((now - due) // interval)

    start_thread(run, name=f"live-{generation}", report=loop.post)
    return stop


def post_all(urls: tuple[str, ...], timeout: float, event: str) -> list[threading.Thread]:
    """POST every URL, each in its own thread with its own timeout; log each answer.

    An answer that is not 2xx is a warning: the stop or quit it asked for did not
    happen, and the Job may wait for it."""

    def post(url: str) -> None:
        started = time.monotonic()
        try:
            status = http_request("POST", url, timeout)
        except OSError as exc:
            log.warning(event, url=url, error=str(exc) or type(exc).__name__)
            return
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        if 200 <= status < 300:
            log.info(event, url=url, status=status, elapsed_ms=elapsed_ms)
            return
        log.warning(
            event,
            url=url,
            status=status,
            elapsed_ms=elapsed_ms,
            hint=REFUSALS.get((url, status), "the endpoint refused: nothing was stopped by it"),
        )

    return [start_thread(lambda url=url: post(url), name=f"post-{url}") for url in urls]  # type: ignore[misc]


def join_all(threads: list[threading.Thread], timeout: float) -> None:
    """Wait for the POSTs, each at most ``timeout``; a hanging one is abandoned."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("http_call_abandoned", thread=thread.name, timeout=timeout)
