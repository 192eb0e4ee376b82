"""Secure aggregation inside TFF: TF ChaCha20 = cryptography's, and FedAvg rounds equal plain ones."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow")

from federated import secagg  # noqa: E402

CLIP, MAX_WEIGHT, MAX_CLIENTS = 10.0, 64.0, 8


def test_tf_chacha20_is_bit_identical_to_cryptography():
    from federated.secagg_factory import apply_masks_tf, chacha20_keystream

    rng = np.random.default_rng(0)
    for length in (16, 1000, 4099):  # whole blocks and a ragged tail
        key = rng.integers(0, 2**32, size=8, dtype=np.uint64).astype(np.uint32)
        got = chacha20_keystream(tf.constant(key), length).numpy()
        np.testing.assert_array_equal(got, secagg.expand(key.astype("<u4").tobytes(), length))

    seeds = secagg.MaskSeeds(rng.integers(0, 2**32, size=(3, 8), dtype=np.uint64).astype(np.uint32),
                             np.array([1, -1, 1], np.int32))
    vector = rng.integers(0, 2**32, size=777, dtype=np.uint64).astype(np.uint32)
    got = apply_masks_tf(tf.constant(vector.astype(np.int64)), tf.constant(seeds.keys), tf.constant(seeds.signs))
    np.testing.assert_array_equal(got.numpy(), secagg.apply_masks(vector, seeds))


@pytest.fixture(scope="module")
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt


def _setup():
    from federated import training
    from lm.config import ModelConfig

    config = ModelConfig(vocab_size=12, embedding_dim=4, lstm_units=5, sequence_length=6)
    train = training.TrainConfig(server_optimizer="sgdm", server_lr=1.0, server_momentum=0.0, client_lr=0.3,
                                 batch_size=2)
    return config, train


def _client_data(sizes, seed=7):
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        seq = rng.integers(1, 12, size=(n, 7)).astype(np.int32)
        out.append(tf.data.Dataset.from_tensor_slices((seq[:, :-1], seq[:, 1:])).batch(2))
    return out


@pytest.fixture(scope="module")
def processes(runtime):
    """Plain weighted FedAvg and the same with the secure aggregator, as fedkb builds them."""
    from federated import training
    from federated.secagg_factory import SecAggConfig, secure_aggregator
    from federated.secagg_round import SecureRounds

    config, train = _setup()
    secure = SecAggConfig(clip=CLIP, max_clients=MAX_CLIENTS, max_weight=MAX_WEIGHT)
    plain = training.build_process(config, train)
    rounds = SecureRounds(training.build_process(config, train, model_aggregator=secure_aggregator(secure)), secure)
    return plain, rounds


def _weights(process, state):
    return [np.asarray(w) for w in process.get_model_weights(state).trainable]


def _mean_error_bound(clients, total_weight):
    """Weighted mean: numerator codes within K/(2 s) of s * sum(w * delta); integer weights are exact."""
    scale = secagg.Quantizer(CLIP * MAX_WEIGHT, MAX_CLIENTS).scale
    return clients / (2 * scale) / total_weight + 1e-6  # + float32 rounding of the model update


def test_secure_round_gives_the_plain_fedavg_model_up_to_quantization(processes):
    plain, rounds = processes
    sizes = [1, 3, 6, 2]
    data = _client_data(sizes)
    expected = plain.next(plain.initialize(), data)
    got = rounds.next(rounds.initialize(), data)
    w0 = _weights(plain, plain.initialize())
    bound = _mean_error_bound(len(sizes), sum(sizes))
    for e, g, w in zip(_weights(plain, expected.state), _weights(rounds, got.state), w0):
        np.testing.assert_allclose(g, e, rtol=0, atol=bound)
        assert not np.allclose(g, w)  # the round moved the model
    train = got.metrics["client_work"]["train"]
    assert train["num_examples"] == expected.metrics["client_work"]["train"]["num_examples"] == sum(sizes)
    assert got.metrics["aggregator"]["clipping"]["mean_value"]["secagg_clipped_clients"] == 0


def test_dropouts_up_to_tolerance_give_the_survivors_fedavg(processes):
    plain, rounds = processes
    sizes = [1, 3, 6, 2, 4]  # K = 5, t = 3: two dropouts tolerated
    data = _client_data(sizes, seed=8)
    # Client 1 vanishes after key sharing: its update is missing, its masks must be removed.
    # Client 3 trains and sends its masked update but never sends shares.
    got = rounds.next(rounds.initialize(), data, drop_after_sharing={1}, drop_during_unmasking={3})
    survivors = [0, 2, 3, 4]
    expected = plain.next(plain.initialize(), [data[i] for i in survivors])
    bound = _mean_error_bound(len(survivors), sum(sizes[i] for i in survivors))
    for e, g in zip(_weights(plain, expected.state), _weights(rounds, got.state)):
        np.testing.assert_allclose(g, e, rtol=0, atol=bound)


def test_beyond_tolerance_the_round_fails_naming_clients_and_threshold(processes):
    _, rounds = processes
    data = _client_data([2, 2, 2, 2, 2])
    names = ["dev-a", "dev-b", "dev-c", "dev-d", "dev-e"]
    with pytest.raises(secagg.SecAggError, match=r"masked input collection: 2 of 5 clients.*t=3.*dev-a, dev-c, dev-e"):
        rounds.next(rounds.initialize(), data, names=names, drop_after_sharing={0, 2, 4})
    with pytest.raises(secagg.SecAggError, match=r"unmasking: 2 of 3 clients.*t=3.*missing: dev-d"):
        rounds.next(rounds.initialize(), data, names=names, drop_after_sharing={0, 4}, drop_during_unmasking={3})


def test_only_server_placed_values_leave_the_client_phase(processes):
    import tensorflow_federated as tff

    _, rounds = processes
    result = rounds._client_phase.type_signature.result
    assert all(t.placement is tff.SERVER for t in result)  # the aggregates and the masked sum
    parameter = rounds._client_phase.type_signature.parameter
    assert [p.placement for p in parameter] == [tff.SERVER, tff.CLIENTS, tff.CLIENTS]  # seeds are client inputs


def test_dp_over_secure_sum_equals_dp_over_plain_sum(runtime):
    """Central DP with the secure sum as its record aggregation (noise 0: the means must agree)."""
    import tensorflow_federated as tff

    from federated import training
    from federated.optimizers import ClippedSGD
    from federated.secagg_factory import SecAggConfig, dp_secure_aggregator
    from federated.secagg_round import SecureRounds

    config, train = _setup()
    secure = SecAggConfig(clip=0.05, max_clients=MAX_CLIENTS, stochastic_rounding=True)  # small: clipping happens

    def build(aggregator):
        return tff.learning.algorithms.build_unweighted_fed_avg(
            training.model_fn_for(config, seed=train.seed), client_optimizer_fn=ClippedSGD(train.client_lr, 1.0),
            server_optimizer_fn=training.server_optimizer(train), model_aggregator=aggregator)

    plain = build(tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(0.0, 3, secure.clip))
    rounds = SecureRounds(build(dp_secure_aggregator(secure, noise_multiplier=0.0, clients_per_round=3)), secure)
    data = _client_data([2, 5, 3], seed=9)
    expected = plain.next(plain.initialize(), data)
    got = rounds.next(rounds.initialize(), data)
    scale = secagg.Quantizer(secure.clip, MAX_CLIENTS, stochastic=True).scale
    for e, g in zip(_weights(plain, expected.state), _weights(rounds, got.state)):
        np.testing.assert_allclose(g, e, rtol=0, atol=3 / scale / 3 + 1e-7)  # K/s over K clients, stochastic
