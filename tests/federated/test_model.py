"""Model shapes and parameter counts (TensorFlow, no TFF)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from lm.config import ModelConfig, preset  # noqa: E402
from lm.model import MaskedAccuracy, MaskedCrossEntropy, assign_named_weights, build_model, named_weights  # noqa: E402


@pytest.mark.parametrize("name,vocab,params", [("small", 8000, 635_456), ("gboard", 10_000, 1_422_250)])
def test_presets_shapes_and_parameter_counts(name, vocab, params):
    config = preset(name)
    assert config.vocab_size == vocab
    model = build_model(config)
    assert model.count_params() == params == config.parameter_count()
    logits = model(tf.zeros([2, 7], tf.int32))
    assert logits.shape == (2, 7, vocab)


def test_gboard_matches_hard_et_al():
    config = preset("gboard")
    assert (config.embedding_dim, config.lstm_units, config.cifg) == (96, 670, True)
    assert 1.3e6 < config.parameter_count() < 1.5e6  # "about 1.4M parameters"


def test_output_is_tied_to_input_embedding():
    model = build_model(ModelConfig(vocab_size=12, embedding_dim=4, lstm_units=3, sequence_length=5))
    names = [w.name for w in model.trainable_weights]
    assert sum("embedding" in n for n in names) == 1
    before = model(tf.constant([[1, 2, 3]]))
    model.embedding.embeddings.assign(model.embedding.embeddings * 2.0)
    after = model(tf.constant([[1, 2, 3]]))
    assert not np.allclose(before.numpy(), after.numpy())


def test_plain_lstm_has_four_gates():
    config = ModelConfig(vocab_size=20, embedding_dim=4, lstm_units=3, cifg=False)
    assert build_model(config).count_params() == config.parameter_count()
    assert config.parameter_count() == 20 * 4 + (4 + 4) * 4 * 3 + 4 * 3 + 3 * 4 + 20


@pytest.mark.parametrize("bad", [dict(vocab_size=0), dict(vocab_size=4), dict(vocab_size=100, lstm_units=0),
                                 dict(vocab_size=100, embedding_dim=True)])
def test_bad_sizes_raise_value_error(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")


def test_loss_and_accuracy_mask_padding():
    # Two positions, the second is padding: only the first counts.
    logits = tf.constant([[[0.0, 0.0, 5.0, 0.0], [9.0, 0.0, 0.0, 0.0]]])
    y = tf.constant([[2, 0]])
    expected = -np.log(np.exp(5.0) / (np.exp(5.0) + 3.0))
    # float32: a loss near 0 comes from a probability near 1, good to about an ulp of 1.0 (1.2e-7)
    assert MaskedCrossEntropy()(y, logits).numpy() == pytest.approx(expected, abs=2.5e-7)
    acc = MaskedAccuracy()
    acc.update_state(y, logits)
    assert acc.result().numpy() == 1.0
    acc.update_state(tf.constant([[1, 0]]), logits)
    assert acc.result().numpy() == 0.5


def test_named_weights_round_trip_between_instances():
    config = ModelConfig(vocab_size=12, embedding_dim=4, lstm_units=3, sequence_length=5)
    a, b = build_model(config), build_model(config)
    weights = named_weights(a)
    assert set(weights) == {"embedding/embeddings", "rnn/cell/kernel", "rnn/cell/bias", "rnn/cell/projection",
                            "output_bias"}
    assign_named_weights(b, weights)
    x = tf.constant([[1, 5, 7]])
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    weights["rnn/cell/kernel"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="rnn/cell/kernel"):
        assign_named_weights(b, weights, source="weights.npz")
