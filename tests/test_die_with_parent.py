"""A child started through ``common/die_with_parent.py`` dies with its parent and runs its program as itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from common import die_with_parent
from tests.conftest import REPO


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_child_is_the_program_and_dies_when_its_parent_is_killed():
    # A parent that starts `sleep` through the wrapper, prints its pid, then waits to be killed.
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys, time
        from common import die_with_parent
        child = subprocess.Popen(die_with_parent.command(["sleep", "600"]), process_group=0)
        print(child.pid, flush=True)
        time.sleep(600)
    """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not Path(f"/proc/{child}/cmdline").read_text().startswith("sleep"):
        time.sleep(0.05)
    assert Path(f"/proc/{child}/cmdline").read_text().split("\0")[:2] == ["sleep", "600"]  # exec'd in place
    assert os.getpgid(child) == child
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_an_ignored_sigint_is_not_inherited_and_bad_usage_is_refused():
    script = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    ignoring = ("import signal, subprocess, sys; from common import die_with_parent; "
                "signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "sys.exit(subprocess.run(die_with_parent.command(sys.argv[1:])).returncode)")
    out = subprocess.run([sys.executable, "-c", ignoring, sys.executable, "-c", script], cwd=REPO,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    bad = subprocess.run([sys.executable, die_with_parent.__file__, "x", "9", "--", "true"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
    missing = subprocess.run(die_with_parent.command(["/nonexistent/program"]), capture_output=True, text=True)
    assert missing.returncode == 127 and "/nonexistent/program" in missing.stderr
