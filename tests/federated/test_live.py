"""Live rounds: device agents in their own processes train and upload; the coordinator aggregates.

For the same participants and seeds, two live rounds leave the same weights as two simulated
rounds (`fedkb train`'s Session), and the coordinator never opens a device directory meanwhile.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.long]

_watch = {"root": None, "opened": []}


def _audit(event, args):
    root = _watch["root"]
    if root is not None and event == "open" and args and isinstance(args[0], (str, bytes)):
        path = args[0].decode() if isinstance(args[0], bytes) else args[0]
        if path.startswith(root):
            _watch["opened"].append(path)


sys.addaudithook(_audit)


def test_live_rounds_equal_simulated_rounds_and_the_coordinator_opens_no_device(seeded_home, tmp_path):
    from common.layout import Home
    from federated import training
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.population import Selection
    from federated.program import Session
    from federated.runtime import LocalRuntime
    from federated.service import serve

    sim_home = Home(tmp_path / "sim")
    shutil.copytree(seeded_home.root, sim_home.root)  # the same devices, for the simulated run
    train = training.TrainConfig(preset="tiny", clients_per_round=3, batch_size=4, seed=5, min_examples=3)
    with LocalRuntime():
        session = Session(seeded_home, train, publish_every=2, pretrained=False, live=True)
        coordinator = Coordinator(session, LiveConfig(overselect=1.0, selection_window=0.0, report_deadline=240))
        server, port = serve(coordinator, "127.0.0.1:0")
        agents = subprocess.Popen(
            [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root), "devices", "run", "--count", "3",
             "--processes", "2", "--server", f"127.0.0.1:{port}", "--rounds", "2"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _watch["root"] = str(seeded_home.devices)
            results = [coordinator.run_round(total_rounds=2) for _ in range(2)]
            _watch["root"] = None
            live_weights = session.global_weights()
        finally:
            _watch["root"] = None
            server.stop(grace=1)
            _out, err = agents.communicate(timeout=120)
        assert agents.returncode == 0, err[-3000:]
        assert _watch["opened"] == [], "the coordinator opened device files during live rounds"
        assert [len(r.clients) for r in results] == [3, 3]
        assert results[0].published is None and results[1].published and not coordinator.refusals

        sim = Session(sim_home, train, publish_every=2, pretrained=False)
        for r in results:
            sim.run_round(total_rounds=2, selection=Selection(list(r.clients), len(r.clients), 60))
        sim_weights = sim.global_weights()
    assert set(live_weights) == set(sim_weights)
    # float32 sums in another order (TF's threads under load) moved one weight by 2.6e-5 once; a
    # different set of devices or a wrong step moves them by ~1e-2.
    for name in live_weights:
        np.testing.assert_allclose(live_weights[name], sim_weights[name], rtol=1e-4, atol=1e-4, err_msg=name)
    for key in ("loss", "num_examples", "num_tokens"):
        assert results[-1].metrics[key] == pytest.approx(sim_metrics(sim_home)[key], rel=1e-4), key


def sim_metrics(home):
    from federated import ledger

    return {k: float(v) for k, v in ledger.round_metrics(home.server)[-1].items()}


def test_a_round_completes_without_a_device_that_vanished_and_refuses_its_bad_upload(seeded_home):
    from common import messages
    from federated import sampling, training
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.program import Session
    from federated.runtime import LocalRuntime
    from federated.service import serve
    from keyboard.agent import connect
    from keyboard.store import list_device_dirs

    ids = [d.name for d in list_device_dirs(seeded_home.devices)]
    # Three check in (the rogue and two agents) and each is drawn with q = 2/3: a public --seed
    # whose draw takes all three makes the test deterministic.
    three = sorted([*ids[:2], ids[-1]])
    # ceil(2 x 1.5) = 3 expected of the 3 that check in: q = 1, all three are drawn
    seed = next(s for s in range(1000) if len(sampling.poisson(sampling.seeded_key(s), three, 1.0, 1)) == 3)
    train = training.TrainConfig(preset="tiny", clients_per_round=2, batch_size=4, seed=seed, min_examples=3,
                                 public_sampling=True)
    with LocalRuntime():
        session = Session(seeded_home, train, publish_every=5, pretrained=False, live=True)
        coordinator = Coordinator(session, LiveConfig(overselect=1.5, selection_window=30.0, report_deadline=240))
        server, port = serve(coordinator, "127.0.0.1:0")
        rogue_id = ids[-1]  # checks in, is selected, uploads a delta of the wrong shape, then vanishes
        channel = connect(f"127.0.0.1:{port}")
        check_in = channel.unary_unary(f"/{messages.SERVICE}/CheckIn")
        upload = channel.unary_unary(f"/{messages.SERVICE}/Upload")
        replies = {}

        def rogue():
            header = {"device_id": rogue_id, "eligible": {"idle": True, "charging": True, "unmetered": True},
                      "train_sentences": 10, "tokenizer_sha256": None}
            for _ in range(100):  # until the round is selecting, as an agent retries
                task, weights = messages.unpack(check_in(messages.pack(header), timeout=120))
                if task.get("kind") == "task":
                    break
                time.sleep(0.5)
            replies["task"] = task
            if task.get("kind") == "task":
                bad = {k: np.zeros((1, *v.shape), np.float32) for k, v in weights.items()}
                up = {"task_id": task["task_id"], "device_id": rogue_id, "round": task["round"], "weight": 1.0,
                      "metrics": {}}
                replies["upload"] = messages.unpack(upload(messages.pack(up, bad), timeout=60))[0]

        thread = threading.Thread(target=rogue)
        thread.start()
        agents = subprocess.Popen(
            [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root), "devices", "run", "--count", "2",
             "--processes", "1", "--server", f"127.0.0.1:{port}", "--rounds", "1"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            result = coordinator.run_round()
        finally:
            server.stop(grace=1)
            _out, _err = agents.communicate(timeout=120)
            thread.join(30)
    assert replies["task"]["kind"] == "task"  # 3 checked in, ceil(2 x 1.5) = 3 selected
    assert replies["upload"]["accepted"] is False and "the model's is float32" in replies["upload"]["reason"]
    assert sorted(result.clients) == sorted(ids[:2]) and rogue_id not in result.clients
    assert [d for d, _ in coordinator.refusals] == [rogue_id]
    from federated import ledger

    (entry,) = ledger.entries(seeded_home.server, "round")  # the live draw: Poisson over the 3 checked in
    assert entry["sampling"] == "poisson-public" and entry["q"] == pytest.approx(1.0) and entry["eligible"] == 3
