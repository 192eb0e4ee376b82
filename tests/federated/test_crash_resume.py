"""`fedkb train` killed with SIGKILL anywhere resumes from the last complete round, to the same model.

Crashes are injected at the two moments where a torn write would matter — after TFF has written
a checkpoint but before it is sealed, and with half of a version's files written — and at a
random moment of client training. The run then resumes to the end; its metrics, versions and
final model must equal those of a run that was never interrupted. And whichever way a run ended
(its crash points, the SIGKILL, the final normal exit), no ``worker_binary`` it started outlives it.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO
from tests.live_helpers import alive, wait_until, workers_of

pytestmark = [pytest.mark.slow, pytest.mark.long]

ARGS = ["train", "--rounds", "6", "--preset", "tiny", "--clients-per-round", "3", "--publish-every", "2", "--seed", "1"]


def _start_training(home, log) -> subprocess.Popen:
    """Starts an uninterrupted ``fedkb train`` in the background, its output going to ``log``."""
    return subprocess.Popen([sys.executable, "-m", "fedkb.cli", "--home", str(home.root), *ARGS], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)


def _rounds_done(home) -> int:
    if not home.metrics_csv.is_file():
        return 0
    return len(list(csv.DictReader(open(home.metrics_csv))))


def _train(home, crash_at: str | None = None, kill_after_round: int | None = None, seed: int = 0) -> int:
    """Runs ``fedkb train`` to its end (or its crash point, or a SIGKILL at a random moment of the
    round after ``kill_after_round``) and returns its exit status. Whichever way it ended, the
    ``worker_binary`` it started must not outlive it."""
    env = {**os.environ, **({"FEDKB_CRASH_AT": crash_at} if crash_at else {})}
    with open(home.root.parent / f"train-{crash_at or kill_after_round}.log", "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fedkb.cli", "--home", str(home.root), *ARGS], cwd=REPO,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        workers = set()
        deadline = time.monotonic() + 600
        killing = kill_after_round is not None
        while proc.poll() is None and time.monotonic() < deadline:
            workers |= workers_of(proc.pid)
            if killing and _rounds_done(home) > kill_after_round:
                time.sleep(random.Random(seed).uniform(0.0, 0.8))
                proc.send_signal(signal.SIGKILL)
                killing = False
            time.sleep(0.05)
        code = proc.wait(timeout=60)
        assert workers, "fedkb train started no worker_binary"
        for pid in workers:
            wait_until(lambda pid=pid: not alive(pid), 20, f"worker_binary {pid} to end with fedkb train (exit {code})")
        if crash_at is None and kill_after_round is None:
            log.seek(0)
            assert code == 0, log.read()[-3000:]
    return code


def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_model(seeded_home, tmp_path):
    from common.layout import Home
    from federated import checkpoints, ledger, registry

    straight = Home(tmp_path / "straight")
    shutil.copytree(seeded_home.root, straight.root)
    # The uninterrupted reference runs in its own home while the crashes below happen: the two
    # share nothing, and its ~15 s of TensorFlow import overlaps theirs.
    with open(tmp_path / "straight.log", "w") as log:
        reference = _start_training(straight, log)

    home = seeded_home
    try:
        for crash_at in ("2:checkpoint", "4:publish"):
            assert _train(home, crash_at) == -signal.SIGKILL, crash_at
        # The crash at 2:checkpoint left round 2's state unsealed; it was discarded and round 2 re-run.
        assert _train(home, kill_after_round=4, seed=7) == -signal.SIGKILL
        # That kill lands in round 6, before or after the round was released (entered in the ledger);
        # the resume re-runs it unless its checkpoint was already sealed.
        released_6 = [e["round"] for e in ledger.entries(home.server, "round")].count(6)
        reruns_6 = 0 if checkpoints.is_sealed(home.state / "program_state_6") else 1
        assert _train(home) == 0  # a normal exit: its worker_binary is stopped too
        assert reference.wait(timeout=900) == 0, (tmp_path / "straight.log").read_text()[-3000:]
    finally:
        if reference.poll() is None:  # a crash assertion failed first
            reference.kill()
            reference.wait()

    with open(home.metrics_csv) as metrics:
        rows = list(csv.DictReader(metrics))
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    rows, ref = ledger.round_metrics(home.server), ledger.round_metrics(straight.server)  # 3 devices: not released
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    # Rounds 2 and 4 were released, then crashed before their checkpoint: each counts twice. Every
    # run of round 6 counts once too.
    released = [e["round"] for e in ledger.entries(home.server, "round")]
    assert released.count(2) == 2 and released.count(4) == 2 and released.count(6) == released_6 + reruns_6 >= 1
    for a, b in zip(rows, ref):
        assert a["clients"] == b["clients"]
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-6)
    versions = registry.list_versions(home.models)
    assert [registry.verify(home.models / v).round for v in versions] == [2, 4, 6]  # none twice, none torn
    assert not list(home.models.glob(".tmp-*"))
    kept = sorted(home.state.glob("program_state_*"))
    assert kept and all(p.name.split("_")[-1].isdigit() for p in kept), kept  # no temporary leftovers
    for path in kept:
        checkpoints.verify(path)
    a = registry.load_weights(registry.newest(home.models))
    b = registry.load_weights(registry.newest(straight.models))
    # Same clients, data order and seeds. TF's CPU kernels may add in another order across
    # processes, so equality is up to float32 rounding (observed: bitwise or within 1e-7).
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)
