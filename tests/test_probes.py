"""HTTP and TCP probes against real loopback sockets: what is sent, what is read.

Each test serves one connection from a thread with a script of its own (what to
answer, or nothing) and records the request's bytes as they arrived.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.probes import Probe, check, http_request

SAFETY = 30.0  # a safety net for a loaded machine, never a measurement
Answer = Callable[[socket.socket, bytes], None]


class OneShot:
    """A listener on ``host`` that takes one connection, reads the request's head
    and hands the connection to ``answer``; ``request`` is what it read."""

    def __init__(
        self, answer: Answer, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.tls = tls
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(1)
        self.listener.settimeout(SAFETY)
        self.port: int = self.listener.getsockname()[1]
        self.request = b""
        self.closing = threading.Event()
        self._answer = answer
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed, or the client went away
            conn, _ = self.listener.accept()
            if self.tls is not None:
                conn.settimeout(SAFETY)
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                conn.settimeout(SAFETY)
                while b"\r\n\r\n" not in self.request:
                    data = conn.recv(4096)
                    if not data:
                        break
                    self.request += data
                self._answer(conn, self.request)

    def close(self) -> None:
        self.closing.set()
        self._thread.join(SAFETY)
        self.listener.close()

    def lines(self) -> list[str]:
        return self.request.decode().split("\r\n")


def says(raw: bytes) -> Answer:
    def answer(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(raw)

    return answer


@pytest.fixture
def serve() -> Iterator[Callable[..., OneShot]]:
    made: list[OneShot] = []

    def factory(
        answer: Answer, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> OneShot:
        server = OneShot(answer, host, tls)
        made.append(server)
        return server

    yield factory
    for server in made:
        server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_a_get_sends_path_query_host_with_port_and_connection_close(
    serve: Callable[..., OneShot],
) -> None:
    server = serve(says(OK))
    status = http_request("GET", f"http://127.0.0.1:{server.port}/healthz?full=1&x=%20y#top", 5)
    server.close()
    assert status == 200
    lines = server.lines()
    assert lines[0] == "GET /healthz?full=1&x=%20y HTTP/1.1"  # the fragment stays ours
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "Connection: close" in lines
    assert "User-Agent: sidecar-supervisor" in lines
    assert not any(line.lower().startswith("content-length") for line in lines)


def test_a_post_has_an_empty_body_and_a_url_without_a_path_asks_for_the_root(
    serve: Callable[..., OneShot],
) -> None:
    server = serve(says(OK))
    assert http_request("POST", f"http://localhost:{server.port}", 5) == 200
    server.close()
    lines = server.lines()
    assert lines[0] == "POST / HTTP/1.1"
    assert f"Host: localhost:{server.port}" in lines
    assert "Content-Length: 0" in lines


def test_an_ipv6_literal_is_reached_and_bracketed_in_host(serve: Callable[..., OneShot]) -> None:
    try:
        server = serve(says(OK), host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert http_request("GET", f"http://[::1]:{server.port}/ready", 5) == 200
    server.close()
    assert f"Host: [::1]:{server.port}" in server.lines()


def test_a_redirect_is_not_followed(serve: Callable[..., OneShot]) -> None:
    server = serve(says(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n"))
    passed, detail = check(Probe("http", f"http://127.0.0.1:{server.port}/ready"), 5)
    assert (passed, detail) == (False, "HTTP 302")


def test_the_status_line_is_enough_and_a_100_continue_is_passed_over(
    serve: Callable[..., OneShot],
) -> None:
    """The body never comes and the connection stays open: the status decides."""

    def answer(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 100 Continue\r\nX: y\r\n\r\nHTTP/1.0 204 No Content\r\n")
        server.closing.wait(SAFETY)

    server = serve(answer)
    passed, detail = check(Probe("http", f"http://127.0.0.1:{server.port}/"), SAFETY)
    assert (passed, detail) == (True, "HTTP 204")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "the connection closed without one"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "'SSH-2.0-OpenSSH_9.2'"),
        (b"HTTP/1.1 2000 Too Big\r\n\r\n", "'HTTP/1.1 2000 Too Big'"),
    ],
)
def test_anything_but_an_http_answer_fails_the_probe(
    serve: Callable[..., OneShot], raw: bytes, expected: str
) -> None:
    server = serve(says(raw))
    passed, detail = check(Probe("http", f"http://127.0.0.1:{server.port}/"), 5)
    assert not passed
    assert detail == f"bad HTTP answer: {expected}"


def test_no_answer_within_the_timeout_fails_the_probe(serve: Callable[..., OneShot]) -> None:
    def answer(_conn: socket.socket, _request: bytes) -> None:
        server.closing.wait(SAFETY)

    server = serve(answer)
    passed, detail = check(Probe("http", f"http://127.0.0.1:{server.port}/"), 0.2)
    assert (passed, detail) == (False, "timed out")


def test_a_url_with_a_space_is_refused_before_anything_is_sent() -> None:
    passed, detail = check(Probe("http", "http://127.0.0.1:9/a b"), 5)
    assert not passed
    assert "spaces" in detail


def test_tcp_probe_connects_and_reports_a_refusal(serve: Callable[..., OneShot]) -> None:
    server = serve(says(b""))
    assert check(Probe("tcp", f"127.0.0.1:{server.port}"), 5) == (True, "connected")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: refused
        passed, detail = check(Probe("tcp", f"127.0.0.1:{port}"), 5)
    assert not passed
    assert "refused" in detail.lower()


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "self-signed"])
def test_https_checks_the_certificate(
    serve: Callable[..., OneShot], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: bool
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost",
        ],
        check=True, capture_output=True, timeout=SAFETY,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server = serve(says(OK), tls=context)
    passed, detail = check(Probe("http", f"https://localhost:{server.port}/ready"), SAFETY)
    if trusted:
        assert (passed, detail) == (True, "HTTP 200")
        assert server.lines()[0] == "GET /ready HTTP/1.1"
        assert f"Host: localhost:{server.port}" in server.lines()
    else:
        assert not passed
        assert "CERTIFICATE_VERIFY_FAILED" in detail
