"""Issue 12, item 7: no TFF executor service is reachable from the network unless asked for.

What the host's network namespace shows (``/proc/self/net/tcp`` and ``tcp6``) for the sockets
held by ``worker_binary`` and its relay. Starting a worker does not import TensorFlow, so the
tests without a TFF computation are fast.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest

from federated import isolation
from federated.runtime import RuntimeStartError, Worker, _free_port, wait_until_serving
from tests.conftest import REPO

_LISTEN = "0A"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    return inodes


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc prints the address as host-order 32-bit words
    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(packed)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip), int(port, 16)


def host_listeners(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state in the host namespace held by ``pids``."""
    inodes = set().union(*(_socket_inodes(p) for p in pids))
    found = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == _LISTEN and fields[9] in inodes:
                    found.append(_address(fields[1]))
    return found


def _pids(worker: Worker) -> list[int]:
    return [worker.process.pid] + ([worker.relay.pid] if worker.relay else [])


needs_namespace = pytest.mark.skipif(isolation.unavailable_reason() is not None,
                                     reason=f"no private network namespace: {isolation.unavailable_reason()}")


@needs_namespace
def test_the_local_worker_listens_on_no_host_interface_and_only_its_owner_reaches_it():
    worker = Worker()
    try:
        wait_until_serving(worker, timeout=60)
        assert worker.target.startswith("unix:")
        assert host_listeners(_pids(worker)) == []
        assert os.stat(f"/proc/{worker.process.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        with open(f"/proc/{worker.process.pid}/net/dev") as f:  # its namespace: loopback only
            assert [line.split(":")[0].strip() for line in f.readlines()[2:]] == ["lo"]
        sock = worker.target[len("unix:"):]
        assert os.stat(os.path.dirname(sock)).st_mode & 0o777 == 0o700
    finally:
        worker.stop()
    assert worker.process.poll() is not None and worker.relay.poll() is not None
    assert not os.path.exists(sock)


@needs_namespace
def test_a_listen_address_is_bound_exactly_and_nowhere_else():
    port = _free_port()
    worker = Worker(listen=f"127.0.0.1:{port}")
    try:
        wait_until_serving(worker, timeout=60)
        assert worker.target == f"127.0.0.1:{port}"
        assert host_listeners(_pids(worker)) == [("127.0.0.1", port)]
    finally:
        worker.stop()


def test_without_a_namespace_the_exposure_is_named_and_a_narrower_listen_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(isolation, "unavailable_reason", lambda: "user namespaces disabled (test)")
    with pytest.raises(RuntimeStartError, match="cannot serve TFF's executor on 10.1.2.3 only"):
        Worker(listen="10.1.2.3:8001")
    worker = Worker()
    try:
        err = capsys.readouterr().err
        assert "unauthenticated on ALL interfaces" in err and f"port {worker.port}" in err
        assert "user namespaces disabled (test)" in err and worker.relay is None
        wait_until_serving(worker, timeout=60)
        assert worker.target == f"127.0.0.1:{worker.port}"
        assert ("::", worker.port) in host_listeners(_pids(worker))  # what the check above would catch
    finally:
        worker.stop()


def test_fedkb_worker_without_listen_is_refused_before_tensorflow_loads(tmp_path):
    code = ("import sys; from fedkb.cli import main; rc = main(['--home', sys.argv[1], 'worker']); "
            "assert 'tensorflow' not in sys.modules, 'imported TensorFlow'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home")], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "needs --listen HOST:PORT" in out.stderr and "unauthenticated" in out.stderr
    from tests.cli_runner import fedkb

    out = fedkb(None, "worker", "--listen", "8001")
    assert out.returncode == 2 and "expected HOST:PORT" in out.stderr


@pytest.mark.slow
@needs_namespace
def test_a_tff_computation_runs_through_the_isolated_local_runtime():
    import numpy as np
    import tensorflow_federated as tff

    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        total = tff.federated_computation(lambda x: tff.federated_sum(x), tff.FederatedType(np.int32, tff.CLIENTS))
        assert total([1, 2, 3]) == 6
        assert rt.worker.target.startswith("unix:")
        assert host_listeners(_pids(rt.worker)) == []
