"""Pure numerics of a private word-count table: what a device contributes, and a DP release.

A device contributes its ``m`` most frequent words, each with a count of one, so adding or
removing one device changes at most ``m`` entries of the summed table, each by at most one:
L0 sensitivity ``m``, L-infinity 1, L2 ``sqrt(m)``. That is what makes both the k-anonymity
filter and the Gaussian release below simple to reason about. (Capping a word's count at
``c > 1`` multiplies the noise by ``c`` and, measured on the Shakespeare population, trains no
better a tokenizer; see ``bench/private_vocab.py``.)

The release is the standard Gaussian thresholding mechanism for heavy hitters / partition
selection (Korolova et al. 2009; Wilson et al. 2020, "Differentially private SQL with bounded
user contribution"; Gopi et al. 2020, "Differentially private set union"): add N(0, sigma^2)
to each decoded count and keep a word only if its noisy count reaches a threshold tau.

Word n-grams (``device_ngram_counts``) are what a device contributes for the private n-gram
table: its ``m`` most frequent n-grams of one order, each with its count capped at ``c``, so one
device changes at most ``m`` entries per order, each by at most ``c``. Sentence starts are
marked by one ``<s>`` (``tokenizer.specials.BOS``) in front of the sentence's words, and n-grams
are the windows of that sequence: "I am here" gives the unigrams ``i am here`` (``<s>`` is
never a unigram), the bigrams ``<s> i``, ``i am``, ``am here`` and the trigrams ``<s> i am``,
``i am here``. ``<s>`` is only ever the first word of an n-gram, and never doubled: the context
of a sentence's first word is ``("<s>",)``, so a model asking for a trigram ``<s> <s> w`` backs
off to the bigram ``<s> w``. There is no end-of-sentence marker: a keyboard never suggests one.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from tokenizer.specials import BOS
from tokenizer.words import words as words_of


def device_words(counts: Mapping[str, int], max_words: int, max_bytes: int) -> list[str]:
    """A device's ``max_words`` most frequent words, each once (ties broken alphabetically).

    Words longer than ``max_bytes`` UTF-8 bytes, or holding a NUL, are skipped rather than cut:
    the IBLT would truncate them to a prefix (possibly mid-character) that the device never
    typed, and NUL is the IBLT's padding byte. They do not use up one of the ``max_words`` slots.
    """
    if max_words < 1 or max_bytes < 1:
        raise ValueError(f"max_words and max_bytes must be at least 1, got {max_words} and {max_bytes}")
    usable = [(w, c) for w, c in counts.items()
              if c > 0 and w and "\x00" not in w and len(w.encode("utf-8")) <= max_bytes]
    usable.sort(key=lambda wc: (-wc[1], wc[0]))
    return [w for w, _ in usable[:max_words]]


def sentence_ngrams(words: Sequence[str], order: int) -> list[str]:
    """The n-grams of one sentence's words, joined by single spaces, with ``<s>`` before the first word.

    ``(["i", "am"], 2)`` -> ``["<s> i", "i am"]``; unigrams are the words themselves.
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    if order == 1:
        return list(words)
    padded = [BOS, *words] if words else []
    return [" ".join(padded[i:i + order]) for i in range(len(padded) - order + 1)]


def device_ngram_counts(
    sentences: Iterable[str], order: int, max_ngrams: int, *, max_bytes: int = 32, max_count: int = 1,
    known: Collection[str] | None = None,
) -> dict[str, int]:
    """A device's ``max_ngrams`` most frequent n-grams of ``order`` (ties alphabetical), counts capped at ``max_count``.

    ``sentences`` are the device's own (its train split); words are ``tokenizer.words.words``.
    An n-gram over ``max_bytes`` UTF-8 bytes is skipped (``device_words``). With ``known`` (the
    n-grams of order - 1 already released), an n-gram is a candidate only if both its prefix and
    its suffix of order - 1 are known (a prefix of ``<s>`` alone always is): no n-gram can reach
    k devices unless both of those did, so the others would only fill the sketch.
    """
    if max_count < 1:
        raise ValueError(f"max_count must be at least 1, got {max_count}")
    counts: collections.Counter[str] = collections.Counter()
    for sentence in sentences:
        counts.update(sentence_ngrams(words_of(sentence), order))
    if known is not None and order >= 2:
        def extends(gram: str) -> bool:
            prefix, suffix = gram.rsplit(" ", 1)[0], gram.split(" ", 1)[1]
            return (prefix == BOS or prefix in known) and suffix in known

        counts = collections.Counter({g: c for g, c in counts.items() if extends(g)})
    return {g: min(counts[g], max_count) for g in device_words(counts, max_ngrams, max_bytes)}


@dataclass(frozen=True)
class GaussianThreshold:
    """The Gaussian thresholding mechanism for a table where each device adds 1 (up to c) to <= m words.

    (epsilon, delta)-DP with respect to adding or removing one device's contribution, for the
    released (word, noisy count) table. ``delta`` is split: ``delta / 2`` for the Gaussian noise
    on words both neighbours hold, ``delta / (2 e^epsilon)`` for the chance that one of the
    (at most m) words that only the extra device brings over ``min_devices - 1`` is released.
    With counts capped at ``c = max_count`` the whole problem is ``c`` times the one with counts
    of one (divide every count by ``c``), so noise and threshold are ``c`` times as large.
    """

    epsilon: float
    delta: float
    max_words_per_device: int  # m: each device adds 1 to at most m words
    min_devices: int  # k: counts below k were dropped before the noise (1 = no such filter)
    noise_stddev: float  # sigma = z * sqrt(m), z calibrated by dp_accounting
    threshold: float  # tau: a word is released when count + noise >= tau
    max_count: int = 1  # c: the most a device adds to one word's count

    def describe(self) -> dict[str, float | int | str]:
        return {
            "mechanism": "Gaussian noise on decoded counts, released if noisy count >= threshold",
            "model": "central: the server adds the noise to the exact decoded counts",
            "neighbouring": "add or remove one device",
            "epsilon": self.epsilon, "delta": self.delta, "max_words_per_device": self.max_words_per_device,
            "min_devices": self.min_devices, "noise_stddev": round(self.noise_stddev, 4),
            "threshold": round(self.threshold, 4), "max_count": self.max_count,
        }


def calibrate_gaussian_threshold(
    epsilon: float, delta: float, max_words_per_device: int, min_devices: int = 1, max_count: int = 1
) -> GaussianThreshold:
    """Noise and threshold for (epsilon, delta)-DP; the noise multiplier comes from dp_accounting's PLD.

    The k-anonymity filter (``min_devices``) acts on true counts, so it is folded into the
    threshold: a word that the extra device lifts from k-1 to k is released with probability
    Q((tau - k c) / sigma) (its count is at most k c), and at most m words can be lifted.
    """
    if not epsilon > 0 or not 0 < delta < 1:
        raise ValueError(f"need epsilon > 0 and 0 < delta < 1, got epsilon={epsilon}, delta={delta}")
    if max_words_per_device < 1 or min_devices < 1 or max_count < 1:
        raise ValueError(f"max_words_per_device, min_devices and max_count must be at least 1, "
                         f"got {max_words_per_device}, {min_devices} and {max_count}")
    import dp_accounting
    from dp_accounting import pld, rdp

    def event(z: float):
        return dp_accounting.GaussianDpEvent(z)

    # RDP is fast and never asks for less noise than needed; PLD (tight for one Gaussian) then
    # searches below it. PLD's cost grows steeply as the noise shrinks, so the bracket matters:
    # [z_rdp / 2, z_rdp] keeps a calibration near a second. A 1e-3 discretization stays
    # pessimistic and matched the analytic Gaussian delta to 1e-12.
    z_rdp = dp_accounting.calibrate_dp_mechanism(
        rdp.RdpAccountant, event, epsilon, delta / 2,
        bracket_interval=dp_accounting.LowerEndpointAndGuess(1e-3, 1.0))
    z = dp_accounting.calibrate_dp_mechanism(
        lambda: pld.PLDAccountant(value_discretization_interval=1e-3), event, epsilon, delta / 2,
        bracket_interval=dp_accounting.ExplicitBracketInterval(z_rdp / 2, z_rdp), tol=1e-6)
    z += 1e-6  # brentq lands within tol of the least noise that meets epsilon: stay on the safe side
    sigma = max_count * z * math.sqrt(max_words_per_device)
    new_word_delta = delta / (2 * math.exp(epsilon))
    tau = min_devices * max_count - sigma * NormalDist().inv_cdf(new_word_delta / max_words_per_device)
    return GaussianThreshold(epsilon, delta, max_words_per_device, min_devices, sigma, tau, max_count)


def release(counts: Mapping[str, int], mechanism: GaussianThreshold, rng: np.random.Generator) -> dict[str, int]:
    """Adds the mechanism's noise to every count and keeps the words at or over its threshold.

    Released counts are rounded and at least 1, which is all SentencePiece needs. Words are
    visited in sorted order so a seeded ``rng`` gives a reproducible release.
    """
    words = sorted(counts)
    noisy = np.asarray([counts[w] for w in words], np.float64) + rng.normal(0.0, mechanism.noise_stddev, len(words))
    return {w: max(1, round(float(v))) for w, v in zip(words, noisy) if v >= mechanism.threshold}
