"""A live round publishes; devices evaluate the candidate on-device, the coordinator promotes it from
their sums, and the devices pull and install it — the coordinator opening no device file meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.federated.test_live import _watch

pytestmark = pytest.mark.slow


def test_a_published_round_is_evaluated_on_devices_promoted_and_pulled(seeded_home):
    from eval.report_load import load_eval
    from federated import registry, training
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.program import Session
    from federated.runtime import LocalRuntime
    from federated.service import serve
    from keyboard import install
    from keyboard.store import list_device_dirs

    ids = [d.name for d in list_device_dirs(seeded_home.devices)][:3]  # the devices `devices run --count 3` hosts
    train = training.TrainConfig(preset="tiny", clients_per_round=3, batch_size=4, seed=5, min_examples=3)
    with LocalRuntime():
        session = Session(seeded_home, train, publish_every=1, pretrained=False, live=True)
        coordinator = Coordinator(session, LiveConfig(overselect=1.0, selection_window=0.0, report_deadline=240,
                                                      eval_min_devices=3, eval_deadline=240))
        server, port = serve(coordinator, "127.0.0.1:0")
        agents = subprocess.Popen(
            [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root), "devices", "run", "--count", "3",
             "--processes", "1", "--server", f"127.0.0.1:{port}"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        events: list[str] = []
        try:
            _watch["opened"].clear()
            _watch["root"] = str(seeded_home.devices)
            result = coordinator.run_round(total_rounds=1)
            assert result.published == "0001"
            evaluated = coordinator.evaluate(result.published, on_event=events.append)
            until = time.monotonic() + 180
            while time.monotonic() < until and any(coordinator.installed.get(d) != "0001" for d in ids):
                time.sleep(0.5)  # each device says at check-in which version it runs
            _watch["root"] = None
        finally:
            _watch["root"] = None
            agents.terminate()
            try:
                _out, err = agents.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                agents.kill()
                _out, err = agents.communicate()
            server.stop(grace=1)
    assert _watch["opened"] == [], "the coordinator opened device files during the round, evaluation or pulls"
    assert evaluated is not None, (events, err[-3000:])
    assert evaluated["devices"] == 3 and evaluated["predictions"] > 0 and 0 <= evaluated["recall_at_1"] <= 1
    decision = registry.read_registry(seeded_home.models)["decisions"]["0001"]
    assert decision["promoted"] is True and decision["reason"] == "first version" and decision["live"] is True
    assert registry.latest(seeded_home.models).name == "0001"
    written = seeded_home.server / "evals" / "0001.json"
    assert load_eval(written).recall_at_1 == evaluated["recall_at_1"]
    assert json.loads(written.read_text())["settings"]["eval"]["live"] is True
    assert {d: coordinator.installed.get(d) for d in ids} == {d: "0001" for d in ids}, err[-3000:]
    for device_id in ids:
        installed = install.installed(seeded_home.device(device_id))
        assert installed is not None and installed.version == "0001" and not installed.fell_back
        assert not (seeded_home.device(device_id) / "eval-versions").exists()
        assert not (seeded_home.device(device_id) / "incoming").exists()
    assert not coordinator.refusals, coordinator.refusals

    # A device that runs an older version than latest is sent back at once to pull it (the reply
    # names latest), not held between rounds; one that runs latest is not sent to pull.
    from common import messages

    def check_in(version):
        header = {"device_id": ids[0], "eligible": {"idle": True, "charging": True, "unmetered": True},
                  "train_sentences": 10, "model_version": version}
        return messages.unpack(coordinator.check_in(messages.pack(header)))[0]

    reply = check_in(None)
    assert reply["kind"] == "retry" and reply["latest"] == "0001" and "0001 is promoted" in reply["reason"], reply
    assert "is promoted" not in check_in("0001")["reason"]
