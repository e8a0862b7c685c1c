"""A stand-in for a proxy's admin server (Envoy, istio-agent, linkerd, cloud-sql-proxy).

Usage: fake_proxy.py [--ready-after N] [--port P]

Serves HTTP on 127.0.0.1 (an ephemeral port unless --port) and prints
``listening on PORT``. ``GET /ready`` answers 503 for the first N requests,
then 200. ``POST /quitquitquit`` (or ``/shutdown``) answers 200 and makes the
process exit 0, as Envoy's does. ``/hang`` never answers. Each request is
printed as ``METHOD PATH``. SIGTERM ends it with status 143.
"""

from __future__ import annotations

import argparse
import http.server
import os
import sys
import threading
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready-after", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    ready_requests = 0

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *values: object) -> None:
            print(f"{self.command} {self.path}", flush=True)

        def answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            nonlocal ready_requests
            if self.path == "/hang":
                time.sleep(3600)
            if self.path == "/ready":
                ready_requests += 1
                self.answer(200 if ready_requests > args.ready_after else 503)
                return
            self.answer(404)

        def do_POST(self) -> None:
            if self.path == "/hang":
                time.sleep(3600)
            if self.path in ("/quitquitquit", "/shutdown"):
                self.answer(200)
                self.wfile.flush()
                threading.Timer(0.05, lambda: os._exit(0)).start()
                return
            self.answer(404)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
