"""recall@k on hand-worked examples."""

import math

import pytest

from keyboard.suggest import WordSuggester
from lm.recall import RecallCounts, quantiles_from_histogram, recall_counts, score_suggestions
from tests.fakes import FakeTokenizer, TableLM, default_table
from tokenizer.words import words as words_of


def sentence_recall(predictor, sentence, ks=(1, 3, 5)):
    words = words_of(sentence)
    return score_suggestions(words, predictor.suggest_sentence(words, max(ks)), predictor.can_produce, ks)


class Fixed:
    """Suggests the same list everywhere."""

    name = "fixed"

    def __init__(self, words, vocab):
        self.words, self.vocab = words, set(vocab)

    def can_produce(self, word):
        return word in self.vocab

    def suggest_sentence(self, words, k):
        return [self.words[:k] for _ in words[1:]]


def test_hits_at_each_k_by_hand():
    p = Fixed(["a", "b", "c", "d", "e"], vocab="abcde")
    c = sentence_recall(p, "x a c e z")  # targets a, c, e, z
    assert c.predictions == 4
    assert c.hits == {1: 1, 3: 2, 5: 3}
    assert c.oov == 1  # z
    assert c.recall(1) == 0.25 and c.recall(3) == 0.5 and c.recall(5) == 0.75 and c.oov_rate == 0.25


def test_one_word_sentence_has_no_prediction():
    c = sentence_recall(Fixed(["a"], "a"), "a")
    assert c.predictions == 0 and c.recall(1) == 0.0


def test_punctuation_and_case_are_not_part_of_a_word():
    c = sentence_recall(Fixed(["dog"], ["dog"]), "The Dog, ...")
    assert c.predictions == 1 and c.hits[1] == 1 and c.oov == 0  # "Dog," is the word "dog"; "..." is no word


def test_counts_add_up():
    a = RecallCounts(2, 1, {1: 1, 3: 2, 5: 2})
    b = RecallCounts(3, 0, {1: 0, 3: 1, 5: 3})
    assert (a + b) == RecallCounts(5, 1, {1: 1, 3: 3, 5: 5})


def test_mismatched_suggestions_are_an_error():
    with pytest.raises(ValueError):
        score_suggestions(["a", "b", "c"], [["a"]], lambda w: True)


def test_beam_recall_multi_piece_and_oov_words():
    s = WordSuggester(TableLM(default_table()), FakeTokenizer(), beam=4, max_pieces=4)
    # "the cats run": after "the" the top-1 is cat (miss), top-3 has cats (hit); after "cats", run (hit).
    c = recall_counts(s, ["the cats run", "the zebra", "dog"])
    assert c.predictions == 3  # 2 + 1 + 0
    assert c.hits[1] == 1 and c.hits[3] == 2
    assert c.oov == 1  # zebra


def test_quantiles_from_a_histogram():
    edges = [0.0, 0.25, 0.5, 0.75, 1.0]
    q = quantiles_from_histogram(edges, [0, 2, 2, 0], qs=(0.5, 0.25))
    assert q == {"p50": 0.5, "p25": 0.375}
    assert math.isnan(quantiles_from_histogram(edges, [0, 0, 0, 0])["p50"])
