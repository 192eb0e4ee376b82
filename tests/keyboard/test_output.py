"""``fedkb keyboard --print``: while the app runs, nothing written to file descriptor 1 reaches standard output."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

SCRIPT = """
import os, subprocess, sys
from keyboard.output import stdout_for_text_only, write_text
with stdout_for_text_only():
    print("drawn by print")
    os.write(1, b"written to fd 1\\n")
    subprocess.run([sys.executable, "-c", "print('a child process')"], check=True)
write_text(["the sentence", "the unfinished line"])
"""


def test_only_the_text_reaches_stdout_and_the_rest_goes_to_the_terminal():
    # A new session has no controlling terminal, so /dev/tty cannot be opened: standard error stands in.
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60,
                         start_new_session=True, check=True)
    assert out.stdout == "the sentence\nthe unfinished line\n"
    assert "drawn by print" in out.stderr and "written to fd 1" in out.stderr and "a child process" in out.stderr
