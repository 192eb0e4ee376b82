"""One real TFF round equals the example-weighted mean of client updates computed by hand."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt


def _client_update_by_hand(config, w0, x, y, lr, batch_size, clip_norm):
    """SGD with global-norm clipping over the client's batches in order, from ``w0``."""
    from lm.model import MaskedCrossEntropy, build_model

    model = build_model(config)
    for var, value in zip(model.trainable_weights, w0):
        var.assign(value)
    loss_fn = MaskedCrossEntropy()
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, model.trainable_weights), clip_norm)
        for var, g in zip(model.trainable_weights, grads):
            var.assign_sub(lr * tf.convert_to_tensor(g))
    return [v.numpy() for v in model.trainable_weights]


def test_one_round_is_the_example_weighted_mean_of_client_updates(runtime):
    from federated import training
    from lm.config import ModelConfig

    config = ModelConfig(vocab_size=12, embedding_dim=4, lstm_units=5, sequence_length=6)
    train = training.TrainConfig(server_optimizer="sgdm", server_lr=1.0, server_momentum=0.0, client_lr=0.3,
                                 batch_size=2, client_clip_norm=0.05)  # small enough that clipping happens
    process = training.build_process(config, train)
    state = process.initialize()
    w0 = [np.asarray(w) for w in process.get_model_weights(state).trainable]

    rng = np.random.default_rng(7)
    sizes = [1, 3, 6]  # different example counts so the weighting matters
    clients = []
    for n in sizes:
        seq = rng.integers(1, 12, size=(n, 7)).astype(np.int32)
        seq[:, -2:] = 0 if n == 3 else seq[:, -2:]  # one client has padding
        clients.append((seq[:, :-1], seq[:, 1:]))
    data = [tf.data.Dataset.from_tensor_slices(c).batch(train.batch_size) for c in clients]

    output = process.next(state, data)
    got = [np.asarray(w) for w in process.get_model_weights(output.state).trainable]

    updates = [
        [wi - w for wi, w in zip(
            _client_update_by_hand(config, w0, x, y, train.client_lr, train.batch_size, train.client_clip_norm), w0)]
        for x, y in clients
    ]
    total = sum(sizes)
    expected = [w + sum(n * u[i] for n, u in zip(sizes, updates)) / total for i, w in enumerate(w0)]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(g, w) for g, w in zip(got, w0))  # the round did move the model
    assert training.train_metrics(output.metrics)["num_examples"] == total
