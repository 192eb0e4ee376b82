"""Private heavy hitters: the words many devices use, found with TFF's IBLT sketches.

Each device hands TFF its ``m`` most frequent words (``tokenizer.private_counts.device_words``,
computed on the device). The client step of ``tff.analytics.heavy_hitters.iblt.
build_iblt_computation`` caps the list at ``m`` again (``max_words_per_user``, so the cap is part
of the computation, not a promise of the caller), gives each word a count of one
(``multi_contribution=False``) and encodes it into an invertible Bloom lookup table (IBLT). TFF
sums the tables and decodes the sum at the server, which learns, for each word, how many devices
had it among their top ``m``, and nothing about which devices. Words held by fewer than ``k``
devices are dropped inside the decode step (``k_anonymity``).

What this does and does not protect:

* The sum is TFF's plain ``federated_sum``: the secure variant (``secure_sum_bitwidth``) uses
  ``federated_secure_modular_sum``, which TFF's local C++ runtime cannot run ("Cannot embed a
  federated value"). Whoever holds the summed sketch can decode all of it, below ``k`` included;
  k-anonymity is a release policy, not cryptography.
* With ``dp_epsilon`` set, the decoded counts get Gaussian noise and a threshold
  (``tokenizer.private_counts``): the released table is (epsilon, delta)-DP with respect to
  adding or removing one device, in the central model (the server that adds the noise is
  trusted; it saw the exact decoded counts). Each run is a new release; epsilons of repeated
  runs add up. The noise comes from numpy's generator seeded from OS entropy, with no
  defence against floating-point attacks on the Gaussian sampler. The capacity used (doubled
  until the sketch decodes) is data-dependent and not covered unless fixed with ``capacity``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common.errors import ConfigError, FedkbError
from tokenizer.private_counts import GaussianThreshold, calibrate_gaussian_threshold, release

# The first capacity tried when none is given: it decodes the 584-device Shakespeare population
# at m = 200 (17,413 distinct words) in one go. Decoding time grows with items x capacity
# (TFF's decoder copies the table per peeled word), so a larger start would only cost time.
DEFAULT_CAPACITY = 20_000
MAX_ATTEMPTS = 4  # capacity doubles after a failed decode: up to 8x the first guess


class HeavyHittersError(FedkbError):
    """The sketch could not be decoded, or there was nothing to sketch."""


def check_release_options(capacity: int | None, dp_epsilon: float | None, dp_delta: float) -> None:
    """Raises :class:`ConfigError` for an IBLT capacity or a DP release option out of range.

    The word and the n-gram gatherings (``federated/ngrams.py``) sketch and release alike, so they
    check these options alike.
    """
    if capacity is not None and capacity < 1:
        raise ConfigError(f"capacity must be at least 1, got {capacity}")
    if dp_epsilon is not None and not dp_epsilon > 0:
        raise ConfigError(f"dp_epsilon must be positive, got {dp_epsilon}")
    if not 0 < dp_delta < 1:
        raise ConfigError(f"dp_delta must be in (0, 1), got {dp_delta}")


@dataclass(frozen=True)
class HeavyHittersConfig:
    max_words_per_device: int = 200  # m: a device's most frequent words, each counted once
    k_anonymity: int = 2  # a word is released only if at least k devices contributed it
    max_word_bytes: int = 32  # UTF-8 bytes a word may have to be contributed (IBLT string_max_bytes)
    capacity: int | None = None  # IBLT capacity; None: min(devices * m, DEFAULT_CAPACITY), doubled until it decodes
    dp_epsilon: float | None = None  # None: no noise; else Gaussian thresholding at this epsilon
    dp_delta: float = 1e-6  # delta of the DP release (well below 1 / devices for any population here)

    def __post_init__(self) -> None:
        if self.max_words_per_device < 1:
            raise ConfigError(f"max_words_per_device must be at least 1, got {self.max_words_per_device}")
        if self.k_anonymity < 1:
            raise ConfigError(f"k_anonymity must be at least 1, got {self.k_anonymity}")
        if not 1 <= self.max_word_bytes <= 1024:
            raise ConfigError(f"max_word_bytes must be in [1, 1024], got {self.max_word_bytes}")
        check_release_options(self.capacity, self.dp_epsilon, self.dp_delta)


@dataclass(frozen=True)
class HeavyHitters:
    """What the server learned: each released word's number of devices (noisy under DP)."""

    counts: dict[str, int]
    devices: int  # devices that took part, empty ones included
    decoded: int  # words decoded from the summed sketch at or over k, before any DP threshold
    capacity: int  # the IBLT capacity that decoded
    attempts: int  # federated rounds run (one per capacity tried)
    mechanism: GaussianThreshold | None
    seconds: float  # wall time of the federated rounds and the release

    def provenance(self, config: HeavyHittersConfig) -> dict[str, object]:
        """How the counts were gathered, for ``tokenizer.json``."""
        return {
            "method": "heavy_hitters",
            "computation": "tff.analytics.heavy_hitters.iblt.build_iblt_computation",
            "aggregation": "federated_sum (plain: TFF's secure sum does not run in the local C++ runtime)",
            "max_words_per_device": config.max_words_per_device,
            "count_per_word": 1,
            "k_anonymity": config.k_anonymity,
            "max_word_bytes": config.max_word_bytes,
            "capacity": self.capacity,
            "capacity_fixed": config.capacity is not None,
            "attempts": self.attempts,
            # Under DP only the released table is protected: the exact number of decoded words is not
            # recorded, since tokenizer.json travels with published models.
            "words_decoded": None if self.mechanism else self.decoded,
            "words_recovered": len(self.counts),
            "dp": self.mechanism.describe() if self.mechanism else None,
            "seconds": round(self.seconds, 1),
        }


def client_dataset(words: Sequence[str]):
    """One device's words as the rank-1 string batches the IBLT client step reads."""
    import tensorflow as tf

    tensor = tf.constant(list(words), tf.string) if words else tf.constant([], tf.string)
    return tf.data.Dataset.from_tensor_slices(tensor).batch(max(1, len(words)))


@functools.lru_cache(maxsize=8)
def iblt_computation(*, capacity: int, max_words_per_device: int, max_word_bytes: int, k_anonymity: int):
    """TFF's heavy-hitters computation with plain sums (cached: building it takes seconds)."""
    import tensorflow_federated as tff

    return tff.analytics.heavy_hitters.iblt.build_iblt_computation(
        capacity=capacity,
        string_max_bytes=max_word_bytes,
        max_words_per_user=max_words_per_device,
        multi_contribution=False,  # a count of one per word and device
        k_anonymity=k_anonymity,
        secure_sum_bitwidth=None,  # the secure variant fails in the local C++ runtime
    )


def initial_capacity(config: HeavyHittersConfig, devices: int) -> int:
    """The first capacity to try: devices * m bounds the distinct words, so small populations fit at once."""
    if config.capacity is not None:
        return config.capacity
    return max(1, min(devices * config.max_words_per_device, DEFAULT_CAPACITY))


def decode_strings(raw: Sequence[bytes], counts: Sequence[int]) -> dict[str, int]:
    """The decoded sketch's strings as text, with their counts (words here, n-grams in ``federated/ngrams.py``)."""
    out: dict[str, int] = {}
    for item, count in zip(raw, counts):
        try:
            out[bytes(item).decode("utf-8")] = int(count)
        except UnicodeDecodeError:  # only a string over the byte limit cut mid-character; devices send none
            continue
    return out


def discover(
    word_lists: Sequence[Sequence[str]], config: HeavyHittersConfig, *, rng: np.random.Generator | None = None
) -> HeavyHitters:
    """Runs the heavy-hitters rounds in the current TFF context over one word list per device.

    The lists are what devices hand to their client step; what comes back to this (server) side
    is only the computation's output: device count, decoded words and their counts.
    Without a fixed ``capacity``, a sketch that does not fully decode is retried at twice the
    capacity (an IBLT over capacity decodes almost nothing, so a partial result is never used).
    """
    if not word_lists:
        raise HeavyHittersError("no devices to gather words from")
    started = time.monotonic()
    datasets = [client_dataset(words) for words in word_lists]
    capacity = initial_capacity(config, len(word_lists))
    attempts = MAX_ATTEMPTS if config.capacity is None else 1
    for attempt in range(1, attempts + 1):
        computation = iblt_computation(
            capacity=capacity, max_words_per_device=config.max_words_per_device,
            max_word_bytes=config.max_word_bytes, k_anonymity=config.k_anonymity,
        )
        out = computation(datasets)
        if int(out.num_not_decoded) == 0:
            break
        if attempt == attempts:
            raise HeavyHittersError(
                f"the summed IBLT sketch did not decode at capacity {capacity} ({int(out.num_not_decoded)} counts "
                f"left); more distinct words were contributed than it holds: pass a larger capacity")
        capacity *= 2
    decoded = decode_strings(out.heavy_hitters, out.heavy_hitters_counts)
    mechanism, counts = None, decoded
    if config.dp_epsilon is not None:
        mechanism = calibrate_gaussian_threshold(
            config.dp_epsilon, config.dp_delta, config.max_words_per_device, config.k_anonymity)
        counts = release(decoded, mechanism, rng if rng is not None else np.random.default_rng())
    return HeavyHitters(counts, int(out.clients), len(decoded), capacity, attempt, mechanism,
                        time.monotonic() - started)
