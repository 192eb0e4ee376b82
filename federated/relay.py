"""Byte relay run inside the TFF worker's private network namespace (stdlib only, run by path).

    python -I -S relay.py LISTEN_FD PORT

Accepts connections on the inherited listening socket ``LISTEN_FD`` (a Unix socket in an
owner-only directory, or the TCP address ``fedkb worker --listen`` asked for, both created by
the parent outside the namespace) and forwards each to ``127.0.0.1:PORT`` in the namespace,
where ``worker_binary`` serves. Started by ``federated.isolation``; it ends on SIGTERM, SIGINT,
or (``PR_SET_PDEATHSIG``) when its parent dies.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

CHUNK = 1 << 20  # a round ships megabytes per client: large reads keep the relay's cost small
CONNECT_TIMEOUT = 30.0  # the worker may still be starting when the first connection arrives


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _connect(port: int) -> socket.socket:
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        try:
            upstream = socket.create_connection(("127.0.0.1", port))
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return upstream
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _bridge(client: socket.socket, port: int) -> None:
    try:
        upstream = _connect(port)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main(argv: list[str]) -> None:
    listener = socket.socket(fileno=int(argv[0]))
    port = int(argv[1])
    while True:
        client, _ = listener.accept()
        if client.family != socket.AF_UNIX:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_bridge, args=(client, port), daemon=True).start()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        pass
