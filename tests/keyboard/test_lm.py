"""The device's numpy model computes what the Keras model computes, one piece at a time."""

from __future__ import annotations

import numpy as np
import pytest

from keyboard.lm import NumpyLM
from lm.config import ModelConfig
from tokenizer.specials import BOS_ID


@pytest.mark.parametrize("cifg", [True, False])
def test_numpy_steps_match_keras_logits(cifg):
    from lm.model import assign_named_weights, build_model, named_weights

    config = ModelConfig(vocab_size=50, embedding_dim=6, lstm_units=7, cifg=cifg, sequence_length=9)
    model = build_model(config, seed=3)
    weights = named_weights(model)
    rng = np.random.default_rng(0)
    weights = {k: (v + rng.normal(0, 0.3, v.shape)).astype(np.float32) for k, v in weights.items()}  # not just init
    assign_named_weights(model, weights)
    pieces = rng.integers(4, 50, size=8).tolist()
    keras_logits = model(np.array([[BOS_ID, *pieces]], np.int32)).numpy()[0]  # [9, V]

    lm = NumpyLM({"cifg": cifg}, weights)
    hs, _ = lm.run_batch([pieces])
    assert np.allclose(lm.logits(hs[0]), keras_logits, atol=1e-4)
    logp, _ = lm.run(pieces)
    shifted = keras_logits - keras_logits.max(axis=1, keepdims=True)
    assert np.allclose(logp, shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), atol=1e-4)


def test_one_piece_step_equals_the_batched_step():
    rng = np.random.default_rng(1)
    e, u, v = 5, 4, 20
    lm = NumpyLM({"cifg": True}, {
        "embedding/embeddings": rng.normal(size=(v, e)).astype(np.float32),
        "rnn/cell/kernel": rng.normal(size=(2 * e, 3 * u)).astype(np.float32),
        "rnn/cell/bias": rng.normal(size=3 * u).astype(np.float32),
        "rnn/cell/projection": rng.normal(size=(u, e)).astype(np.float32),
        "output_bias": rng.normal(size=v).astype(np.float32),
    })
    h, c = rng.normal(size=(3, e)).astype(np.float32), rng.normal(size=(3, u)).astype(np.float32)
    bh, bc = lm.cell(np.array([7, 8, 9]), (h, c))
    for row, piece in enumerate((7, 8, 9)):
        oh, oc = lm.cell(piece, (h[row], c[row]))
        assert oh.shape == (e,) and np.allclose(oh, bh[row], atol=1e-6) and np.allclose(oc, bc[row], atol=1e-6)
