"""``fedkb eval`` sums live counts over every evaluated device, whatever version each has installed.

TFF's sum is replaced by the same sum in numpy (``tests/federated/test_evaluation.py`` runs TFF's
own, slow); what is tested here is what the devices put in and what the server releases.
"""

from __future__ import annotations

import json

from federated import evaluation, ledger, live_release
from federated.population import members
from federated.rollout import run_eval
from keyboard import install
from keyboard.store import Device
from tests.federated.test_live_release import A, B, _tree_sum
from tests.keyboard.helpers import publish_random


def test_live_counts_of_devices_on_two_installed_versions_are_released_together(seeded_home, monkeypatch):
    monkeypatch.setattr(evaluation, "federated_sum", _tree_sum)
    first, second = publish_random(seeded_home.models), publish_random(seeded_home.models, seed=1, round_num=2)
    ids = [m.device_id for m in members(seeded_home)]
    for i, device_id in enumerate(ids):
        install.install(seeded_home.device(device_id), (first if i % 2 else second).path)
        with Device(seeded_home.device(device_id)) as device:
            if i < 24:  # 12 devices in each group typed with 0001: fewer than 20 in either, 24 together
                device.add_live_counts("0001", A if i % 3 else B)
            if i < 5:
                device.add_live_counts("0002", A, source="replayed")
    outcomes = run_eval(seeded_home)
    assert sorted(o.version for o in outcomes) == ["0001", "0002"] and all(o.result["devices"] >= 20 for o in outcomes)
    typed = outcomes[-1].live["0001"]["typed"]
    assert typed["devices"] == 24 and typed["counts"]["words"] == 16 * 10 + 8 * 30  # i % 3 == 0 for 8 of them
    assert typed["summary"]["keystroke_savings"] == (16 * 12 + 8 * 18) / (16 * 40 + 8 * 120)
    assert outcomes[-1].live["0002"]["replayed"]["withheld"] == "withheld: 5 devices < minimum 20"
    stored = live_release.load(seeded_home.server)
    assert stored["min_devices"] == 20 and stored["versions"]["0001"]["typed"]["counts"] == typed["counts"]
    assert "live" not in json.loads((seeded_home.server / "evals" / "0001.json").read_text())
    assert ledger.entries(seeded_home.server, "live_counts") == [
        {"kind": "live_counts", "released": 1, "withheld": 1, "devices": 24, "live": False}]
