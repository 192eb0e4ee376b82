"""The keystroke-latency benchmark's machinery on a tiny setup: the product as the app builds it (LSTM,
published n-grams, personal model of a log) and the LSTM alone, replay, cold start, recall, the JSON line.

No timing is asserted: only that every figure is there, has the right type and means what it says.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import latency_setup as setup_of
import suggest_latency as bench

from keyboard.store import Device
from tests.keyboard.helpers import publish_random

FIGURES = ("p50_ms", "p99_ms", "cold_start_s", "model_bytes", "recall_at_1_float", "recall_at_1_ondevice")


def test_keystrokes_are_whole_sentences_typed_key_by_key():
    assert setup_of.keystrokes(["ab c", "de", "fgh"], 5) == ["a", "ab", "ab ", "ab c", "d", "de"]
    with pytest.raises(SystemExit, match="only 3 keystrokes"):
        setup_of.keystrokes(["abc"], 10)


def tiny_product_setup(tmp_path, home, *, ngrams: bool = True, log: bool = True) -> setup_of.Setup:
    """A random tiny model published with the n-gram table of ``home`` and installed on a device with a log."""
    from federated import registry
    from lm.config import ModelConfig

    random = publish_random(tmp_path / "random", seed=2)
    with np.load(random.path / "weights.npz") as npz:
        weights = dict(npz)
    version = registry.publish(tmp_path / "models", weights=weights,
                               config=ModelConfig.from_json((random.path / "model.json").read_text()),
                               tokenizer_proto=(random.path / "spm.model").read_bytes(), round_num=1, metrics={},
                               ngrams=setup_of.ngram_table(home) if ngrams else None)
    source = setup_of.busiest_device(home)
    with Device(home.device(source)) as device:
        sentences_of_source = device.sentences()
    sentences = setup_of.heldout_sentences(home, 40, skip=source)
    assert len(sentences) == 40 and not set(sentences) & set(sentences_of_source)
    device_dir = setup_of.install_on_scratch_device(version.path, tmp_path / "device",
                                                    sentences_of_source if log else [])
    return setup_of.Setup("tiny", version.path, device_dir, setup_of.keystrokes(sentences, 80), sentences[:20],
                          "random test weights")


def test_every_figure_of_the_product_and_the_lstm_on_a_tiny_setup(tmp_path, seeded_home):
    setup = tiny_product_setup(tmp_path, seeded_home)
    figures = bench.measure(setup, repeats=2, cold_runs=1)

    line = json.dumps({"presets": {"tiny": figures}})
    (parsed,) = json.loads(line)["presets"].values()
    for row in (parsed, parsed["lstm"]):
        for key in (*FIGURES[:3], "cpu_p99_ms", "cold_start_load_s"):
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]) and row[key] >= 0, key
        assert len(row["p99_ms_per_repeat"]) == 2 and len(row["cold_start_runs_s"]) == 1
    for key in (*FIGURES[3:], "recall_at_1_product", "ngrams_bytes"):
        assert isinstance(parsed[key], (int, float)) and math.isfinite(parsed[key]) and parsed[key] >= 0, key
    assert parsed["path"].endswith("ProductPredictor")
    assert parsed["timed"] == {"product_predictor": {"class": "ProductPredictor", "parts": list(bench.PARTS)},
                               "lstm_predictor": {"class": "ModelPredictor", "parts": []}}
    assert parsed["mix_over_lstm_p99"] == round(parsed["p99_ms"] / parsed["lstm"]["p99_ms"], 3)
    assert set(parsed["mix_weights"]) == set(bench.PARTS) and all(w > 0 for w in parsed["mix_weights"].values())
    assert parsed["log_sentences"] > 0 and set(parsed["ngram_counts"]) == {"1", "2", "3"}
    assert parsed["model_file"] == "ondevice.npz"
    assert parsed["model_bytes"] == (setup.version_dir / "ondevice.npz").stat().st_size < parsed["float_model_bytes"]
    assert parsed["keystrokes"] == len(setup.replay) >= 80 and parsed["repeats"] == 2
    assert 0 <= parsed["recall_at_1_ondevice"] <= parsed["recall_at_3_ondevice"] <= 1
    assert 0 <= parsed["recall_at_1_product"] <= parsed["recall_at_3_product"] <= 1
    assert parsed["recall_predictions"] == sum(len(s.split()) - 1 for s in setup.recall)


def test_the_timed_predictor_is_the_apps_three_part_product(tmp_path, seeded_home):
    """What is timed is ``load_predictor``'s product with all three parts, not the LSTM alone."""
    from keyboard.mix import ProductPredictor
    from keyboard.predictor import ModelPredictor, load_predictor

    setup = tiny_product_setup(tmp_path, seeded_home)
    product = bench.product_predictor(setup.device_dir)
    assert isinstance(product, ProductPredictor) and product.parts == bench.PARTS
    assert isinstance(product.lstm, ModelPredictor) and not product.ngrams.empty and not product.personal.empty
    assert type(load_predictor(setup.device_dir)) is type(product)
    assert isinstance(bench.lstm_predictor(setup.device_dir), ModelPredictor)
    # The product's suggestions are the mix's, which differ from the LSTM's alone somewhere in the replay.
    lstm = bench.lstm_predictor(setup.device_dir)
    assert any(product.suggest(t, 3) != lstm.suggest(t, 3) for t in setup.replay)


@pytest.mark.parametrize("missing", ["ngrams", "log"])
def test_a_product_without_ngrams_or_a_log_is_refused(tmp_path, seeded_home, missing):
    setup = tiny_product_setup(tmp_path, seeded_home, ngrams=missing != "ngrams", log=missing != "log")
    with pytest.raises(SystemExit, match="the product mixes"):
        bench.product_predictor(setup.device_dir)


def test_cold_start_refuses_a_device_without_a_model(tmp_path):
    from keyboard.store import Device

    Device(tmp_path / "empty", create=True).close()
    with pytest.raises(SystemExit, match="not the installed model"):
        bench.cold_start(tmp_path / "empty", "the ")


@pytest.mark.slow
def test_the_command_ends_with_one_json_line(tmp_path, capsys):
    """The whole benchmark on the tiny preset with its initial weights (seeds the bundled corpus).

    ``main`` runs in the test process (its cold starts still start processes of their own)."""
    bench.main(["--presets", "tiny", "--quick", "--train-tokens", "0", "--keystrokes", "100", "--recall-sentences",
                "50", "--cold-runs", "1", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    # exactly one JSON line, last
    assert [i for i, line in enumerate(lines) if line.startswith("{")] == [len(lines) - 1]
    figures = json.loads(lines[-1])["presets"]["tiny"]
    assert set(FIGURES) <= set(figures) and figures["weights"].startswith("seeded initial weights")
    assert figures["path"].endswith("ProductPredictor") and "p99_ms" in figures["lstm"]
