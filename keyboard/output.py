"""``fedkb keyboard --print``: the screen on the terminal, only the typed text on standard output.

Textual's Linux driver draws on ``sys.__stderr__`` and reads ``sys.__stdin__``, so inside
``msg=$(fedkb keyboard --print)`` (standard output a pipe) it still draws on the terminal. What else
might write to file descriptor 1 while the app runs (a ``print`` that Textual's capture misses, a
native library, a child process inheriting it) must not reach the pipe either: while the app runs,
descriptor 1 points at the terminal (``/dev/tty``, else standard error), and the pipe is given back
only to write the text.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def stdout_for_text_only() -> Iterator[None]:
    """Within the block, file descriptor 1 is the terminal; after it, the original standard output again."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        terminal = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY)
    except OSError:  # no controlling terminal (a service, some CI): standard error takes its place
        terminal = os.dup(2)
    try:
        os.dup2(terminal, 1)
        os.close(terminal)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def write_text(lines: Sequence[str], stream=None) -> None:
    """One line each (a sentence never holds a newline: the log collapses white space)."""
    stream = stream or sys.stdout
    for line in lines:
        stream.write(line + "\n")
    stream.flush()
