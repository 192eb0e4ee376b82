"""Child processes that die with their parent, started with no Python run between ``fork`` and ``exec``.

``subprocess.Popen(preexec_fn=...)`` runs Python in the forked child of a process whose other
threads (TensorFlow's, gRPC's, Textual's) may hold locks at the moment of the fork: a
``ctypes.CDLL`` there can wait forever on the dynamic loader's lock, and the child never reaches
``exec``. So a child is started through this file instead, run by path as a fresh single-threaded
interpreter (stdlib only, ``python -I -S``):

    python -I -S die_with_parent.py PARENT_PID SIGNAL -- PROGRAM ARGS...

which asks the kernel to send it SIGNAL when its parent dies (``PR_SET_PDEATHSIG``, kept across
``exec``), resets SIGINT and SIGTERM to their defaults (an inherited "ignored" would survive
``exec``), gives up if PARENT_PID is no longer its parent, and ``exec``s PROGRAM. Give
``Popen`` ``process_group=0`` where the child needs a process group of its own.
"""

from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def command(argv: list[str], sig: int = signal.SIGKILL) -> list[str]:
    """``argv`` wrapped so that it receives ``sig`` when this process dies (unchanged off Linux)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), str(int(sig)), "--", *argv]


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--" or not argv[0].isdigit() or not argv[1].isdigit():
        print("usage: die_with_parent.py PARENT_PID SIGNAL -- PROGRAM ARGS...", file=sys.stderr)
        return 2
    parent, sig, program = int(argv[0]), int(argv[1]), argv[3:]
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        return 1
    try:
        os.execvp(program[0], program)
    except OSError as exc:
        print(f"die_with_parent.py: cannot run {program[0]}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
