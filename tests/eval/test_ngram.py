"""Unigram and Kneser–Ney trigram baselines: hand-computed probabilities and exact top-k."""

from __future__ import annotations

import math
import random

import pytest

from eval.ngram import BOS, EOS, UNK, KneserNeyTrigram, UnigramPredictor

# Padded: <s> <s> a b c </s> | <s> <s> a b d </s> | <s> <s> b c </s>
TINY = ["a b c", "a b d", "b c"]
D = 0.75
# Continuation counts N(.w) (distinct words seen before w): a {<s>}, b {<s>, a}, c {b}, d {b},
# </s> {c, d}: 7 bigram types over T1 = 5 events, E = {a, b, c, d, </s>}.
P1 = {w: max(n - D, 0) / 7 + D * 5 / 7 / 5 for w, n in {"a": 1, "b": 2, "c": 1, "d": 1, EOS: 2}.items()}


@pytest.fixture(scope="module")
def tiny() -> KneserNeyTrigram:
    return KneserNeyTrigram.fit(TINY, discount=D)


def test_lowest_order_is_continuation_counts_mixed_with_uniform(tiny):
    # An unseen context (both words unknown) falls through to P1.
    assert P1["b"] == pytest.approx(2 / 7)
    for w, p in P1.items():
        assert tiny.prob(w, ("zzz", "yyy")) == pytest.approx(p)


def test_trigram_seen_context(tiny):
    # c(ab.) = 2 over T3(ab) = 2 types {c, d}; after b: N(.bc) = 2 ({a, <s>}), N(.bd) = 1,
    # so N(.b.) = 3 over T2(b) = 2 types.
    lam3, lam2 = D * 2 / 2, D * 2 / 3
    p2_c = max(2 - D, 0) / 3 + lam2 * P1["c"]
    p2_d = max(1 - D, 0) / 3 + lam2 * P1["d"]
    assert tiny.prob("c", ("a", "b")) == pytest.approx(max(1 - D, 0) / 2 + lam3 * p2_c)
    assert tiny.prob("c", ("a", "b")) == pytest.approx(0.125 + 0.75 * (1.25 / 3 + 0.5 / 7))
    assert tiny.prob("d", ("a", "b")) == pytest.approx(max(1 - D, 0) / 2 + lam3 * p2_d)
    # a never followed (a, b): only the interpolated lower orders.
    assert tiny.prob("a", ("a", "b")) == pytest.approx(lam3 * lam2 * P1["a"])


def test_sentence_start_context(tiny):
    # c(<s><s>.) = 3: a twice, b once. After <s>: N(.<s>a) = N(.<s>b) = 1, N(.<s>.) = 2, T2 = 2.
    lam3, lam2 = D * 2 / 3, D * 2 / 2
    p2_a = max(1 - D, 0) / 2 + lam2 * P1["a"]
    assert tiny.prob("a", (BOS, BOS)) == pytest.approx(max(2 - D, 0) / 3 + lam3 * p2_a)
    assert tiny.prob(EOS, (BOS, BOS)) == pytest.approx(lam3 * lam2 * P1[EOS])


def test_unseen_trigram_context_backs_off_to_bigram(tiny):
    # (zzz, c) never seen: λ3 = 1. After c only </s>: N(.c</s>) = 1 = N(.c.), T2(c) = 1.
    lam2 = D * 1 / 1
    assert tiny.prob(EOS, ("zzz", "c")) == pytest.approx(max(1 - D, 0) / 1 + lam2 * P1[EOS])
    assert tiny.prob("a", ("zzz", "c")) == pytest.approx(lam2 * P1["a"])
    # Seen words in an unseen pair behave the same way.
    assert tiny.prob("a", ("d", "c")) == tiny.prob("a", ("zzz", "c"))


def test_prob_of_words_outside_the_model_is_zero(tiny):
    assert tiny.prob("zzz", ("a", "b")) == 0.0
    assert tiny.prob(BOS, ("a", "b")) == 0.0
    assert tiny.prob(UNK, ("a", "b")) == 0.0  # no word was cut, so there is no <unk>


CONTEXTS = [(BOS, BOS), (BOS, "a"), ("a", "b"), ("b", "c"), ("zzz", "yyy"), ("zzz", "b"),
            ("b", "zzz"), ("c", "a"), (BOS, "zzz"), ("d", EOS)]


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("discount", [0.1, 0.75, 1.0])
def test_probabilities_sum_to_one(context, discount):
    m = KneserNeyTrigram.fit(TINY, discount=discount)
    assert math.fsum(m.prob(w, context) for w in [*m.vocabulary, EOS]) == pytest.approx(1.0)
    assert all(m.prob(w, context) > 0 for w in m.vocabulary)


@pytest.mark.parametrize("context", [*CONTEXTS, ("c", "d"), ("a", UNK), (UNK, "b")])
def test_probabilities_sum_to_one_with_unk(context):
    # counts b 3, a 2, c 2, d 1: max_vocab 2 keeps b and a; c and d become <unk>.
    m = KneserNeyTrigram.fit(TINY, max_vocab=2)
    assert m.vocabulary == ("b", "a")
    assert m.prob(UNK, context) > 0
    assert math.fsum(m.prob(w, context) for w in [*m.vocabulary, EOS, UNK]) == pytest.approx(1.0)
    assert not m.can_produce("c")


def test_cut_words_share_the_unk_context():
    m = KneserNeyTrigram.fit(TINY, max_vocab=2)
    assert m.prob(EOS, ("b", "c")) == m.prob(EOS, ("b", "d")) == m.prob(EOS, ("b", UNK))


def _random_corpus(rnd: random.Random, n: int, vocab: list[str]) -> list[str]:
    weights = [1 / (r + 1) for r in range(len(vocab))]  # Zipf-like, with many ties in counts
    return [" ".join(rnd.choices(vocab, weights, k=rnd.randint(1, 8))) for _ in range(n)]


def _brute_force(m: KneserNeyTrigram, words: list[str], k: int) -> list[list[str]]:
    rank = {w: r for r, w in enumerate(m.vocabulary)}  # ties go to the more frequent word
    out = []
    for i in range(1, len(words)):
        context = (words[i - 2] if i >= 2 else BOS, words[i - 1])
        out.append(sorted(m.vocabulary, key=lambda w: (-m.prob(w, context), rank[w]))[:k])
    return out


@pytest.mark.parametrize("max_vocab", [None, 15])
@pytest.mark.parametrize("discount", [0.5, 0.75, 1.0])
def test_top_k_equals_brute_force(max_vocab, discount):
    rnd = random.Random(f"{max_vocab}-{discount}")
    vocab = [f"w{i}" for i in range(30)]
    m = KneserNeyTrigram.fit(_random_corpus(rnd, 150, vocab), discount=discount, max_vocab=max_vocab)
    for _ in range(60):
        # Mostly known words, some never seen in training.
        words = [rnd.choice(vocab) if rnd.random() < 0.85 else "unseen" for _ in range(rnd.randint(0, 8))]
        for k in (1, 3, 5, 40):
            assert m.suggest_sentence(words, k) == _brute_force(m, words, k)


def test_suggestions_start_at_sentence_start(tiny):
    # After "a" at sentence start, b always followed.
    assert tiny.suggest_sentence(["a", "b", "c"], 1) == [["b"], ["c"]]


def test_end_of_sentence_is_never_suggested(tiny):
    # After (b, c), </s> is by far the most probable event.
    assert tiny.prob(EOS, ("b", "c")) > max(tiny.prob(w, ("b", "c")) for w in tiny.vocabulary)
    for row in tiny.suggest_sentence(["b", "c", "a", "b", "d", "zzz"], 10):
        assert sorted(row) == ["a", "b", "c", "d"]  # all four words, distinct, no boundary symbols


def test_k_larger_than_vocabulary():
    m = KneserNeyTrigram.fit(TINY, max_vocab=2)
    assert m.suggest_sentence(["a", "b", "c"], 50) == [["b", "a"], ["b", "a"]]


@pytest.mark.parametrize("model", [KneserNeyTrigram.fit(TINY), UnigramPredictor.fit(TINY)])
def test_short_sentences_give_no_positions(model):
    assert model.suggest_sentence(["a"], 3) == []
    assert model.suggest_sentence([], 3) == []
    assert len(model.suggest_sentence(["a", "zzz", "b", "b"], 3)) == 3


@pytest.mark.parametrize("fit", [KneserNeyTrigram.fit, UnigramPredictor.fit])
def test_words_are_read_without_punctuation_or_case(fit):
    m = fit(["Hello, world", "hello there"])
    assert m.can_produce("hello") and m.can_produce("world")
    assert m.vocabulary[0] == "hello"  # "Hello," and "hello" are one word, counted twice
    assert not m.can_produce("Hello,") and not m.can_produce("Hello") and not m.can_produce("unseen")
    assert not m.can_produce(EOS) and not m.can_produce(BOS)


@pytest.mark.parametrize("fit", [KneserNeyTrigram.fit, UnigramPredictor.fit])
@pytest.mark.parametrize("sentences", [[], ["", "   "], iter([])])
def test_empty_training_input_raises(fit, sentences):
    with pytest.raises(ValueError, match="training sentences contain no words"):
        fit(sentences)


@pytest.mark.parametrize("model", [KneserNeyTrigram.fit(TINY), UnigramPredictor.fit(TINY)])
def test_k_must_be_positive(model):
    with pytest.raises(ValueError, match="k must be at least 1"):
        model.suggest_sentence(["a", "b"], 0)


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5])
def test_discount_out_of_range(bad):
    with pytest.raises(ValueError, match="discount must be in"):
        KneserNeyTrigram.fit(TINY, discount=bad)


@pytest.mark.parametrize("fit", [KneserNeyTrigram.fit, UnigramPredictor.fit])
def test_max_vocab_must_be_positive(fit):
    with pytest.raises(ValueError, match="max_vocab"):
        fit(TINY, max_vocab=0)


def test_unigram_order_and_ties():
    # Counts: a 3, b 2, c 2, d 1, e 1: ties broken by word.
    m = UnigramPredictor.fit(iter(["c a b", "a e", "b d c a"]))
    assert m.name == "unigram"
    assert m.vocabulary == ("a", "b", "c", "d", "e")
    assert m.suggest_sentence(["x", "y", "a"], 3) == [["a", "b", "c"], ["a", "b", "c"]]
    assert m.suggest_sentence(["x", "y"], 50) == [["a", "b", "c", "d", "e"]]


def test_unigram_max_vocab():
    m = UnigramPredictor.fit(["c a b", "a e", "b d c a"], max_vocab=2)
    assert m.suggest_sentence(["x", "y"], 5) == [["a", "b"]]
    assert m.can_produce("b") and not m.can_produce("c")


def test_unigram_rows_are_independent_lists():
    rows = UnigramPredictor.fit(TINY).suggest_sentence(["x", "y", "z"], 2)
    rows[0].append("mutated")
    assert rows[1] == ["b", "a"]


def test_ngram_name(tiny):
    assert tiny.name == "ngram"
