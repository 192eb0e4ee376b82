"""Live rounds survive a coordinator killed with SIGKILL: it restarts, resumes, and the devices retry."""

import csv
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(home, port, port_file, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "fedkb.cli", "--home", str(home.root), "serve", "--listen", f"127.0.0.1:{port}",
         "--port-file", str(port_file), "--max-rounds", "2", "--publish-every", "2", "--preset", "tiny",
         "--clients-per-round", "2", "--overselect", "1", "--selection-window", "0", "--no-pretrained",
         "--min-examples", "3"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_a_coordinator_killed_mid_round_restarts_resumes_and_the_devices_retry(seeded_home, tmp_path):
    port, port_file = _free_port(), tmp_path / "port"
    # SIGKILL in round 2, after TFF wrote its state and before the seal: the round must be re-run
    first = _serve(seeded_home, port, port_file, env={"FEDKB_CRASH_AT": "2:checkpoint"})
    agents = subprocess.Popen(
        [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root), "devices", "run", "--count", "2",
         "--processes", "1", "--server", f"127.0.0.1:{port}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first.communicate(timeout=300)
        assert first.returncode == -9, "the coordinator was not killed at round 2's checkpoint"
        assert agents.poll() is None  # the devices wait for it to come back
        second = _serve(seeded_home, port, tmp_path / "port2")
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err[-3000:]
        assert "round 1 done" in out and "round 2:" in out
    finally:
        agents.terminate()
        agents.communicate(timeout=60)
    with open(seeded_home.metrics_csv) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["round"]) for r in rows] == [1, 2] and all(int(float(r["clients"])) == 2 for r in rows)
    assert (seeded_home.models / "latest.json").exists() or any(seeded_home.models.glob("0*"))
