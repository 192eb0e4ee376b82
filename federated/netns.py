"""Runs a program in a private network namespace, or in another process's (stdlib only, run by path).

    python -I -S netns.py new -- PROGRAM ARGS...        # a new user + network namespace, loopback up
    python -I -S netns.py join PID -- PROGRAM ARGS...   # the user and network namespaces of PID

then ``exec``s PROGRAM, so it is PROGRAM's own process from there on. The namespace change
happens here, in a freshly started single-threaded process, and not between ``fork`` and ``exec``
of the coordinator: the kernel refuses ``unshare(CLONE_NEWUSER)`` (EINVAL) in a child forked from
a process whose gRPC threads are running, and ``fedkb serve`` has those. Changing namespace
clears the parent-death signal, so it is set again afterwards: PROGRAM dies with its parent.
``federated/isolation.py`` builds the command lines.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import struct
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def enter_private_network() -> None:
    """Moves this single-threaded process into a new user + network namespace, loopback up."""
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack_from("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def join_namespaces(pid: int) -> None:
    """Moves this single-threaded process into the user and network namespaces of ``pid``."""
    for kind, flag in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET)):
        fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
        try:
            _check(_libc.setns(fd, flag), f"setns {kind}")
        finally:
            os.close(fd)


def main(argv: list[str]) -> int:
    parent = os.getppid()
    try:
        split = argv.index("--")
    except ValueError:
        split = -1
    mode, program = argv[:split], argv[split + 1:]
    if split < 0 or not program or mode[:1] not in (["new"], ["join"]) or len(mode) != (1 if mode[0] == "new" else 2):
        print("usage: netns.py new -- PROGRAM ARGS... | netns.py join PID -- PROGRAM ARGS...", file=sys.stderr)
        return 2
    try:
        if mode[0] == "new":
            enter_private_network()
        else:
            join_namespaces(int(mode[1]))
    except (OSError, ValueError, AttributeError) as exc:
        print(f"netns.py: {exc}", file=sys.stderr)
        return 111
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # cleared by the namespace change
    for s in (signal.SIGINT, signal.SIGTERM):  # an inherited "ignored" would survive exec
        signal.signal(s, signal.SIG_DFL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        return 1
    os.execv(program[0], program)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
