"""A device's client work (TensorFlow only) equals TFF's, and the server parts step TFF's state the same."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _examples(rng, n, config):
    ex = rng.integers(3, config.vocab_size, size=(n, config.sequence_length + 1)).astype(np.int32)
    ex[: n // 2, -4:] = 0  # padding, which the loss masks
    return ex


def test_device_updates_equal_tff_client_work_and_a_live_round_equals_a_simulated_one():
    from federated import training
    from federated.pretrain import tff_model_weights
    from federated.privacy import PrivacyConfig
    from federated.runtime import LocalRuntime
    from keyboard import client_work
    from lm.config import preset
    from lm.model import build_model, named_weights, trainable_names

    config = preset("tiny")
    train = training.TrainConfig(preset="tiny", clients_per_round=2, client_lr=0.5, batch_size=4, local_epochs=2,
                                 max_examples_per_client=64, server_optimizer="adam", server_lr=0.05, seed=3)
    rng = np.random.default_rng(0)
    data = [_examples(rng, 13, config), _examples(rng, 7, config)]
    start = named_weights(build_model(config, seed=11))
    settings = training.local_training(train)
    round_num = 4
    updates = [client_work.client_update(config, start, ex, settings, round_num=round_num) for ex in data]
    assert [u.weight for u in updates] == [26.0, 14.0]  # examples over both epochs, as TFF counts them
    assert all(u.metrics["tokens"] > 0 and u.metrics["loss_sum"] > 0 for u in updates)

    with LocalRuntime():
        process = training.build_process(config, train, privacy=PrivacyConfig())
        state = process.set_model_weights(process.initialize(), tff_model_weights(start, config))
        seed = client_work.shuffle_seed(settings, round_num)
        simulated = process.next(state, [training.client_dataset(ex, train, shuffle_seed=seed) for ex in data])
        parts = training.ServerParts(process, train, PrivacyConfig())
        order = trainable_names(config)
        live, _ = parts.apply(state, [[u.delta[name] for name in order] for u in updates], [u.weight for u in updates])
        sim_w = process.get_model_weights(simulated.state)
        live_w = process.get_model_weights(live)
        start_w = process.get_model_weights(state)
    for a, b in zip(sim_w.trainable, live_w.trainable):
        # float32 sums in another order; the server's Adam divides each step by sqrt(v), so where a
        # gradient is near zero that noise moves a weight by up to ~1e-5 (one of 4,096 did, 1.4e-5)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(sim_w.trainable, start_w.trainable))
    assert moved > 1e-3  # the round changed the model, so the comparison means something
    # TFF's own client metrics agree with the device's sums
    tff_tokens = simulated.metrics["client_work"]["train"]["num_tokens"]
    assert tff_tokens == pytest.approx(sum(u.metrics["tokens"] for u in updates))


def test_a_non_finite_update_is_zeroed_and_weighs_nothing():
    from keyboard import client_work
    from lm.config import preset
    from lm.model import build_model, named_weights

    config = preset("tiny")
    weights = named_weights(build_model(config, seed=1))
    weights["embedding/embeddings"] = weights["embedding/embeddings"] * np.float32(np.inf)
    settings = client_work.LocalTraining(client_lr=0.5, client_clip_norm=1.0, local_epochs=1, batch_size=4,
                                         max_examples_per_client=64, seed=0)
    update = client_work.client_update(config, weights, _examples(np.random.default_rng(1), 5, config), settings,
                                       round_num=1)
    assert update.weight == 0.0
    assert all(not d.any() for d in update.delta.values())


def test_a_devices_example_order_depends_on_its_shuffle_seed_alone():
    """A global TensorFlow seed set elsewhere in the process (pretraining sets one) leaves the order alone."""
    import tensorflow as tf

    from common.messages import LocalTraining
    from keyboard.client_work import client_dataset

    settings = LocalTraining(client_lr=0.1, client_clip_norm=1.0, local_epochs=2, batch_size=4,
                             max_examples_per_client=100, seed=3, weighting="examples")
    examples = np.arange(60, dtype=np.int32).reshape(10, 6)  # row i starts with 6 * i

    def order(seed):
        return [int(row[0]) // 6 for x, _ in client_dataset(examples, settings, seed) for row in x.numpy()]

    before = order(11)
    assert sorted(before[:10]) == sorted(before[10:]) == list(range(10))  # each epoch is every example once
    assert before[:10] != before[10:] and order(12) != before  # anew each epoch, and per seed
    try:
        tf.keras.utils.set_random_seed(7)
        assert order(11) == before
    finally:
        tf.random.set_seed(None)
