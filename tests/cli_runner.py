"""Runs the ``fedkb`` command line inside the test process, so TensorFlow Federated is imported once
per test session instead of once per command (~15 s each).

Tests whose point is the process itself (signals, SIGKILL and resume, worker processes, live
devices, the real terminal, what ``--help`` imports) still start ``python -m fedkb.cli``. So do
commands that start TFF's local runtime: ``federated/runtime.py`` starts ``worker_binary`` with a
``preexec_fn``, which can hang between fork and exec in a process with many threads; in a test
session where TensorFlow and gRPC had run, a local runtime started in-process twice never served
(under load). A ``python -m fedkb.cli`` process failed the same way once under load too, so the
cause is not settled; until it is, those commands keep their own process.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path


def fedkb(home: Path | str | None, *args: object, stdin: str = "") -> subprocess.CompletedProcess:
    """``fedkb [--home HOME] ARGS...`` run by ``fedkb.cli.main``; returns what a subprocess run would.

    The exit status is ``main``'s return value, or argparse's ``SystemExit`` code. An exception
    ``main`` lets through (a bug: the real command would print a traceback) propagates, failing
    the test with its traceback. Signal handlers, TFF's default context and standard input are
    put back afterwards, so the command leaves nothing behind in the test process.
    """
    from fedkb import cli

    argv = ([] if home is None else ["--home", str(home)]) + [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    context = _tff_context()
    stdin_before, sys.stdin = sys.stdin, io.StringIO(stdin)
    cli._interrupted = False
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse: bad usage (2) or --help (0)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin = stdin_before
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if context is not None:
            import tensorflow_federated as tff

            tff.framework.set_default_context(context)
    return subprocess.CompletedProcess(["fedkb", *argv], code, out.getvalue(), err.getvalue())


def _tff_context():
    """TFF's current default context if TFF is loaded (a module's runtime fixture may have set it)."""
    if "tensorflow_federated" not in sys.modules:
        return None
    import tensorflow_federated as tff

    return tff.framework.get_context_stack().current
