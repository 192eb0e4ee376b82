"""Live secure aggregation between real processes: devices keep their own keys, seeds and shares.

Five device processes are selected; one is SIGKILLed after sharing its keys (its pairwise masks
are removed through its peers' shares of its mask key) and one after sending its masked input
(its self mask is removed through its peers' shares of its seed). The round completes with the
four that sent masked inputs, the coordinator never opens a device file, and the weights equal
the simulated secure aggregation (``SecureRounds``) of the same four devices.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from tests.federated.test_live import _watch

pytestmark = [pytest.mark.slow, pytest.mark.long]


def test_a_secure_live_round_survives_devices_killed_after_sharing_and_after_masking(seeded_home, tmp_path):
    from common.layout import Home
    from federated import training
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.population import Selection
    from federated.privacy import PrivacyConfig
    from federated.program import Session
    from federated.runtime import LocalRuntime
    from federated.service import serve
    from keyboard.store import Device, list_device_dirs

    sim_home = Home(tmp_path / "sim")
    shutil.copytree(seeded_home.root, sim_home.root)
    def enough(d):
        with Device(d) as device:
            return device.status()["train_sentences"] >= 3

    dirs = [d for d in list_device_dirs(seeded_home.devices) if enough(d)][:5]
    train = training.TrainConfig(preset="tiny", clients_per_round=5, batch_size=4, seed=3, min_examples=3,
                                 server_optimizer="sgdm", server_lr=1.0, server_momentum=0.0)
    privacy = PrivacyConfig(secure_agg=True)
    with LocalRuntime():
        session = Session(seeded_home, train, privacy=privacy, publish_every=5, pretrained=False, live=True)
        coordinator = Coordinator(session, LiveConfig(overselect=1.0, selection_window=0.0, report_deadline=240,
                                                      stage_timeout=6.0))
        server, port = serve(coordinator, "127.0.0.1:0")
        target = f"127.0.0.1:{port}"
        dying = {dirs[1].name: "shares", dirs[3].name: "masked"}
        procs = {}
        for d in dirs:
            cmd = ([sys.executable, "-m", "tests.federated.dying_agent", "--after", dying[d.name]] if d.name in dying
                   else [sys.executable, "-m", "keyboard.agent_process", "--rounds", "1"])
            procs[d.name] = subprocess.Popen([*cmd, "--device-dir", str(d), "--server", target], cwd=REPO,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        events = []
        try:
            _watch["root"] = str(seeded_home.devices)
            result = coordinator.run_round(total_rounds=1, on_event=events.append)
        finally:
            _watch["root"] = None
            server.stop(grace=1)
            outs = {name: p.communicate(timeout=120)[0] for name, p in procs.items()}
        assert _watch["opened"] == [], "the coordinator opened device files during a secure live round"
        for name, p in procs.items():
            expected = -signal.SIGKILL if name in dying else 0
            assert p.returncode == expected, (name, outs[name][-2000:])
        survivors = [d.name for d in dirs if d.name != dirs[1].name]
        assert sorted(result.clients) == sorted(survivors)
        assert any("1 device(s) dropped after sharing keys" in e for e in events), events
        live_weights = session.global_weights()

        sim = Session(sim_home, train, privacy=privacy, publish_every=5, pretrained=False)
        sim.run_round(total_rounds=1, selection=Selection(list(result.clients), len(survivors), 60))
        sim_weights = sim.global_weights()
    for name in live_weights:  # the same quantized sums; the clients' float32 deltas agree to ~1e-6
        np.testing.assert_allclose(live_weights[name], sim_weights[name], atol=2e-4, err_msg=name)
    assert result.metrics["num_examples"] > 0 and result.metrics["clients"] == 4
