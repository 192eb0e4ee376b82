"""Helpers for the live-round fault tests: polling, process trees, a TCP relay that cuts, a fake coordinator.

Nothing here imports TensorFlow; the relay and the fake coordinator run on threads in the test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
import psutil

from common import messages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """Polls ``condition`` until it is truthy and returns it; after ``timeout`` s, AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    assert value, f"waited {timeout:g} s for {what}"
    return value


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def workers_of(pid: int) -> set[int]:
    """The ``worker_binary`` processes among ``pid``'s descendants."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for child in children:
        try:
            if child.name() == "worker_binary":
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def descendants(pid: int, marker: str) -> list[psutil.Process]:
    """``pid``'s descendants whose command line contains ``marker``."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if marker in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


class HoldingCoordinator:
    """A stand-in coordinator that holds every check-in open (as one does while a round selects)
    until ``release`` is set; it counts the check-ins it is holding."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.held = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {"CheckIn": grpc.unary_unary_rpc_method_handler(self._check_in),
                    "Version": grpc.unary_unary_rpc_method_handler(self._version)}
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(messages.SERVICE, handlers)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _check_in(self, request: bytes, context) -> bytes:
        with self._lock:
            self.held += 1
        self.release.wait(300)
        with self._lock:
            self.held -= 1
        return messages.pack({"kind": "retry", "after": 1.0, "reason": "released"})

    def _version(self, request: bytes, context) -> bytes:  # an agent pulls at start: nothing is published here
        return messages.pack({"latest": None, "version": None})

    def close(self) -> None:
        self.release.set()
        self.server.stop(grace=0)


class CuttingRelay:
    """A TCP relay on 127.0.0.1 to ``target_port`` that closes one connection both ways once
    ``cut_after`` bytes have gone upstream on it (the first connection to get that far only).

    Check-ins, pings and tokenizer requests are a few hundred bytes each, so on a device's
    connection ``cut_after`` bytes of kilobytes are reached only part-way through an upload.
    """

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port, self.cut_after = target_port, cut_after
        self.cuts = 0  # connections cut (at most 1)
        self.cut_at: int | None = None  # upstream bytes forwarded on the cut connection
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            state = {"sent": 0}
            threading.Thread(target=self._pump, args=(client, upstream, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, counting: bool) -> None:
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                if counting:
                    with self._lock:
                        room = self.cut_after - state["sent"]
                        if self.cuts == 0 and len(data) >= room:
                            dst.sendall(data[:room])
                            self.cuts, self.cut_at = 1, state["sent"] + room
                            break
                        state["sent"] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):  # one side ended or was cut: end the connection both ways
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
