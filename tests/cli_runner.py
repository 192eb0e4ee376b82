"""Runs the ``fedkb`` command line inside the test process, so TensorFlow Federated is imported once
per test session instead of once per command (~15 s each).

Commands that start TFF's local runtime run here too: each starts and stops its own
``worker_binary`` (about half a second), and pays no TFF import. Tests whose point is the
process itself (signals, SIGKILL and resume, worker processes, live devices, the real terminal,
what ``--help`` imports) still start ``python -m fedkb.cli``.

(An earlier attempt to run runtime commands here was taken back after a local runtime twice
never served. The cause was a race in ``federated/runtime.py``: the relay could join the
worker's namespaces before the worker had entered them. The relay now waits for that.)
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
