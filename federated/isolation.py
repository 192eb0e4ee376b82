"""Keeps ``worker_binary``'s executor service off the network, without root.

``worker_binary`` serves TFF's executor service unauthenticated on ``[::]:PORT`` (its only
flags are ``--port`` and ``--max_concurrent_computation_calls``). So it runs in a user + network
namespace of its own (``unshare(CLONE_NEWUSER | CLONE_NEWNET)``, allowed to unprivileged users
where user namespaces are enabled), whose only interface is its own loopback: nothing outside
the namespace, on this host or another, can reach that port. A small relay (``relay.py``) joins
the same namespaces and forwards connections from a listening socket the parent made outside:
a Unix socket in an owner-only directory for the local runtime, or exactly the ``HOST:PORT``
that ``fedkb worker --listen`` asked for. ``netns.py`` makes the namespace change in the started
process itself, before it ``exec``s the worker or the relay.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import subprocess
import sys
from pathlib import Path

from common.errors import ConfigError

INNER_PORT = 8000  # worker_binary's port inside its namespace: nothing else lives there
RELAY = Path(__file__).with_name("relay.py")
NETNS = Path(__file__).with_name("netns.py")


def in_private_network(argv: list[str]) -> list[str]:
    """``argv`` run in a new user + network namespace of its own (``netns.py``)."""
    return [sys.executable, "-I", "-S", str(NETNS), "new", "--", *argv]


def in_namespaces_of(pid: int, argv: list[str]) -> list[str]:
    """``argv`` run in the user and network namespaces of process ``pid`` (``netns.py``)."""
    return [sys.executable, "-I", "-S", str(NETNS), "join", str(pid), "--", *argv]


@functools.cache
def unavailable_reason() -> str | None:
    """Why a private network namespace cannot be made here, or None if it can (probed once per process)."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux-only (this is {sys.platform})"
    true = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
    try:
        probe = subprocess.run(in_private_network([true]), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"probe failed: {exc}"
    if probe.returncode == 0:
        return None
    return (f"{probe.stderr.strip() or f'exit code {probe.returncode}'} "
            "(user namespaces disabled: see user.max_user_namespaces / kernel.unprivileged_userns_clone)")


def exposure_warning(port: int, reason: str) -> str:
    return (f"fedkb: WARNING: TFF's worker_binary serves its executor service unauthenticated on ALL interfaces, "
            f"port {port}: anyone who can reach this host can run TensorFlow graphs in it and read the round's client "
            f"data. It cannot be confined here ({reason}). "
            f"Enable unprivileged user namespaces, or firewall port {port}.")


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) -> (host, port); raises ValueError naming what was expected."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"expected HOST:PORT (e.g. 10.0.0.5:8001 or [::1]:8001), got {address!r}")
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
