"""The tokenizer under arbitrary text and ids, on a tiny model trained in memory: every input is
encoded and decoded, or refused with a ``TokenizerError`` that says what is wrong and where."""

from __future__ import annotations

import collections
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenizer.specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID, WORD_START
from tokenizer.vocab import CONFIG_FILE, MODEL_FILE, Tokenizer, TokenizerConfig, TokenizerError, save, train_from_counts

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORDS = [
    "the", "a", "cat", "dog", "sat", "ran", "on", "in", "to", "park", "mat", "ball", "red", "big",
    "small", "and", "then", "with", "my", "your", "good", "morning",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    counts = collections.Counter({w: 60 - 2 * i for i, w in enumerate(WORDS)})
    return Tokenizer(train_from_counts(counts, TokenizerConfig(vocab_size=48)), source="tiny.model")


any_text = st.text(st.characters(codec=None, categories=None), max_size=60)
known_text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@given(any_text)
@FUZZ
def test_any_text_encodes_to_valid_ids_or_is_refused_for_its_surrogate(tok, text):
    try:
        ids = tok.encode(text)
    except TokenizerError as exc:
        assert _has_surrogate(text)
        assert str(exc).startswith("tiny.model: cannot encode text that is not valid Unicode: ")
        first = next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)
        assert f"at character {first} is a lone surrogate" in str(exc)
        return
    assert not _has_surrogate(text)
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert not {PAD_ID, BOS_ID, EOS_ID} & set(ids)  # specials never come from text
    out = tok.decode(ids)
    assert isinstance(out, str)
    assert tok.encode(out) == ids or UNK_ID in ids  # what decodes re-encodes the same, unknowns aside


@given(known_text)
@FUZZ
def test_text_of_known_words_round_trips_exactly(tok, text):
    ids = tok.encode(text)
    assert UNK_ID not in ids
    assert tok.decode(ids) == text
    assert sum(tok.piece(i).startswith(WORD_START) for i in ids) == len(text.split())


@given(known_text, st.lists(st.sampled_from(["\x00", "\x1b", "\u200b", "\ufeff", "\t", "\u00a0", "\u3000"]),
                            min_size=1, max_size=4))
@FUZZ
def test_control_characters_never_crash_and_never_lose_the_known_words(tok, text, junk):
    noisy = "".join(junk) + text + "".join(junk)
    out = tok.decode(tok.encode(noisy))
    for word in text.split():
        assert word in out


@pytest.mark.parametrize("text", ["x" * 1_000_000, "the cat " * 100_000, "\x00" * 100_000, ""])
def test_huge_and_empty_text(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert (ids == []) == (text == "")
    tok.decode(ids)


@given(st.lists(st.one_of(st.integers(min_value=-2**40, max_value=2**40), st.integers(min_value=0, max_value=60)),
                max_size=10))
@FUZZ
def test_any_ids_decode_or_are_refused_naming_the_id(tok, ids):
    bad = [i for i in ids if not 0 <= i < tok.vocab_size]
    try:
        out = tok.decode(ids)
    except TokenizerError as exc:
        assert bad, exc
        assert str(exc).startswith(f"tiny.model: cannot decode piece id {bad[0]}: out of range")
        assert f"0..{tok.vocab_size - 1}" in str(exc)
        return
    assert not bad and isinstance(out, str)


@pytest.mark.parametrize("piece_id", [-1, 48, 10**12])
def test_piece_refuses_unknown_ids(tok, piece_id):
    with pytest.raises(TokenizerError, match=f"piece id {piece_id}: out of range"):
        tok.piece(piece_id)


def test_every_piece_is_named(tok):
    for i in range(tok.vocab_size):
        assert isinstance(tok.piece(i), str) and tok.piece(i)


@pytest.mark.parametrize("bad", [None, 5, 2.5])
def test_non_text_is_refused(tok, bad):
    with pytest.raises(TokenizerError, match="cannot encode"):
        tok.encode(bad)


# -- training from arbitrary word counts --------------------------------------------------------------
@given(st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), st.integers(-5, 50), max_size=30))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_training_on_any_counts_gives_a_working_model_or_says_too_few(counts):
    usable = [w for w, c in counts.items() if c > 0 and w and "\t" not in w and not w.isspace()]
    try:
        proto = train_from_counts(counts, TokenizerConfig(vocab_size=16))
    except TokenizerError as exc:
        if len(usable) < 4:
            assert str(exc).startswith(f"only {len(usable)} distinct words were counted")
        else:  # e.g. more distinct characters than pieces: SentencePiece's reason, and what to do
            assert str(exc).startswith(f"SentencePiece cannot train a 16-piece unigram model on {len(usable)} ")
            assert "--vocab-size" in str(exc) and "\n" not in str(exc)
        return
    assert len(usable) >= 4
    t = Tokenizer(proto)
    for word in usable:
        assert all(0 <= i < t.vocab_size for i in t.encode(word))


# -- the saved tokenizer: damage is detected, naming the file --------------------------------------
def _saved(tmp_path, tok) -> Tokenizer:
    return save(tmp_path / "tokenizer", tok.model_proto, TokenizerConfig(vocab_size=48), {"devices": 1})


def test_a_swapped_or_altered_model_file_is_refused(tmp_path, tok):
    _saved(tmp_path, tok)
    model = tmp_path / "tokenizer" / MODEL_FILE
    other = train_from_counts(collections.Counter({w: 5 + i for i, w in enumerate(WORDS)}),
                              TokenizerConfig(vocab_size=40))
    model.write_bytes(other)  # a valid SentencePiece model, just not the one recorded
    with pytest.raises(TokenizerError, match=f"{model}: sha256 does not match .*{CONFIG_FILE}"):
        Tokenizer.load(tmp_path / "tokenizer")
    model.write_bytes(tok.model_proto[: len(tok.model_proto) // 2])  # truncated
    with pytest.raises(TokenizerError, match=f"{model}: sha256 does not match"):
        Tokenizer.load(tmp_path / "tokenizer")


def test_a_damaged_config_is_refused_and_a_missing_one_is_not_required(tmp_path, tok):
    _saved(tmp_path, tok)
    config = tmp_path / "tokenizer" / CONFIG_FILE
    config.write_text("{not json")
    with pytest.raises(TokenizerError, match=f"{config}: unreadable"):
        Tokenizer.load(tmp_path / "tokenizer")
    config.unlink()
    assert Tokenizer.load(tmp_path / "tokenizer").sha256 == tok.sha256
    assert json.loads(json.dumps({"ok": True}))  # keeps json imported for the config checks above


def test_an_unreadable_model_path_is_a_tokenizer_error(tmp_path):
    (tmp_path / "tokenizer" / MODEL_FILE).mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(TokenizerError, match="cannot read"):
        Tokenizer.load(tmp_path / "tokenizer")
