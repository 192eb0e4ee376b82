"""The keyboard's cached beam: the reference beam's answers, with each model step taken once."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from keyboard.beam import CachedBeam, _settled
from keyboard.lm import NumpyLM
from keyboard.predictor import ModelPredictor
from keyboard.suggest import WordSuggester
from tests.keyboard.helpers import WORDS, publish_random, tiny_tokenizer_proto
from tokenizer.vocab import Tokenizer
from tokenizer.words import split_typed


def _random_lm(vocab: int, *, e: int, u: int, seed: int, cifg: bool = True, spread: float = 0.8) -> NumpyLM:
    rng = np.random.default_rng(seed)
    gates = 3 if cifg else 4
    return NumpyLM({"cifg": cifg}, {
        "embedding/embeddings": rng.normal(0, spread, (vocab, e)).astype(np.float32),
        "rnn/cell/kernel": rng.normal(0, spread, (2 * e, gates * u)).astype(np.float32),
        "rnn/cell/bias": rng.normal(0, 0.1, gates * u).astype(np.float32),
        "rnn/cell/projection": rng.normal(0, spread, (u, e)).astype(np.float32),
        "output_bias": rng.normal(0, spread, vocab).astype(np.float32),
    })


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(tiny_tokenizer_proto(vocab_size=64))


def _typed(sentence: str) -> list[str]:
    return [sentence[: i + 1] for i in range(len(sentence))]


@pytest.mark.parametrize("cifg,beam,max_pieces,seed", [(True, 4, 4, 0), (True, 2, 3, 1), (False, 4, 4, 2),
                                                       (True, 6, 2, 3)])
def test_cached_beam_answers_like_the_reference_beam(tokenizer, cifg, beam, max_pieces, seed):
    """Sentences typed key by key (with edits and new sentences), each answer against a fresh reference."""
    lm = _random_lm(tokenizer.vocab_size, e=8, u=12, seed=seed, cifg=cifg)
    reference = WordSuggester(lm, tokenizer, beam=beam, max_pieces=max_pieces)
    fast = WordSuggester(lm, tokenizer, beam=beam, max_pieces=max_pieces)
    cached, _contexts = CachedBeam(fast), {}
    rnd = random.Random(seed)
    texts = []
    for _ in range(12):
        sentence = " ".join(rnd.choice([*WORDS, "zebra", "cats,", "Dog"]) for _ in range(rnd.randint(1, 7)))
        texts += _typed(sentence)
        texts += _typed(sentence)[-3:-6:-1]  # backspace into the word
    root = cached.root(*lm.cell(np.array([2]), lm.zero_state(1)))
    for text in texts:
        words, partial = split_typed(text)
        node = root
        for word in words:  # one trie for the whole run: nodes are shared across sentences
            node = cached.feed(node, fast.word_pieces(word))
        for k in (1, 3, 5):
            assert cached.suggest(node, partial, k) == reference.suggest(text, k), (text, k)


def test_consistent_pieces_match_the_reference_rule(tokenizer):
    s = WordSuggester(_random_lm(tokenizer.vocab_size, e=4, u=5, seed=0), tokenizer)
    cached = CachedBeam(s)
    texts = ({"", "t", "th", "the", "then", "thx", "mo", "morning", "z", "a", "an"}
             | {w[:i] for w in WORDS for i in range(5)})
    for prefix in texts:
        for so_far in texts:
            for index, ids in ((cached.starts, s.start_ids), (cached.conts, s.cont_ids)):
                got = index.consistent(prefix, so_far)
                got = set(ids.tolist()) if got is None else set(got.tolist())
                assert got == set(ids[s._consistent(prefix, so_far, ids)].tolist()), (prefix, so_far)


def test_a_repeated_keystroke_takes_no_model_step(tmp_path, monkeypatch):
    predictor = ModelPredictor(publish_random(tmp_path / "models", seed=5).path)
    lm = predictor.suggester.lm
    steps = []
    monkeypatch.setattr(lm, "logits", lambda h, f=lm.logits: steps.append(len(h)) or f(h))
    monkeypatch.setattr(lm, "cell", lambda t, s, f=lm.cell: steps.append(t) or f(t, s))
    first = predictor.suggest("the cat s")
    assert steps, "the first keystroke must run the model"
    steps.clear()
    assert predictor.suggest("the cat s") == first and steps == []


def test_a_finished_word_reuses_the_node_the_beam_computed(tmp_path, monkeypatch):
    predictor = ModelPredictor(publish_random(tmp_path / "models", seed=6).path)
    beam, lm = predictor.beam, predictor.suggester.lm
    context = predictor._context(["the"])
    pieces = predictor.suggester.word_pieces("cat")
    node = context
    for piece in pieces:
        node = beam._child(node, piece)  # what the beam does while "cat" is typed
    monkeypatch.setattr(lm, "cell", lambda *a: pytest.fail("stepped the model for a word already in the trie"))
    assert beam.feed(context, pieces) is node
    assert predictor._context(["the", "cat"]) is node


def test_only_the_newest_context_keeps_its_beam(tmp_path):
    predictor = ModelPredictor(publish_random(tmp_path / "models", seed=7).path)
    for i in range(1, len("the cat sat ") + 1):
        predictor.suggest("the cat sat "[:i])
    assert all(not c.children for c in predictor._contexts[:-1])
    assert predictor._contexts[-1].children  # the beam after "the cat sat "


# -- the early stop, by hand ------------------------------------------------------------------------
def _log(d: dict[str, float]) -> dict[str, float]:
    return {w: math.log(p) for w, p in d.items()}


def test_settled_when_what_is_left_cannot_reach_any_gap():
    finished = _log({"a": 0.5, "b": 0.3, "c": 0.1})
    # Gaps: a-b .2, b-c .2, c-nothing .1. An unrelated entry with .05 left cannot close any of them.
    assert _settled(finished, [("x", 0.05, True)], 3)
    assert not _settled(finished, [("x", 0.2, True)], 3)  # a new word "x…" could pass c


def test_settled_counts_gains_only_for_words_an_entry_can_still_become():
    finished = _log({"a": 0.5, "b": 0.3, "c": 0.1})
    assert not _settled(finished, [("b", 0.25, True)], 3)  # "b…" words: b could reach .55 > a
    assert _settled(finished, [("c", 0.06, True), ("d", 0.05, True)], 3)  # c ≤ .16 < b; outsiders ≤ .06 < c
    # "c" and "ca" lie on one chain of prefixes: a word "ca…" could gain .11 and pass c (.1).
    assert not _settled(finished, [("c", 0.06, True), ("ca", 0.05, True)], 3)
    close = _log({"a": 0.5, "b": 0.3, "c": 0.25})  # no outsider can pass c (.25) with .21 or less left
    assert _settled(close, [("b", 0.15, True)], 3)  # b ≤ .45 < a
    assert not _settled(close, [("b", 0.21, True)], 3)  # b could reach .51 > a
    assert not _settled(close, [("c", 0.21, True)], 3)  # c could reach .46 > b
    assert _settled(close, [("a", 0.21, True)], 3)  # a only gains
    # An entry already stepped adds only continuations, words longer than its own: "b" itself cannot gain.
    assert _settled(close, [("b", 0.21, False)], 3)
    assert not _settled(close, [("", 0.21, False)], 3)  # the bare "▁" piece continues into any word, b too


def test_settled_looks_at_each_word_outside_the_top_k():
    finished = _log({"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.09})
    assert _settled(finished, [("x", 0.05, True)], 3)  # only "x…" words gain: none passes c
    assert not _settled(finished, [("d", 0.05, True)], 3)  # d could reach .14 > c
    assert _settled(finished, [("d", 0.05, False)], 3)  # only longer "d…" words, each at most .05
    assert not _settled(finished, [("", 0.05, False)], 3)  # the bare "▁" piece continues into d too


def test_settled_never_on_a_tie():
    assert not _settled(_log({"a": 0.5, "b": 0.5, "c": 0.1}), [], 3)
    assert not _settled(_log({"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.1}), [], 3)
    assert _settled(_log({"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.09}), [], 3)
