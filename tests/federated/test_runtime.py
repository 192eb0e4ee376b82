"""No worker_binary outlives the fedkb process that started it: SIGINT and SIGTERM here.

A normal exit, a SIGKILL at a random moment and SIGKILLs at the crash points are checked the same
way by tests/federated/test_crash_resume.py, whose runs end in each of those ways anyway.
"""

import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO
from tests.live_helpers import alive, wait_until, workers_of

pytestmark = pytest.mark.slow


def _kill_leftovers(pids):
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture
def training_process(seeded_home, tmp_path):
    """``fedkb train`` on the tiny preset, stopped at the end of the test if still alive.

    Its stderr goes to a file, not a pipe: TensorFlow's log lines would fill an unread pipe and
    block the process before it could exit.
    """
    with open(tmp_path / "train.stderr", "w+b") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root), "train", "--rounds", "200",
             "--preset", "tiny", "--clients-per-round", "3"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
        )
        proc.stderr = stderr
        parent = psutil.Process(proc.pid)
        seen: list[int] = []
        yield proc, parent, seeded_home, seen
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _kill_leftovers(seen)


def _wait_for_training(parent, home, seen, timeout=240.0):
    """Waits until the worker exists and at least one round has been written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen[:] = workers_of(parent.pid) or seen
        if seen and home.metrics_csv.is_file():
            return
        time.sleep(0.2)
    pytest.fail("fedkb train did not start a worker and finish a round in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_no_worker_left_when_train_is_interrupted(training_process, sig):
    proc, parent, home, seen = training_process
    _wait_for_training(parent, home, seen)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    for pid in seen:
        wait_until(lambda pid=pid: not alive(pid), 20, f"worker_binary {pid} to end with fedkb train ({sig.name})")
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        proc.stderr.seek(0)
        assert b"Traceback" not in proc.stderr.read()
