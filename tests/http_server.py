"""A loopback HTTP server for the tests: it records every request and answers as told.

It stands in for an endpoint the supervisor calls (a proxy's readiness or quit
URL). It listens on 127.0.0.1 and an ephemeral port, in threads of the test
process. Every path answers 200 unless ``status`` says otherwise; a path in
``hang`` gets no answer until the server closes. ``on_request(method, path)``
runs the moment a request arrives, and whatever it returns is kept with the
request (to record, for example, whether a marker already existed then).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tests.support import TIMEOUT


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    seen: Any  # what ``on_request`` returned as the request arrived


class RecordingServer:
    """A threaded HTTP server on 127.0.0.1; use it as a context manager."""

    def __init__(self, on_request: Callable[[str, str], Any] | None = None, port: int = 0) -> None:
        self.requests: list[Request] = []
        self.status: dict[str, int] = {}
        self.hang: set[str] = set()
        self.on_request = on_request
        self._changed = threading.Condition()
        self._closing = threading.Event()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Requests are recorded, not printed."""

            def _serve(self) -> None:
                recorder._record(self.command, self.path)
                if self.path in recorder.hang:
                    recorder._closing.wait()
                    return
                self.send_response(recorder.status.get(self.path, 200))
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = _serve  # noqa: N815 - http.server's naming
            do_POST = _serve  # noqa: N815

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _record(self, method: str, path: str) -> None:
        seen = self.on_request(method, path) if self.on_request is not None else None
        with self._changed:
            self.requests.append(Request(method, path, seen))
            self._changed.notify_all()

    def received(self, method: str, path: str) -> list[Request]:
        with self._changed:
            return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def wait_for(self, method: str, path: str, timeout: float = TIMEOUT) -> Request:
        """Block until a ``method path`` request has arrived; fail after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.received(method, path), timeout):
                raise AssertionError(f"no {method} {path} within {timeout} s: {self.requests}")
        return self.received(method, path)[0]

    def close(self) -> None:
        self._closing.set()  # release the hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(TIMEOUT)

    def __enter__(self) -> RecordingServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
