"""The keystroke-latency benchmark's machinery on a tiny setup: replay, cold start, recall, the JSON line.

No timing is asserted: only that every figure is there, has the right type and means what it says.
"""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import suggest_latency as bench  # noqa: E402

from tests.keyboard.helpers import publish_random  # noqa: E402

FIGURES = ("p50_ms", "p99_ms", "cold_start_s", "model_bytes", "recall_at_1_float", "recall_at_1_ondevice")


def test_keystrokes_are_whole_sentences_typed_key_by_key():
    assert bench.keystrokes(["ab c", "de", "fgh"], 5) == ["a", "ab", "ab ", "ab c", "d", "de"]
    with pytest.raises(SystemExit, match="only 3 keystrokes"):
        bench.keystrokes(["abc"], 10)


def test_every_figure_of_one_preset_on_a_tiny_setup(tmp_path, seeded_home):
    version = publish_random(tmp_path / "models", seed=2)
    sentences = bench.heldout_sentences(seeded_home, 40)
    assert len(sentences) == 40
    setup = bench.Setup("tiny", version.path, bench.install_on_scratch_device(version.path, tmp_path / "device"),
                        bench.keystrokes(sentences, 80), sentences[:20], "random test weights")
    figures = bench.measure(setup, repeats=2, cold_runs=1)

    line = json.dumps({"presets": {"tiny": figures}})
    (parsed,) = json.loads(line)["presets"].values()
    for key in FIGURES:
        assert isinstance(parsed[key], (int, float)) and math.isfinite(parsed[key]) and parsed[key] >= 0, key
    assert parsed["model_file"] == "ondevice.npz"
    assert parsed["model_bytes"] == (version.path / "ondevice.npz").stat().st_size < parsed["float_model_bytes"]
    assert parsed["keystrokes"] == len(setup.replay) >= 80 and parsed["repeats"] == 2
    assert len(parsed["p99_ms_per_repeat"]) == 2 and len(parsed["cold_start_runs_s"]) == 1
    assert 0 <= parsed["recall_at_1_ondevice"] <= parsed["recall_at_3_ondevice"] <= 1
    assert parsed["recall_predictions"] == sum(len(s.split()) - 1 for s in setup.recall)


def test_cold_start_refuses_a_device_without_a_model(tmp_path):
    from keyboard.store import Device

    Device(tmp_path / "empty", create=True).close()
    with pytest.raises(SystemExit, match="not the installed model"):
        bench.cold_start(tmp_path / "empty", "the ")


@pytest.mark.slow
def test_the_command_ends_with_one_json_line(tmp_path):
    """The whole benchmark on the tiny preset with its initial weights (seeds the bundled corpus)."""
    import subprocess

    run = subprocess.run([sys.executable, str(REPO / "bench" / "suggest_latency.py"), "--presets", "tiny", "--quick",
                          "--train-tokens", "0", "--keystrokes", "100", "--recall-sentences", "50",
                          "--cold-runs", "1", "--work", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    figures = json.loads(last)["presets"]["tiny"]
    assert set(FIGURES) <= set(figures) and figures["weights"].startswith("seeded initial weights")
