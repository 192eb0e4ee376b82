"""A device's heavy-hitter contribution and the Gaussian thresholding release, by hand."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from tokenizer.private_counts import (
    GaussianThreshold,
    calibrate_gaussian_threshold,
    device_ngram_counts,
    device_words,
    release,
    sentence_ngrams,
)


def device_ngrams(sentences, order, m, **kwargs):
    """A device's top-``m`` n-grams of ``order``, most frequent first."""
    return list(device_ngram_counts(sentences, order, m, **kwargs))


def test_device_words_are_the_most_frequent_each_once():
    counts = {"the": 9, "a": 5, "cat": 5, "sat": 2, "on": 1}
    assert device_words(counts, 3, 32) == ["the", "a", "cat"]  # "a" and "cat" tie: alphabetical
    assert device_words(counts, 10, 32) == ["the", "a", "cat", "sat", "on"]
    assert device_words({}, 5, 32) == []


def test_device_words_skip_what_the_sketch_cannot_hold():
    counts = {"x" * 33: 50, "日本語": 40, "naïve": 30, "a\x00b": 20, "ok": 10, "gone": 0, "": 7}
    # "日本語" is 9 UTF-8 bytes, "naïve" 6: the limit is bytes, not characters.
    assert device_words(counts, 10, 32) == ["日本語", "naïve", "ok"]
    assert device_words(counts, 10, 8) == ["naïve", "ok"]
    # Skipped words do not use up a slot.
    assert device_words(counts, 1, 32) == ["日本語"]


@pytest.mark.parametrize("m, b", [(0, 32), (5, 0)])
def test_device_words_checks_its_limits(m, b):
    with pytest.raises(ValueError, match="at least 1"):
        device_words({"a": 1}, m, b)


def _analytic_gaussian_delta(epsilon: float, z: float) -> float:
    """delta(epsilon) of the Gaussian mechanism with noise multiplier z (Balle & Wang 2018, Thm 8)."""
    phi = NormalDist().cdf
    return phi(1 / (2 * z) - epsilon * z) - math.exp(epsilon) * phi(-1 / (2 * z) - epsilon * z)


@pytest.mark.parametrize("epsilon, m, k", [(1.0, 1, 1), (4.0, 200, 2), (8.0, 50, 1)])
def test_calibration_spends_delta_as_documented(epsilon, m, k):
    delta = 1e-6
    mech = calibrate_gaussian_threshold(epsilon, delta, m, k)
    z = mech.noise_stddev / math.sqrt(m)
    # The noise: the Gaussian part uses delta / 2 (dp_accounting's PLD is tight to ~1e-3 in z).
    assert _analytic_gaussian_delta(epsilon, z) <= delta / 2 * 1.0001
    assert _analytic_gaussian_delta(epsilon, z * 0.99) > delta / 2
    # The threshold: m words lifted to k by one device are released with total probability delta / (2 e^eps).
    tail = 1 - NormalDist().cdf((mech.threshold - k) / mech.noise_stddev)
    assert m * tail == pytest.approx(delta / (2 * math.exp(epsilon)), rel=1e-6)
    assert mech.describe()["epsilon"] == epsilon and mech.describe()["min_devices"] == k


def test_more_epsilon_less_noise_more_words_cost_more_noise():
    loose, tight = calibrate_gaussian_threshold(8.0, 1e-6, 50), calibrate_gaussian_threshold(1.0, 1e-6, 50)
    assert loose.noise_stddev < tight.noise_stddev and loose.threshold < tight.threshold
    assert calibrate_gaussian_threshold(8.0, 1e-6, 200).noise_stddev == pytest.approx(2 * loose.noise_stddev, rel=1e-6)


@pytest.mark.parametrize("bad", [dict(epsilon=0.0, delta=1e-6), dict(epsilon=1.0, delta=0.0),
                                 dict(epsilon=1.0, delta=1.0)])
def test_calibration_checks_its_arguments(bad):
    with pytest.raises(ValueError):
        calibrate_gaussian_threshold(max_words_per_device=10, **bad)


def test_release_keeps_only_counts_over_the_threshold():
    mech = GaussianThreshold(1.0, 1e-6, 1, 1, noise_stddev=2.0, threshold=20.0)
    out = release({"the": 1000, "rare": 1, "zebra": 2}, mech, np.random.default_rng(0))
    assert set(out) == {"the"} and abs(out["the"] - 1000) < 20 and isinstance(out["the"], int)
    assert release({}, mech, np.random.default_rng(0)) == {}
    again = release({"the": 1000, "rare": 1, "zebra": 2}, mech, np.random.default_rng(0))
    assert again == out  # seeded: reproducible


def test_release_of_a_lone_word_happens_as_often_as_budgeted():
    # With a large delta the new-word probability delta / (2 e^eps) can be measured: 0.2 / (2e) = 0.0368.
    mech = calibrate_gaussian_threshold(1.0, 0.2, 1, 1)
    rng = np.random.default_rng(1)
    released = sum(bool(release({"lone": 1}, mech, rng)) for _ in range(20_000))
    assert released / 20_000 == pytest.approx(0.2 / (2 * math.e), abs=0.006)


# -- n-grams ----------------------------------------------------------------------------------------
SENTENCES = ["I am here.", "I am, I said", "Here I am!"]
# words: [i am here], [i am i said], [here i am]


def test_sentence_ngrams_mark_the_start_once():
    assert sentence_ngrams(["i", "am", "here"], 1) == ["i", "am", "here"]
    assert sentence_ngrams(["i", "am", "here"], 2) == ["<s> i", "i am", "am here"]
    assert sentence_ngrams(["i", "am", "here"], 3) == ["<s> i am", "i am here"]
    assert sentence_ngrams(["hi"], 2) == ["<s> hi"] and sentence_ngrams(["hi"], 3) == []
    assert sentence_ngrams([], 2) == [] and sentence_ngrams([], 1) == []
    with pytest.raises(ValueError, match="order"):
        sentence_ngrams(["a"], 0)


def test_device_ngrams_by_hand():
    # unigrams: i 4, am 3, here 2, said 1
    assert device_ngrams(SENTENCES, 1, 3) == ["i", "am", "here"]
    # bigrams: i am 3, <s> i 2, <s> here 1, am here 1, am i 1, here i 1, i said 1 (ties alphabetical)
    assert device_ngrams(SENTENCES, 2, 4) == ["i am", "<s> i", "<s> here", "am here"]
    # trigrams: <s> i am 2, then alphabetical among the ones seen once
    assert device_ngrams(SENTENCES, 3, 3) == ["<s> i am", "<s> here i", "am i said"]
    assert device_ngrams([], 2, 5) == [] and device_ngrams(["!!"], 1, 5) == []


def test_device_ngram_counts_are_capped_per_ngram():
    assert device_ngram_counts(SENTENCES, 1, 2, max_count=3) == {"i": 3, "am": 3}
    assert device_ngram_counts(SENTENCES, 2, 2, max_count=2) == {"i am": 2, "<s> i": 2}
    assert device_ngram_counts(SENTENCES, 2, 2) == {"i am": 1, "<s> i": 1}  # default: each counted once
    with pytest.raises(ValueError, match="max_count"):
        device_ngram_counts(SENTENCES, 1, 2, max_count=0)


def test_device_ngrams_extend_only_known_ngrams():
    # Bigrams need both words known ("<s>" always is); trigrams need both bigrams known.
    assert device_ngrams(SENTENCES, 2, 10, known={"i", "am"}) == ["i am", "<s> i", "am i"]
    assert device_ngrams(SENTENCES, 3, 10, known={"<s> i", "i am"}) == ["<s> i am"]
    assert device_ngrams(SENTENCES, 3, 10, known={"i am", "am i", "i said"}) == ["am i said", "i am i"]
    assert device_ngrams(SENTENCES, 2, 10, known=set()) == []
    # Skipped n-grams ("i am", the most frequent) do not use up the device's slots.
    assert device_ngrams(SENTENCES, 2, 1, known={"here", "i"}) == ["<s> i"]


def test_device_ngrams_skip_what_the_sketch_cannot_hold():
    long = "a" * 20
    sentences = [f"{long} {long} b", f"{long} {long} b"]
    assert device_ngrams(sentences, 2, 5, max_bytes=32) == [f"<s> {long}", f"{long} b"]  # 41 bytes: skipped
    assert f"{long} {long}" in device_ngrams(sentences, 2, 5, max_bytes=41)


def test_capped_counts_scale_noise_and_threshold():
    one = calibrate_gaussian_threshold(2.0, 1e-6, 30, 2)
    four = calibrate_gaussian_threshold(2.0, 1e-6, 30, 2, max_count=4)
    assert four.noise_stddev == pytest.approx(4 * one.noise_stddev)
    assert four.threshold == pytest.approx(4 * one.threshold)
    # An n-gram the extra device lifts to k = 2 devices has a count of at most k c = 8.
    tail = 1 - NormalDist().cdf((four.threshold - 8) / four.noise_stddev)
    assert 30 * tail == pytest.approx(1e-6 / (2 * math.exp(2.0)), rel=1e-6)
    assert four.describe()["max_count"] == 4 and one.max_count == 1
