"""The training-FLOPs benchmark's machinery on the tiny preset: FLOP counts, peaks, timings, the JSON line.

No timing is asserted: only that every figure is there and means what it says.
"""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import train_flops as bench

from lm.config import preset


def test_flops_per_token_by_hand():
    # tiny: E=16, U=32, CIFG (3 gates), V=256
    assert bench.forward_flops_per_token(preset("tiny")) == {
        "input_projection": 2 * 16 * 96, "recurrent": 2 * 16 * 96, "projection": 2 * 32 * 16, "output": 2 * 16 * 256}
    assert bench.train_flops_per_token(preset("tiny")) == 3 * (3072 + 3072 + 1024 + 8192)
    assert bench.train_flops_per_token(preset("small")) == 3_760_128  # the docstring's 3.76 MFLOP


def test_peaks_are_positive_rates():
    assert bench.numpy_sgemm_gflops(n=64, repeats=1) > 0
    assert bench.tf_matmul_gflops(n=64, repeats=1) > 0
    for info in bench.blas_threading():
        assert info["num_threads"] >= 1


def test_keras_figures_on_a_tiny_model_with_the_baseline_from_git():
    from federated.training import TrainConfig
    from lm.model import build_model, named_weights

    config = preset("tiny")
    baseline = bench.model_module_at(bench.BASELINE_REV)
    if baseline is None:
        pytest.skip("no git history here")
    # the baseline is the same model: same weights by name and shape, so their rates compare
    assert {k: v.shape for k, v in named_weights(baseline.build_model(config)).items()} == \
        {k: v.shape for k, v in named_weights(build_model(config)).items()}
    fig = bench.keras_figures(config, TrainConfig(preset="tiny"), baseline, pairs=1, batches=2, log=print)
    assert fig["tokens"] == 2 * 16 * config.sequence_length
    for name in ("current", "baseline", "output_layer"):
        assert fig[name]["tokens_per_s"] > 0 and fig[name]["gflops"] > 0 and len(fig[name]["wall_s"]) == 1
    assert fig["speedup"] > 0 and 0 < fig["split"]["output_layer_flop_share"] < 1
    json.dumps(fig)


def test_random_examples_are_inputs_and_targets_without_specials():
    config = preset("tiny")
    examples = bench.random_examples(config, 5)
    assert examples.shape == (5, config.sequence_length + 1) and examples.min() >= 4
    assert examples.max() < config.vocab_size and not math.isnan(float(examples.mean()))


@pytest.mark.slow
def test_tff_figures_on_a_tiny_model():
    from federated.training import TrainConfig

    fig = bench.tff_figures(preset("tiny"), TrainConfig(preset="tiny"), None, pairs=1, batches=2, log=print)
    assert fig["current"]["tokens_per_s"] > 0 and fig["tokens"] == 2 * 16 * preset("tiny").sequence_length
    json.dumps(fig)
