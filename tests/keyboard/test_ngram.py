"""The device's word n-gram model (personal model and published n-grams), against hand-worked numbers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyboard.ngram import EOS, NgramModel
from tests.fakes import ngram_model


@pytest.fixture
def model():
    return ngram_model([["the", "cat", "sat"], ["the", "cat", "ran"], ["a", "dog", "sat"]])


def test_hand_worked_probabilities(model):
    # Unigrams: the 2, cat 2, sat 2, ran 1, a 1, dog 1, </s> 3 -> 12 tokens.
    # After <s> <s> and after <s>: the 2, a 1 (λ = 0.75 * 2 / 3 at both levels); "cat" never starts one.
    assert model.prob("cat", []) == pytest.approx(0.5 * 0.5 * 2 / 12)
    # After (the, cat): sat 1, ran 1 (total 2, 2 types); after cat: sat 1, ran 1; unigram sat 2/12.
    p2_sat = (1 - 0.75) / 2 + 0.75 * 2 / 2 * 2 / 12
    assert model.prob("sat", ["the", "cat"]) == pytest.approx((1 - 0.75) / 2 + 0.75 * 2 / 2 * p2_sat)
    assert model.prob("unseen", ["the"]) == 0.0


def test_each_context_sums_to_one(model):
    vocab = ["the", "cat", "sat", "ran", "a", "dog", EOS]
    for context in ([], ["the"], ["the", "cat"], ["zebra"], ["dog", "sat"]):
        assert sum(model.prob(w, context) for w in vocab) == pytest.approx(1.0)


def test_top_is_the_exact_best_with_the_prefix(model):
    assert model.top(["the"], "", 1) == [("cat", model.prob("cat", ["the"]))]
    assert [w for w, _ in model.top(["the", "cat"], "r", 3)] == ["ran"]
    assert model.top(["x"], "zz", 3) == [] and NgramModel().top([], "", 3) == []


def test_a_word_is_suggested_after_its_first_use():
    model = NgramModel()
    model.observe(["see", "you", "at", "the", "zorblax"])
    assert model.top(["see", "you", "at", "the"], "", 1)[0][0] == "zorblax"
    assert model.top([], "zo", 1)[0][0] == "zorblax"


def test_released_counts_build_the_same_model():
    sentences = [["a", "b"], ["a", "c", "b"]]
    from_text = ngram_model(sentences)
    tables = {1: {}, 2: {}, 3: {}}
    for ws in sentences:
        padded = ["<s>", "<s>", *ws, EOS]
        for i in range(2, len(padded)):
            for order in (1, 2, 3):
                gram = tuple(padded[i - order + 1 : i + 1])
                tables[order][gram] = tables[order].get(gram, 0) + 1
    from_counts = NgramModel.from_counts(tables)
    for w, ctx in itertools.product(["a", "b", "c", EOS], [[], ["a"], ["a", "c"]]):
        assert from_counts.prob(w, ctx) == from_text.prob(w, ctx)
    with pytest.raises(ValueError, match="positive count"):
        NgramModel.from_counts({2: {("a", "b"): 0}})


words = st.sampled_from(["a", "b", "c", "ab", "abc", "b'c"])


@given(st.lists(st.lists(words, min_size=1, max_size=5), max_size=8), st.lists(words, max_size=3),
       st.sampled_from(["", "a", "ab", "b", "z"]), st.integers(1, 4))
def test_top_equals_brute_force(sentences, context, prefix, n):
    model = ngram_model(sentences)
    vocab = sorted({w for s in sentences for w in s if w.startswith(prefix)})
    brute = sorted(((w, model.prob(w, context)) for w in vocab), key=lambda wp: (-wp[1], wp[0]))[:n]
    assert model.top(context, prefix, n) == brute
