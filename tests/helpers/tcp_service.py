"""A service that listens on a TCP port, as a proxy or database does.

Usage: tcp_service.py --port P [--close-after N]

Listens on 127.0.0.1:P (address reuse on, so a restarted service can take the
same port) and prints ``listening on P``, then ``accepted`` for every
connection. ``--close-after N`` closes the listener after N connections and
prints ``listener closed``: the process lives on but refuses connections, a
service that has hung. SIGTERM ends it (the default action).
"""

from __future__ import annotations

import argparse
import signal
import socket


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--close-after", type=int, default=None)
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen()
    print(f"listening on {args.port}", flush=True)
    accepted = 0
    while args.close_after is None or accepted < args.close_after:
        connection, _ = listener.accept()
        connection.close()
        accepted += 1
        print("accepted", flush=True)
    listener.close()
    print("listener closed", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    raise SystemExit(main())
