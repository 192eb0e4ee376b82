"""Live evaluation on sums alone: named sums checked, one report per device, nothing below the minimum."""

from __future__ import annotations

import json
import math
import threading

import pytest

from common import eval_sums, messages
from federated import promotion, registry
from federated.live_eval import EvalTask, LiveEvaluation, TooFewDevices
from tests.keyboard.helpers import publish_random


def _sums(predictions=10, oov=1, h1=2, h3=4, h5=5, nll=20.0, tokens=8):
    return {"predictions": predictions, "oov": oov, "hits_at_1": h1, "hits_at_3": h3, "hits_at_5": h5,
            "token_nll": nll, "tokens": tokens}


@pytest.mark.parametrize("change, message", [
    ({"hits_at_1": -1}, "hits_at_1 must be a finite non-negative number"),
    ({"token_nll": float("nan")}, "token_nll must be a finite non-negative number"),
    ({"tokens": True}, "tokens must be a finite non-negative number"),
    ({"predictions": 2.5}, "predictions must be a whole count"),
    ({"hits_at_3": 1}, "must not decrease with k"),
    ({"hits_at_5": 11}, "nor exceed the 10 predictions"),
    ({"oov": 11}, "nor exceed the 10 predictions"),
    ({"recall": 0.2}, "unexpected \\['recall'\\]"),
    ({"tokens": None}, "tokens must be a finite non-negative number"),
])
def test_eval_sums_are_checked_by_name(change, message):
    sums = {**_sums(), **change}
    with pytest.raises(messages.MessageError, match=message) as err:
        eval_sums.check(sums, "device d7")
    assert str(err.value).startswith("device d7")
    del sums["oov"]
    with pytest.raises(messages.MessageError, match=r"missing \['oov'\]"):
        eval_sums.check(sums, "device d7")
    with pytest.raises(messages.MessageError, match="must be an object"):
        eval_sums.check([1, 2, 3], "device d7")  # a positional vector is not a report


def test_summed_sums_give_recall_loss_and_oov_worked_out_by_hand():
    total = eval_sums.add(_sums(), _sums(predictions=30, oov=3, h1=6, h3=8, h5=9, nll=12.0, tokens=24))
    s = eval_sums.summary(total)
    assert s["predictions"] == 40 and s["recall_at_1"] == pytest.approx(8 / 40)
    assert s["recall_at_3"] == pytest.approx(12 / 40) and s["recall_at_5"] == pytest.approx(14 / 40)
    assert s["oov_rate"] == pytest.approx(4 / 40) and s["token_loss"] == pytest.approx(1.0)
    assert s["perplexity"] == pytest.approx(math.e)


def _report(task, device, sums=None, **over):
    return {"eval_id": task.eval_id, "version": task.version, "sums": sums or {"candidate": _sums()}, **over}


def test_one_report_per_device_malformed_ones_refused_naming_the_device_and_nothing_below_the_minimum():
    task = EvalTask("e1", "0002", None)
    task.given |= {"d1", "d2", "d3"}
    with pytest.raises(messages.MessageError, match="device d9: was not given evaluation e1"):
        task.accept("d9", _report(task, "d9"))
    with pytest.raises(messages.MessageError, match="device d1: evaluation 'old' is not the open one"):
        task.accept("d1", _report(task, "d1", eval_id="old"))
    task.accept("d1", _report(task, "d1"))
    with pytest.raises(messages.MessageError, match="device d1: already reported for evaluation e1"):
        task.accept("d1", _report(task, "d1"))
    with pytest.raises(messages.MessageError, match=r"device d2: expected sums for \['candidate'\]"):
        task.accept("d2", _report(task, "d2", sums={"candidate": _sums(), "latest": _sums()}))
    with pytest.raises(messages.MessageError, match="device d2: already reported"):  # a refused report was its one
        task.accept("d2", _report(task, "d2"))
    with pytest.raises(messages.MessageError, match="device d3, sums for the candidate version: hits at 1/3/5"):
        task.accept("d3", _report(task, "d3", sums={"candidate": _sums(h5=99)}))
    with pytest.raises(TooFewDevices, match="1 devices reported sums, fewer than the minimum of 2"):
        task.release(2)
    assert task.release(1) == {"devices": 1, "candidate": {k: float(v) for k, v in _sums().items()}}


def test_a_device_that_predicted_nothing_does_not_count_toward_the_minimum():
    task = EvalTask("e1", "0002", None)
    task.given |= {"d1", "d2"}
    task.accept("d1", _report(task, "d1"))
    task.accept("d2", _report(task, "d2", sums={"candidate": _sums(0, 0, 0, 0, 0, 0.0, 0)}))
    assert task.contributing() == ["d1"]
    with pytest.raises(TooFewDevices):
        task.release(2)


@pytest.mark.parametrize("r1, latest_r1, promoted", [(0.100, 0.104, True), (0.100, 0.106, False), (0.2, 0.1, True)])
def test_the_promotion_rule(r1, latest_r1, promoted):
    d = promotion.decide(r1, "0001", latest_r1, 0.5)  # held back only more than 0.5 points below
    assert d.promoted is promoted and d.details["latest"] == "0001"
    assert promotion.decide(None, None, None, 0.5) == promotion.Decision(True, "first version")


def _device(ev, device_id, sums_by_role):
    task = ev.task_for(device_id)
    header = {"device_id": device_id, "eval_id": task["eval_id"], "version": task["version"], "sums": sums_by_role}
    return messages.unpack(ev.report(messages.pack(header), lambda d: None))[0]


def _evaluation(tmp_path, min_devices):
    server = tmp_path / "server"
    return LiveEvaluation(server / "models", server / "evals", min_devices=min_devices, deadline=30.0,
                          threshold_points=0.5)


def _run_in_thread(ev, version):
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=ev.run(version)))
    thread.start()
    while ev.task is None:
        thread.join(0.01)
    return thread, out


def test_enough_reports_decide_against_latest_record_it_and_write_the_result_for_the_report(tmp_path):
    from eval.report_load import load_eval

    models = tmp_path / "server" / "models"
    publish_random(models)
    publish_random(models, seed=1, round_num=2, promote=False)
    ev = _evaluation(tmp_path, 2)
    thread, out = _run_in_thread(ev, "0002")
    assert ev.task.baseline == "0001"
    assert _device(ev, "d1", {"candidate": _sums(h1=1), "latest": _sums(h1=3)})["accepted"]
    assert ev.task_for("d1") is None  # answered: no second task
    assert _device(ev, "d2", {"candidate": _sums(h1=1), "latest": _sums(h1=3)})["accepted"]
    thread.join(30)
    result = out["result"]
    assert result["devices"] == 2 and result["recall_at_1"] == pytest.approx(0.1)
    decision = registry.read_registry(models)["decisions"]["0002"]
    assert decision["promoted"] is False and "20.00 points below 0001" in decision["reason"]
    assert decision["live"] is True and registry.read_registry(models)["latest"] == "0001" and ev.latest == "0001"
    loaded = load_eval(tmp_path / "server" / "evals" / "0002.json")
    assert loaded.version == "0002" and loaded.promoted is False and loaded.devices == 2
    assert json.loads((tmp_path / "server" / "evals" / "0002.json").read_text())["live"]["latest"] == "0001"


def test_below_the_minimum_nothing_is_released_nor_decided(tmp_path):
    models = tmp_path / "server" / "models"
    publish_random(models, promote=False)
    ev = _evaluation(tmp_path, 3)
    ev.deadline = 1.0
    thread, out = _run_in_thread(ev, "0001")
    assert _device(ev, "d1", {"candidate": _sums()})["accepted"]
    assert _device(ev, "d2", {"candidate": _sums()})["accepted"]
    thread.join(30)
    assert out["result"] is None and ev.task is None
    assert registry.undecided(models) == ["0001"] and not (tmp_path / "server" / "evals").exists()
    refused = _device_late(ev)
    assert refused["accepted"] is False and "no evaluation is open" in refused["reason"]


def _device_late(ev):
    header = {"device_id": "d3", "eval_id": "x", "version": "0001", "sums": {"candidate": _sums()}}
    return messages.unpack(ev.report(messages.pack(header), lambda d: None))[0]
