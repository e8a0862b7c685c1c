"""A local HTTP server that answers 200 to everything: a sidecar's child that is ready.

Usage: http_ok.py

Listens on 127.0.0.1 on a free port, prints ``listening PORT``, and answers
every GET, HEAD and POST with 200 and an empty body, without logging.
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Ok(BaseHTTPRequestHandler):
    def _ok(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = _ok  # noqa: N815 - the names http.server looks up

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    os.write(1, f"listening {server.server_address[1]}\n".encode())
    server.serve_forever()


if __name__ == "__main__":
    main()
