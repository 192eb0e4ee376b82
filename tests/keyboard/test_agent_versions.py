"""A device agent evaluates a candidate on its own held-out split, and pulls only versions that verify.

The coordinator's handlers run in this process behind a fake channel (no gRPC, no TensorFlow).
"""

from __future__ import annotations

import numpy as np

from common import artifacts, messages
from federated import registry
from federated.live_eval import LiveEvaluation
from keyboard import install
from keyboard.agent import DeviceAgent
from keyboard.store import Device, list_device_dirs
from tests.keyboard.helpers import publish_random, start_live_eval


class FakeChannel:
    """Routes ``/fedkb.Coordinator/<Method>`` to in-process handlers; ``tamper`` may alter Version replies."""

    def __init__(self, evaluation: LiveEvaluation, tamper=None):
        self.evaluation, self.tamper = evaluation, tamper

    def unary_unary(self, path: str):
        method = path.rsplit("/", 1)[-1]

        def call(request: bytes, timeout=None) -> bytes:
            if method == "Version":
                reply = self.evaluation.version(request, lambda device_id: None)
                return self.tamper(reply) if self.tamper else reply
            if method == "EvalReport":
                return self.evaluation.report(request, lambda device_id: None)
            raise AssertionError(f"unexpected call {method}")

        return call


def test_agents_evaluate_send_only_named_sums_and_install_the_promoted_version(seeded_home):
    publish_random(seeded_home.models, promote=False)
    ev = LiveEvaluation(seeded_home.models, seeded_home.server / "evals", min_devices=2, deadline=60.0,
                        threshold_points=0.5)
    dirs = list(list_device_dirs(seeded_home.devices))[:2]
    agents = [DeviceAgent(d, FakeChannel(ev)) for d in dirs]
    thread, out = start_live_eval(ev, "0001")
    task = ev.task
    for agent in agents:
        assert agent.evaluate(ev.task_for(agent.device_id))["accepted"] is True
        assert not (agent.device_dir / "eval-versions").exists()  # scored in scratch, then removed
    thread.join(60)
    assert set(task.reports) == {a.device_id for a in agents}
    for agent in agents:
        sums = task.reports[agent.device_id]["candidate"]
        with Device(agent.device_dir) as device:
            heldout = device.splits().heldout
        assert sums["predictions"] == sum(max(len(s.split()) - 1, 0) for s in heldout) > 0
    assert out["result"]["devices"] == 2 and registry.read_registry(seeded_home.models)["latest"] == "0001"
    for agent in agents:
        assert install.installed(agent.device_dir) is None
        assert agent.pull() == "0001" and agent.stats.installs == ["0001"]
        assert install.installed(agent.device_dir).version == "0001"


def test_an_agent_refuses_a_version_altered_on_the_way_keeps_its_own_and_does_not_ask_again(seeded_home):
    v1 = publish_random(seeded_home.models)
    publish_random(seeded_home.models, seed=1, round_num=2)  # promoted: the new latest
    device_dir = next(iter(list_device_dirs(seeded_home.devices)))
    install.install(device_dir, v1.path)

    def tamper(reply: bytes) -> bytes:
        header, arrays = messages.unpack(reply)
        if artifacts.CONFIG in arrays:
            arrays[artifacts.CONFIG] = np.frombuffer(arrays[artifacts.CONFIG].tobytes() + b" ", np.uint8)
        return messages.pack(header, arrays)

    ev = LiveEvaluation(seeded_home.models, seeded_home.server / "evals", min_devices=1, deadline=1.0,
                        threshold_points=0.5)
    agent = DeviceAgent(device_dir, FakeChannel(ev, tamper))
    assert agent.pull() == v1.name
    assert install.installed(device_dir).version == v1.name and agent.stats.installs == []
    assert "0002" in agent.stats.refusals[-1] and device_dir.name in agent.stats.refusals[-1]
    assert "sha256 does not match" in agent.stats.refusals[-1]
    assert agent._refused_versions == {"0002"}
