"""Keeps ``worker_binary``'s executor service off the network, without root.

``worker_binary`` serves TFF's executor service unauthenticated on ``[::]:PORT`` (its only
flags are ``--port`` and ``--max_concurrent_computation_calls``). So it runs in a user + network
namespace of its own (``unshare(CLONE_NEWUSER | CLONE_NEWNET)``, allowed to unprivileged users
where user namespaces are enabled), whose only interface is its own loopback: nothing outside
the namespace, on this host or another, can reach that port. A small relay (``relay.py``) joins
the same namespaces and forwards connections from a listening socket the parent made outside:
a Unix socket in an owner-only directory for the local runtime, or exactly the ``HOST:PORT``
that ``fedkb worker --listen`` asked for.

The functions named ``*_in_child`` run between fork and exec (``Popen(preexec_fn=...)``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
INNER_PORT = 8000  # worker_binary's port inside its namespace: nothing else lives there
RELAY = Path(__file__).with_name("relay.py")

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None  # loaded before any fork


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def enter_private_network_in_child() -> None:
    """Moves this (single-threaded, forked) process into a new user + network namespace, loopback up."""
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack_from("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def join_namespaces_in_child(pid: int) -> None:
    """Moves this (single-threaded, forked) process into the user and network namespaces of ``pid``."""
    for kind, flag in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET)):
        fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
        try:
            _check(_libc.setns(fd, flag), f"setns {kind}")
        finally:
            os.close(fd)


def _probe_in_child() -> None:
    try:
        enter_private_network_in_child()
    except OSError as exc:
        os._exit(exc.errno or errno.EPERM)


@functools.cache
def unavailable_reason() -> str | None:
    """Why a private network namespace cannot be made here, or None if it can (probed once per process)."""
    if _libc is None:
        return f"network namespaces are Linux-only (this is {sys.platform})"
    true = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
    try:
        code = subprocess.run([true], preexec_fn=_probe_in_child, timeout=30).returncode
    except (OSError, subprocess.SubprocessError) as exc:
        return f"probe failed: {exc}"
    if code == 0:
        return None
    return (f"unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: {os.strerror(code)} "
            "(user namespaces disabled: see user.max_user_namespaces / kernel.unprivileged_userns_clone)")


def exposure_warning(port: int, reason: str) -> str:
    return (f"fedkb: WARNING: TFF's worker_binary serves its executor service unauthenticated on ALL interfaces, "
            f"port {port}: anyone who can reach this host can run TensorFlow graphs in it and read the round's client "
            f"data. It cannot be confined here ({reason}). Enable unprivileged user namespaces, or firewall port {port}.")


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) -> (host, port); raises ValueError naming what was expected."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. 10.0.0.5:8001 or [::1]:8001), got {address!r}")
    return host, int(port)


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "*")


def tcp_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket bound to exactly ``host:port`` (``::`` also takes IPv4)."""
    if host == "*":
        host = "::" if socket.has_dualstack_ipv6() else "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    dualstack = host == "::" and socket.has_dualstack_ipv6()
    return socket.create_server((host, port), family=family, backlog=64, dualstack_ipv6=dualstack)


def unix_listener(directory: Path) -> socket.socket:
    """A listening Unix socket ``executor.sock`` in ``directory`` (which the caller made mode 0700)."""
    path = directory / "executor.sock"
    if len(os.fsencode(path)) > 100:
        raise OSError(errno.ENAMETOOLONG, f"Unix socket path too long: {path}")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    os.chmod(path, 0o600)
    s.listen(64)
    return s
