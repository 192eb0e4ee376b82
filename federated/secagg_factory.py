"""Secure aggregation in TFF: an aggregator whose masked sum goes through ``federated_sum``.

Why this shape. TFF 0.87's secure intrinsics do not run in the local C++ runtime (worker_binary
has no ``federated_secure_*``; TFF-0.87-NOTES §3), and a client computation there cannot call
Python. Masking in TF ops inside the client computation is possible, but inside
``process.next`` an aggregator sees only ``value@CLIENTS``: TFF clients are anonymous, so no
per-client secret (mask seeds from a key exchange) can reach it. Hence two parts:

* :class:`SecAggSumFactory` / :func:`secure_aggregator` *state* secure aggregation as TFF
  production does: clip and quantize on the client, ``tff.backends.mapreduce.
  federated_secure_modular_sum`` (the intrinsic TFF documents as Bonawitz et al.'s protocol),
  dequantize on the server. They compose like any factory: ``build_weighted_fed_avg(
  model_aggregator=secure_aggregator(...))``, TFF's ``clipping_factory`` and ``MeanFactory``,
  a DP factory's ``record_aggregation_factory`` (:func:`dp_secure_aggregator`).
* ``federated.secagg_round.SecureRounds`` runs such a process from its MapReduceForm, where the
  client phase is an ordinary federated computation that can take a second client input: each
  client's own mask seeds (from the key exchange in ``federated.secagg``). Clients train, clip,
  quantize and mask inside worker_binary; only ``federated_sum`` of the masked vectors comes
  back; the server unmasks it in numpy and the form's ``update`` applies it.

The masks are ChaCha20 keystreams written here in TF ops (uint32 add/xor/rotate), bit-identical
to ``cryptography``'s ChaCha20 that the server uses to remove masks (tested). TF's own
``stateless_uniform`` (Philox) is ~8x faster but is a statistical generator without a
cryptographic security claim, which Bonawitz et al.'s proof needs from the PRG.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from common.errors import ConfigError
from federated import secagg

_SIGMA = np.frombuffer(b"expand 32-byte k", dtype="<u4")  # ChaCha20's constant words


@dataclass(frozen=True)
class SecAggConfig:
    """Secure aggregation settings for weighted FedAvg; one place, validated once."""

    clip: float = 1.0  # each client's model delta is clipped to this L2 norm (or range, see clip_mode)
    clip_mode: str = "l2"  # "l2": TFF's L2 clipping first; "range": per-coordinate [-clip, clip] only
    max_clients: int = 10  # most clients summed in one round: fixes the scale so the sum never wraps mod 2^32
    max_weight: float = 512.0  # largest client weight (examples seen in a round): range of the weight sum
    threshold_fraction: float = 0.5  # t = floor(fraction * K) + 1 clients must survive (K - t dropouts tolerated)
    stochastic_rounding: bool = False  # unbiased rounding; deterministic is reproducible and within K/(2s)

    def __post_init__(self) -> None:
        if self.clip_mode not in ("l2", "range"):
            raise ConfigError(f"clip_mode must be 'l2' or 'range', got {self.clip_mode!r}")
        if not self.clip > 0 or not self.max_weight > 0 or self.max_clients < 2:
            raise ConfigError(f"clip and max_weight must be positive and max_clients >= 2, got "
                             f"{self.clip}, {self.max_weight}, {self.max_clients}")
        if not 0.5 <= self.threshold_fraction < 1:
            raise ConfigError(f"threshold_fraction must be in [0.5, 1), got {self.threshold_fraction}")

    def threshold(self, n: int) -> int:
        return min(n, math.floor(self.threshold_fraction * n) + 1)


def leaves(value) -> list:
    """Tensor leaves in type order, whether TFF hands a value over as a ``Struct`` or a container."""
    return tff.structure.flatten(value) if isinstance(value, tff.structure.Struct) else tf.nest.flatten(value)


def _pack(like, flat: list):
    if isinstance(like, tff.structure.Struct):
        return tff.structure.pack_sequence_as(like, flat)
    return tf.nest.pack_sequence_as(like, flat)


# --- ChaCha20 in TF ops --------------------------------------------------------------------


def _rotl(x: tf.Tensor, n: int) -> tf.Tensor:
    return tf.bitwise.bitwise_or(tf.bitwise.left_shift(x, tf.constant(n, tf.uint32)),
                                 tf.bitwise.right_shift(x, tf.constant(32 - n, tf.uint32)))


def _quarter(s: list, a: int, b: int, c: int, d: int) -> None:
    s[a] += s[b]; s[d] = _rotl(tf.bitwise.bitwise_xor(s[d], s[a]), 16)  # noqa: E702
    s[c] += s[d]; s[b] = _rotl(tf.bitwise.bitwise_xor(s[b], s[c]), 12)  # noqa: E702
    s[a] += s[b]; s[d] = _rotl(tf.bitwise.bitwise_xor(s[d], s[a]), 8)  # noqa: E702
    s[c] += s[d]; s[b] = _rotl(tf.bitwise.bitwise_xor(s[b], s[c]), 7)  # noqa: E702


def chacha20_keystream(key: tf.Tensor, length: int) -> tf.Tensor:
    """``length`` uint32 words of ChaCha20 (RFC 8439, zero nonce) under ``key`` (8 uint32 words).

    All blocks are computed at once, one lane per block counter, so it is 20 rounds of
    element-wise uint32 ops over ``length / 16`` lanes; equals ``secagg.expand``.
    """
    blocks = -(-length // 16)
    counter = tf.range(blocks, dtype=tf.int64)
    ones = tf.ones([blocks], tf.uint32)
    init = ([ones * int(c) for c in _SIGMA] + [ones * key[i] for i in range(8)]
            + [tf.cast(counter, tf.uint32)] + [tf.zeros([blocks], tf.uint32)] * 3)
    s = list(init)
    for _ in range(10):
        _quarter(s, 0, 4, 8, 12); _quarter(s, 1, 5, 9, 13); _quarter(s, 2, 6, 10, 14); _quarter(s, 3, 7, 11, 15)  # noqa: E702
        _quarter(s, 0, 5, 10, 15); _quarter(s, 1, 6, 11, 12); _quarter(s, 2, 7, 8, 13); _quarter(s, 3, 4, 9, 14)  # noqa: E702
    return tf.reshape(tf.stack([x + y for x, y in zip(s, init)], axis=1), [-1])[:length]


def apply_masks_tf(vector: tf.Tensor, keys: tf.Tensor, signs: tf.Tensor) -> tf.Tensor:
    """``vector + sum_j signs[j] * ChaCha20(keys[j]) mod 2^32`` in int64 (as ``secagg.apply_masks``)."""
    length = vector.shape[0]

    def add_one(acc, key_and_sign):
        key, sign = key_and_sign
        stream = tf.cast(chacha20_keystream(key, length), tf.int64)
        return tf.math.floormod(acc + tf.cast(sign, tf.int64) * stream, secagg.MODULUS)

    return tf.foldl(add_one, (keys, signs), initializer=tf.math.floormod(vector, secagg.MODULUS))


# --- The aggregator ------------------------------------------------------------------------


class SecAggSumFactory(tff.aggregators.UnweightedAggregationFactory):
    """Sum of float structures by secure modular sum mod 2^32, clipped and quantized per coordinate.

    Each coordinate is clipped to [-bound, bound] and scaled and rounded as ``secagg.Quantizer``
    does (power-of-two scale chosen so ``max_clients`` clients cannot wrap the sum). Measurement:
    how many clients had a coordinate clipped.
    """

    def __init__(self, bound: float, max_clients: int, *, stochastic: bool = False):
        self._quantizer = secagg.Quantizer(bound, max_clients, stochastic)

    @property
    def quantizer(self) -> secagg.Quantizer:
        return self._quantizer

    def create(self, value_type) -> tff.templates.AggregationProcess:
        if not tff.types.is_structure_of_floats(value_type):
            raise TypeError(f"SecAggSumFactory sums floats; got {value_type}")
        q = self._quantizer
        encoded_type = tff.types.structure_from_tensor_type_tree(
            lambda t: tff.TensorType(np.int64, t.shape), value_type)

        @tff.tensorflow.computation(value_type)
        def encode(value):
            flat = leaves(value)
            clipped = tf.reduce_any([tf.reduce_any(tf.abs(x) > q.bound) for x in flat])
            out = []
            for x in flat:
                y = tf.clip_by_value(tf.cast(x, tf.float64), -q.bound, q.bound) * q.scale
                y = tf.floor(y + tf.random.uniform(tf.shape(y), dtype=tf.float64)) if q.stochastic else tf.round(y)
                out.append(tf.math.floormod(tf.cast(y, tf.int64), secagg.MODULUS))
            return _pack(value, out), tf.cast(clipped, tf.int32)

        leaf_dtypes = [spec.dtype for spec in tf.nest.flatten(tff.types.type_to_tf_tensor_specs(value_type))]

        @tff.tensorflow.computation(encoded_type)
        def decode(total):
            out = []
            for x, dtype in zip(leaves(total), leaf_dtypes):
                x = tf.math.floormod(x, secagg.MODULUS)
                signed = tf.where(x >= secagg.MODULUS // 2, x - secagg.MODULUS, x)
                out.append(tf.cast(tf.cast(signed, tf.float64) / q.scale, dtype))
            return _pack(total, out)

        @tff.federated_computation()
        def init_fn():
            return tff.federated_value((), tff.SERVER)

        @tff.federated_computation(init_fn.type_signature.result, tff.FederatedType(value_type, tff.CLIENTS))
        def next_fn(state, value):
            encoded, clipped = tff.federated_map(encode, value)
            summed = tff.backends.mapreduce.federated_secure_modular_sum(encoded, secagg.MODULUS)
            measurements = tff.federated_zip(collections.OrderedDict(secagg_clipped_clients=tff.federated_sum(clipped)))
            return tff.templates.MeasuredProcessOutput(state, tff.federated_map(decode, summed), measurements)

        return tff.templates.AggregationProcess(init_fn, next_fn)


def secure_aggregator(config: SecAggConfig, *, weighted: bool = True):
    """The model aggregator for ``build_weighted_fed_avg`` (or ``build_unweighted_fed_avg``).

    Weighted: clients send weight * delta and weight through two secure sums, the server
    divides. With ``clip_mode="l2"`` TFF's ``clipping_factory`` clips each delta to L2 norm
    ``clip`` first, which also bounds every coordinate by ``clip``.
    """
    stochastic = config.stochastic_rounding
    if weighted:
        inner = tff.aggregators.MeanFactory(
            value_sum_factory=SecAggSumFactory(config.clip * config.max_weight, config.max_clients,
                                               stochastic=stochastic),
            weight_sum_factory=SecAggSumFactory(config.max_weight, config.max_clients, stochastic=stochastic),
        )
    else:
        inner = tff.aggregators.UnweightedMeanFactory(
            value_sum_factory=SecAggSumFactory(config.clip, config.max_clients, stochastic=stochastic))
    return tff.aggregators.clipping_factory(config.clip, inner) if config.clip_mode == "l2" else inner


def dp_secure_aggregator(config: SecAggConfig, *, noise_multiplier: float, clients_per_round: int):
    """Gaussian DP (McMahan et al. 2018) whose clipped records are summed by secure aggregation.

    TFF's ``DifferentiallyPrivateFactory`` with the secure sum as its record aggregation: each
    client clips its delta to L2 norm ``clip``, the records are summed masked, and the server
    adds N(0, (clip * noise_multiplier)^2) to the unmasked sum and divides by
    ``clients_per_round``. Unweighted: use ``build_unweighted_fed_avg``.
    """
    import tensorflow_privacy as tfp

    query = tfp.NormalizedQuery(
        tfp.GaussianSumQuery(l2_norm_clip=config.clip, stddev=config.clip * noise_multiplier),
        denominator=float(clients_per_round),
    )
    records = SecAggSumFactory(config.clip, config.max_clients, stochastic=config.stochastic_rounding)
    return tff.aggregators.DifferentiallyPrivateFactory(query, record_aggregation_factory=records)
