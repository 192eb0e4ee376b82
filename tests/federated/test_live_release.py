"""Live counts: summed per (version, source), released only from enough devices; named evaluation sums."""

import json

import numpy as np
import pytest

from common import live_counts
from federated import evaluation, live_release
from keyboard.store import Device


def counts(words, shown_at_1=0, shown_at_3=0, start_at_1=0, start_at_3=0, accepted=0, modified=0, letters=0,
           letters_saved=0):
    return dict(words=words, shown_at_1=shown_at_1, shown_at_3=shown_at_3, start_at_1=start_at_1,
                start_at_3=start_at_3, accepted=accepted, modified=modified, letters=letters,
                letters_saved=letters_saved)


A = counts(10, shown_at_1=4, shown_at_3=6, start_at_1=2, start_at_3=3, accepted=5, modified=1, letters=40,
           letters_saved=12)
B = counts(30, shown_at_1=6, shown_at_3=12, start_at_1=3, start_at_3=9, accepted=9, modified=0, letters=120,
           letters_saved=18)


def test_release_needs_the_minimum_of_devices_that_finished_words():
    totals: live_release.Totals = {}
    live_release.add_device(totals, {"typed": {"0002": A}, "replayed": {"0001": B}})
    live_release.add_device(totals, {"typed": {"0002": B, "0003": counts(0)}})  # 0003: no finished word
    released = live_release.release(totals, 2, origin="test")
    typed = released["0002"]["typed"]
    assert typed["devices"] == 2 and typed["counts"] == live_counts.add(A, B)
    s = typed["summary"]  # by hand: 40 words, 10 first-chip, 18 on chips, 160 letters, 30 saved, 1 of 14 modified
    assert s["words"] == 40
    assert s["impression_recall_at_1"] == pytest.approx(10 / 40)
    assert s["impression_recall_at_3"] == pytest.approx(18 / 40)
    assert s["start_recall_at_3"] == pytest.approx(12 / 40)
    assert s["acceptance_rate"] == pytest.approx(14 / 40)
    assert s["keystroke_savings"] == pytest.approx(30 / 160)
    assert s["modified_after_acceptance"] == pytest.approx(1 / 14)
    assert released["0001"]["replayed"] == {"source": "replayed", "devices": 1, "origin": "test",
                                            "created": typed["created"],
                                            "withheld": "withheld: 1 devices < minimum 2"}
    assert "0003" not in released


def test_a_withheld_entry_never_hides_figures_released_before(tmp_path):
    totals: live_release.Totals = {("0002", "typed"): (2, A)}
    live_release.record(tmp_path, live_release.release(totals, 2, origin="first"), 2)
    live_release.record(tmp_path, live_release.release({("0002", "typed"): (1, B)}, 2, origin="smaller"), 2)
    data = live_release.load(tmp_path)
    assert data["versions"]["0002"]["typed"]["origin"] == "first"
    assert data["versions"]["0002"]["typed"]["counts"] == A
    live_release.record(tmp_path, live_release.release({("0002", "typed"): (3, B)}, 2, origin="newer"), 2)
    assert live_release.load(tmp_path)["versions"]["0002"]["typed"]["counts"] == B


def test_figures_prefer_typed_then_replayed():
    versions = live_release.release({("0002", "typed"): (1, A), ("0002", "replayed"): (2, B),
                                     ("0003", "typed"): (2, A)}, 2, origin="t")
    assert live_release.figures(versions, "0002")["source"] == "replayed"  # typed withheld
    assert live_release.figures(versions, "0003")["source"] == "typed"
    assert live_release.figures(versions, "0004") is None


def test_a_damaged_live_metrics_file_is_refused_naming_it(tmp_path):
    path = tmp_path / live_release.LIVE_FILE
    path.write_text(json.dumps({"versions": {"0002": {"typed": {"counts": {**A, "accepted": 11}}}}}))
    with pytest.raises(live_release.LiveMetricsError, match=r"live_metrics.json.*0002.*accepted \(11\) exceeds words"):
        live_release.load(tmp_path)


def _device(tmp_path, name, live):
    with Device(tmp_path / name, create=True) as device:
        for source, per_version in live.items():
            for version, c in per_version.items():
                device.add_live_counts(version, c, source=source)
        return evaluation._live(device)


def _tree_sum(values):
    """What TFF's ``federated_sum`` of the struct does, in numpy (the slow test runs TFF itself)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _tree_sum([v[k] for v in values]) for k in first}
    return np.sum(values, axis=0)


def test_named_live_sums_are_padded_to_one_struct_and_released_by_name(tmp_path):
    devices = [_device(tmp_path, f"d{i}", live) for i, live in enumerate((
        {"typed": {"0002": A}}, {"typed": {"0002": B}, "replayed": {"0001": A}}, {"typed": {"0003": counts(0)}}))]
    assert list(devices[1]) == ["0002/typed", "0001/replayed"]
    assert dict(devices[0]["0002/typed"]) == {**A, "devices": 1.0}
    assert devices[2] == {}  # no finished word: contributes nothing
    contributions = [evaluation.Sums(own=i, live=live) for i, live in enumerate(devices)]
    evaluation._pad_live(contributions)
    assert [list(c["live"]) for c in contributions] == [["0001/replayed", "0002/typed"]] * 3
    total = _tree_sum([c["live"] for c in contributions])
    assert total["0002/typed"]["devices"] == 2 and total["0002/typed"]["letters_saved"] == 30
    assert total["0001/replayed"]["devices"] == 1


def test_aggregate_reads_the_summed_struct_by_name():
    hist = np.zeros(20)
    hist[[2, 4]] = 1  # two devices: recall@1 in [.10, .15) and [.20, .25)
    zeros = {name: 0.0 for name in evaluation._PERSONAL_FIELDS}
    total = {"own": {"predictions": 40.0, "oov": 4.0, "hits_at_1": 8.0, "hits_at_3": 16.0, "hits_at_5": 20.0,
                     "tokens": 50.0, "token_nll": 100.0},
             "devices": 2.0, "recall_at_1_histogram": hist, "personalization": zeros,
             "baselines": {"unigram": {"predictions": 40.0, "oov": 0.0, "hits_at_1": 4.0, "hits_at_3": 4.0,
                                       "hits_at_5": 10.0}},
             "live": {"0002/typed": {**A, "devices": 2.0}, "0002/replayed": {**B, "devices": 1.0}}}
    result = evaluation.aggregate(total, minimum=2)
    assert result["devices"] == 2 and result["predictions"] == 40
    assert (result["recall_at_1"], result["recall_at_3"], result["recall_at_5"]) == (0.2, 0.4, 0.5)
    assert result["oov_rate"] == 0.1 and result["token_loss"] == 2.0
    assert result["perplexity"] == pytest.approx(np.exp(2.0))
    assert result["baselines"]["unigram"]["recall_at_5"] == 0.25
    assert result["products"] == {} and "personalization" not in result
    assert result["per_device_recall_at_1"]["histogram"]["counts"][2] == 1
    assert result["live"]["0002"]["typed"]["counts"] == A
    assert result["live"]["0002"]["replayed"]["withheld"] == "withheld: 1 devices < minimum 2"
