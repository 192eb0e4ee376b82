"""The ablation table: built from two runs' evaluations (bench/ablation.py) and shown by the report."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from eval import ablation
from eval.report import render_html
from eval.report_load import load_report_data
from tests.conftest import REPO
from tests.eval.test_report import FIXTURE, terminal_text


def _bench():
    spec = importlib.util.spec_from_file_location("ablation_bench", REPO / "bench" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    spec.loader.exec_module(module)
    return module


def _result(r1, **extra):
    return {"recall_at_1": r1, "recall_at_3": 2 * r1, "recall_at_5": 3 * r1, "oov_rate": 0.01, "predictions": 100,
            **extra}


def test_rows_take_each_step_from_the_right_run():
    plain = _result(0.05, products={"lstm_personal": _result(0.07), "product": _result(0.09)})
    pretrained = _result(0.08, products={"lstm_personal": _result(0.10), "product": _result(0.12)},
                         baselines={"unigram": _result(0.03), "ngram": _result(0.10),
                                    "centralized_lstm": _result(0.076)})
    rows = {r["row"]: r["recall_at_1"] for r in _bench().rows(plain, pretrained)}
    assert list(rows.values()) == [0.05, 0.07, 0.09, 0.12, 0.12, 0.03, 0.10, 0.076]


def test_without_published_ngrams_that_row_is_empty():
    plain = _result(0.05, products={"product": _result(0.07)})
    rows = _bench().rows(plain, _result(0.08))
    assert rows[1]["recall_at_1"] == 0.07 and rows[2]["recall_at_1"] is None and rows[3]["recall_at_1"] is None


def test_report_shows_the_ablation_when_present(tmp_path):
    server = tmp_path / "server"
    shutil.copytree(FIXTURE, server)
    assert "ablation on" not in terminal_text(load_report_data(server))
    record = {"corpus": "shakespeare", "devices": 100, "predictions": 24000,
              "rows": [{"row": "global LSTM alone", "recall_at_1": 0.056, "recall_at_3": 0.13, "recall_at_5": None}]}
    (server / ablation.FILE).write_text(json.dumps(record))
    out = terminal_text(load_report_data(server))
    assert "ablation on shakespeare" in out and "global LSTM alone │     5.6% │    13.0% │        –" in out
    assert "<td>global LSTM alone</td><td>5.6%</td><td>13.0%</td><td>–</td>" in render_html(load_report_data(server))
    (server / ablation.FILE).write_text("{not json")
    with pytest.raises(ablation.AblationError, match="ablation.json"):
        terminal_text(load_report_data(server))
