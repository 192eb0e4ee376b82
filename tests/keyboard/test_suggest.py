"""The whole-word beam on a hand-made bigram model, worked out by hand."""

import numpy as np
import pytest

from common.artifacts import ArtifactError
from keyboard.suggest import WordSuggester
from tests.fakes import FakeTokenizer, TableLM, default_table


@pytest.fixture
def suggester():
    return WordSuggester(TableLM(default_table()), FakeTokenizer(), beam=4, max_pieces=4)


def test_first_word_scores_are_piece_probabilities_times_boundary(suggester):
    # the: .5 · P(boundary | ▁the) = .5 · 1   (next is ▁ca or ▁dog, both word starts)
    # cat: .3 · P(t|▁ca)=1 · P(boundary | t) = .6 (▁run)   = .18
    # cats: .3 · 1 · .4 · P(boundary | s)=1                 = .12
    # dog: .2 · P(boundary | ▁dog) = .5 (▁run; ',' continues the word)  = .10
    # dog,: .2 · .5 · P(boundary | ,) = 1                   = .10
    assert suggester.suggest("", k=3) == ["the", "cat", "cats"]
    got = suggester.suggest("", k=5)
    assert got[:3] == ["the", "cat", "cats"] and set(got[3:]) == {"dog", "dog,"}


def test_multi_piece_word_after_context(suggester):
    # After "the": ▁ca .7 → cat .7·.6 = .42, cats .7·.4 = .28; dog .3·.5 = .15, dog, .15.
    assert suggester.suggest("the ", k=2) == ["cat", "cats"]


def test_partial_word_is_completed_only_with_consistent_words(suggester):
    assert suggester.suggest("the ca", k=3) == ["cat", "cats"]
    assert suggester.suggest("the cats", k=3) == ["cats"]
    assert suggester.suggest("the d", k=3) == ["dog", "dog,"]
    assert suggester.suggest("the x", k=3) == []


def test_depth_limit_drops_long_words():
    s = WordSuggester(TableLM(default_table()), FakeTokenizer(), beam=4, max_pieces=2)
    assert "cats" not in s.suggest("", k=5)  # three pieces
    assert not s.can_produce("cats") and s.can_produce("cat")


def test_oov_and_punctuation(suggester):
    assert not suggester.can_produce("zebra")  # <unk>
    assert suggester.can_produce("dog,")  # punctuation attached to the word, two pieces
    assert suggester.can_produce(",")


def test_sentence_positions(suggester):
    out = suggester.suggest_sentence(["the", "cat", "run"], k=2)
    assert out == [["cat", "cats"], ["run"]]
    assert suggester.suggest_sentence(["the"], k=3) == []


def test_batched_equals_one_by_one(suggester):
    sentences = [["the", "cat", "run"], ["dog,", "the", "cats", "run"], ["the", "dog"]]
    batched = suggester.suggest_sentences(sentences, k=3)
    assert batched == [suggester.suggest_sentence(s, 3) for s in sentences]


def test_vocab_mismatch_is_refused():
    class Small(TableLM):
        pass

    lm = Small(default_table())
    lm.vocab_size = 5
    with pytest.raises(ArtifactError, match="pieces"):  # a user-facing error: the files do not fit together
        WordSuggester(lm, FakeTokenizer())


def test_real_numpy_model_matches_its_own_step_by_step_run(tmp_path):
    """With a real (random) model, sentence-level suggestions equal suggesting from each prefix."""
    from keyboard.lm import NumpyLM

    rng = np.random.default_rng(0)
    v, e, u = FakeTokenizer.vocab_size, 4, 5
    weights = {
        "embedding/embeddings": rng.normal(size=(v, e)).astype(np.float32),
        "rnn/cell/kernel": rng.normal(size=(2 * e, 3 * u)).astype(np.float32),
        "rnn/cell/bias": np.zeros(3 * u, np.float32),
        "rnn/cell/projection": rng.normal(size=(u, e)).astype(np.float32),
        "output_bias": np.zeros(v, np.float32),
    }
    s = WordSuggester(NumpyLM({"cifg": True}, weights), FakeTokenizer(), beam=3, max_pieces=3)
    words = ["the", "cat", "dog", "run"]
    whole = s.suggest_sentence(words, k=3)
    for i in range(1, len(words)):
        assert whole[i - 1] == s.suggest(" ".join(words[:i]) + " ", k=3)
