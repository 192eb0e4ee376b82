"""Live evaluation carries the devices' live counts: checked by name, summed, released only from enough devices."""

from __future__ import annotations

import json

import pytest

from common import messages
from federated import ledger, live_release
from federated.live_eval import EvalTask, LiveEvaluation
from keyboard.agent import DeviceAgent
from keyboard.store import Device, list_device_dirs
from tests.federated.test_live_eval import _sums
from tests.federated.test_live_release import A, B, counts
from tests.keyboard.helpers import publish_random, start_live_eval
from tests.keyboard.test_agent_versions import FakeChannel


def _report(task, live):
    return {"eval_id": task.eval_id, "version": task.version, "sums": {"candidate": _sums()}, "live": live}


@pytest.mark.parametrize("live, message", [
    ([], "device d1: live counts must be an object of sources"),
    ({"spoken": {}}, r"device d1: unknown live counts source\(s\) \['spoken'\]"),
    ({"typed": {"../x": A}}, "device d1, live counts of 'typed': '../x' is not a version name"),
    ({"typed": {"0002": {**A, "modified": 9}}},
     r"device d1, live counts of 'typed' for version 0002: modified \(9\) exceeds accepted \(5\)"),
    ({"typed": {"0002": {**A, "extra": 1}}}, r"unexpected \['extra'\]"),
])
def test_malformed_live_counts_are_refused_naming_the_device(live, message):
    task = EvalTask("e1", "0002", None)
    task.given.add("d1")
    with pytest.raises(messages.MessageError, match=message):
        task.accept("d1", _report(task, live))
    assert task.reports == {} and task.live == {}  # nothing of a refused report is kept


def test_live_counts_are_summed_over_accepted_reports_and_released_per_version_and_source():
    task = EvalTask("e1", "0002", None)
    task.given |= {"d1", "d2", "d3"}
    task.accept("d1", _report(task, {"typed": {"0001": A}, "replayed": {"0001": B}}))
    task.accept("d2", _report(task, {"typed": {"0001": B, "0002": counts(0)}}))
    task.accept("d3", {"eval_id": "e1", "version": "0002", "sums": {"candidate": _sums()}})  # an older agent: none
    released = task.release_live(2)
    assert released["0001"]["typed"]["devices"] == 2 and released["0001"]["typed"]["counts"]["words"] == 40
    assert released["0001"]["typed"]["summary"]["keystroke_savings"] == pytest.approx(30 / 160)
    assert released["0001"]["replayed"]["withheld"] == "withheld: 1 devices < minimum 2"
    assert "0002" not in released  # no finished word with it: no device contributed


def test_agents_report_their_live_counts_and_the_coordinator_releases_them(seeded_home):
    publish_random(seeded_home.models, promote=False)
    ev = LiveEvaluation(seeded_home.models, seeded_home.server / "evals", min_devices=2, deadline=60.0,
                        threshold_points=0.5)
    dirs = list(list_device_dirs(seeded_home.devices))[:2]
    for d, c in zip(dirs, (A, B)):
        with Device(d) as device:
            device.add_live_counts("0001", c)
            device.add_live_counts("0001", A, source="replayed")
            device.add_live_counts("0007", A, source="replayed") if d == dirs[0] else None
    agents = [DeviceAgent(d, FakeChannel(ev)) for d in dirs]
    thread, out = start_live_eval(ev, "0001")
    for agent in agents:
        assert agent.evaluate(ev.task_for(agent.device_id))["accepted"] is True
    thread.join(60)
    assert out["result"]["devices"] == 2
    stored = live_release.load(seeded_home.server)
    assert stored["min_devices"] == 2
    typed = stored["versions"]["0001"]["typed"]
    assert typed["counts"] == {k: A[k] + B[k] for k in A} and typed["origin"] == "live evaluation of 0001"
    assert stored["versions"]["0001"]["replayed"]["counts"]["words"] == 20
    assert stored["versions"]["0007"]["replayed"]["withheld"] == "withheld: 1 devices < minimum 2"
    assert [e for e in ledger.entries(seeded_home.server, "live_counts")] == [
        {"kind": "live_counts", "released": 2, "withheld": 1, "devices": 2, "live": True}]
    assert "live metrics" in json.dumps(ledger.total(seeded_home.server)["outside_epsilon"])


def test_a_damaged_live_metrics_file_is_kept_and_the_evaluation_still_decides(tmp_path):
    publish_random(tmp_path / "server" / "models", promote=False)
    (tmp_path / "server" / live_release.LIVE_FILE).write_text("{not json")
    ev = LiveEvaluation(tmp_path / "server" / "models", tmp_path / "server" / "evals", min_devices=1, deadline=30.0,
                        threshold_points=0.5)
    events: list[str] = []
    thread, out = start_live_eval(ev, "0001", on_event=events.append)
    header = {"device_id": "d1", **_report(ev.task, {"typed": {"0001": A}})}
    ev.task_for("d1")
    assert messages.unpack(ev.report(messages.pack(header), lambda d: None))[0]["accepted"]
    thread.join(30)
    assert out["result"]["devices"] == 1 and out["result"]["promotion"]["promoted"] is True
    assert any("live metrics not recorded" in e and "unreadable" in e for e in events)
    assert (tmp_path / "server" / live_release.LIVE_FILE).read_text() == "{not json"
    assert ledger.entries(tmp_path / "server", "live_counts") == []
