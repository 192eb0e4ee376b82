"""The restructured training paths compute what the plain formulation computes, gradients included.

``ProjectedLSTM`` (input projection hoisted out of the loop, one tanh for all gates, a
hand-written backward pass) against ``keras.layers.RNN`` over the same cell's one-step ``call``;
the softmax-based cross-entropy against TensorFlow's fused kernel.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from lm.model import ProjectedLSTM, ProjectedLSTMCell, sparse_softmax_cross_entropy  # noqa: E402


def _layers(cifg: bool, units: int = 7, proj: int = 5, in_dim: int = 5):
    fast = ProjectedLSTM(ProjectedLSTMCell(units, proj, cifg=cifg, seed=1, name="cell"), name="rnn")
    fast.build((None, None, in_dim))
    rng = np.random.default_rng(2)
    for v in fast.cell.weights:  # away from the initial values, so every gate matters
        v.assign(v + rng.normal(0, 0.4, v.shape).astype(np.float32))
    reference = tf.keras.layers.RNN(fast.cell, return_sequences=True)  # the same (built) cell and weights
    return fast, reference


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("cifg", [True, False], ids=["cifg", "lstm"])
def test_sequence_layer_matches_keras_rnn_over_the_cell(cifg, graph):
    fast, reference = _layers(cifg)
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(3, 6, 5)).astype(np.float32))
    w = tf.constant(rng.normal(size=(3, 6, 5)).astype(np.float32))

    def value_and_grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x)
            loss = tf.reduce_sum(out * w)
        return [out, *tape.gradient(loss, [x, *fast.cell.weights])]

    fast_fn, ref_fn = (tf.function(value_and_grads), tf.function(value_and_grads)) if graph else (value_and_grads,) * 2
    got, want = fast_fn(fast), ref_fn(reference)
    assert [v.name.split("/")[-1] for v in fast.cell.weights] == ["kernel:0", "bias:0", "projection:0"]
    for name, a, b in zip(["h", "d_x", "d_kernel", "d_bias", "d_projection"], got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-6, rtol=1e-5, err_msg=name)


def test_one_time_step_and_an_empty_batch():
    fast, reference = _layers(True)
    for shape in [(2, 1, 5), (0, 4, 5)]:
        x = tf.ones(shape)
        np.testing.assert_allclose(fast(x).numpy(), reference(x).numpy(), atol=1e-6)


def test_cross_entropy_matches_tensorflow_value_and_gradient():
    rng = np.random.default_rng(4)
    logits = tf.constant((rng.normal(size=(40, 300)) * rng.choice([0.1, 3.0, 30.0], size=(40, 1))).astype(np.float32))
    labels = tf.constant(rng.integers(0, 300, size=40).astype(np.int32))
    weights = tf.constant(rng.random(40).astype(np.float32))

    def value_and_grad(ce):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = ce(logits, labels)
            total = tf.reduce_sum(loss * weights)
        return loss, tape.gradient(total, logits)

    loss, grad = value_and_grad(sparse_softmax_cross_entropy)
    want_loss, want_grad = value_and_grad(
        lambda logits, y: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    np.testing.assert_allclose(loss.numpy(), want_loss.numpy(), rtol=1e-5, atol=3e-7)
    np.testing.assert_allclose(grad.numpy(), want_grad.numpy(), atol=1e-7)
    assert np.isfinite(loss.numpy()).all() and loss.numpy().max() > 100  # the 30x rows: no overflow, no log(0)
