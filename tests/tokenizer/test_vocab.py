"""The SentencePiece vocabulary: training from word counts, special ids, saving, federated sums."""

from __future__ import annotations

import collections
import hashlib
import json
import random

import pytest

from federated.corpus import group_by_user, read_records
from federated.population import members, seed
from federated.vocabulary import VocabularyError, summed_word_counts, train_tokenizer
from keyboard.store import Device, heldout_count
from tokenizer import specials
from tokenizer.vocab import CONFIG_FILE, MODEL_FILE, Tokenizer, TokenizerConfig, TokenizerError, save, train_from_counts

SMALL = TokenizerConfig(vocab_size=64)


@pytest.fixture(scope="module")
def counts() -> collections.Counter[str]:
    """About 200 varied made-up words with Zipf-ish counts."""
    rng = random.Random(0)
    syllables = ["ka", "ro", "mi", "te", "su", "na", "lo", "pe", "di", "gu", "ba", "ve", "fi", "zo", "ch", "sh", "th",
                 "an", "er", "in", "on"]
    words: set[str] = set()
    while len(words) < 200:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))))
    return collections.Counter({w: 1 + 500 // (rank + 1) for rank, w in enumerate(sorted(words))})


@pytest.fixture(scope="module")
def proto(counts) -> bytes:
    return train_from_counts(counts, SMALL)


@pytest.fixture(scope="module")
def tok(proto) -> Tokenizer:
    return Tokenizer(proto)


def test_trains_to_the_asked_size(tok):
    assert tok.vocab_size == 64
    assert len(tok.sha256) == 64


def test_special_ids_match_specials(tok):
    assert (specials.PAD_ID, specials.UNK_ID, specials.BOS_ID, specials.EOS_ID) == (0, 1, 2, 3)
    assert tok.piece(specials.PAD_ID) == specials.PAD == "<pad>"
    assert tok.piece(specials.UNK_ID) == specials.UNK == "<unk>"
    assert tok.piece(specials.BOS_ID) == specials.BOS == "<s>"
    assert tok.piece(specials.EOS_ID) == specials.EOS == "</s>"


def test_encode_decode_round_trip(tok, counts):
    sentence = " ".join(sorted(counts)[:12])
    ids = tok.encode(sentence)
    assert ids and all(4 <= i < tok.vocab_size for i in ids)  # no specials, no unk
    assert tok.decode(ids) == sentence
    # decode drops padding and sentence markers
    assert tok.decode([specials.BOS_ID, *ids, specials.EOS_ID, specials.PAD_ID, specials.PAD_ID]) == sentence


def test_word_starts_are_marked(tok, counts):
    words = sorted(counts)[:5]
    ids = tok.encode(" ".join(words))
    assert sum(tok.piece(i).startswith(specials.WORD_START) for i in ids) == len(words)
    assert tok.piece(ids[0]).startswith(specials.WORD_START)


def test_unseen_word_still_encodes(tok):
    for word in ("kamite", "xyzzy", "日本語", "Qüx!"):
        ids = tok.encode(word)
        assert ids, word
        assert all(0 <= i < tok.vocab_size for i in ids)
        tok.decode(ids)  # does not raise
    assert specials.UNK_ID in tok.encode("xyzzy")  # letters never seen become <unk>
    assert specials.UNK_ID not in tok.encode("kamite")  # a new word of known pieces is spelled out


def test_training_is_deterministic(counts, proto):
    assert train_from_counts(counts, SMALL) == proto


@pytest.mark.parametrize(
    "few",
    [
        {},
        {"a": 5, "b": 3, "c": 1},
        {"a": 5, "b": 3, "c": 1, "d": 0, "e": -2, "": 9, "  ": 4, "x\ty": 2},  # only three usable
    ],
)
def test_too_few_words_is_an_error(few):
    with pytest.raises(TokenizerError, match=r"only \d distinct words"):
        train_from_counts(few, SMALL)


@pytest.mark.parametrize("bad", [b"garbage", b"", b"\x00" * 64])
def test_garbage_model_is_an_error(bad):
    with pytest.raises(TokenizerError, match="not a SentencePiece model"):
        Tokenizer(bad, source="junk.model")


def test_config_is_checked():
    with pytest.raises(ValueError, match="vocab_size"):
        TokenizerConfig(vocab_size=8)
    with pytest.raises(ValueError, match="model_type"):
        TokenizerConfig(model_type="word")
    with pytest.raises(ValueError, match="character_coverage"):
        TokenizerConfig(character_coverage=0.5)


def test_bpe_also_trains(counts):
    tok = Tokenizer(train_from_counts(counts, TokenizerConfig(vocab_size=64, model_type="bpe")))
    sentence = " ".join(sorted(counts)[:6])
    assert tok.decode(tok.encode(sentence)) == sentence


def test_save_and_load(tmp_path, proto):
    directory = tmp_path / "server" / "tokenizer"
    loaded = save(directory, proto, SMALL, {"devices": 3, "note": "test"})
    model = (directory / MODEL_FILE).read_bytes()
    meta = json.loads((directory / CONFIG_FILE).read_text())
    assert model == proto
    assert meta["sha256"] == hashlib.sha256(model).hexdigest() == loaded.sha256
    assert meta["vocab_size"] == 64
    assert meta["config"]["vocab_size"] == 64 and meta["config"]["model_type"] == "unigram"
    assert meta["devices"] == 3 and meta["note"] == "test"
    assert Tokenizer.load(directory).sha256 == Tokenizer.load(directory / MODEL_FILE).sha256 == meta["sha256"]
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_load_missing_is_an_error(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer at"):
        Tokenizer.load(tmp_path)


def test_save_refuses_garbage(tmp_path):
    with pytest.raises(TokenizerError):
        save(tmp_path / "tok", b"garbage", SMALL, {})
    assert not (tmp_path / "tok" / MODEL_FILE).exists()


# -- from devices ----------------------------------------------------------------------------------
@pytest.fixture
def seeded(home, small_corpus):
    """small_corpus plus one newest sentence of alice's that holds words nobody else typed."""
    corpus = small_corpus.with_name("with-zebra.jsonl")
    corpus.write_bytes(small_corpus.read_bytes() + b'{"user": "alice", "text": "zebra crossing"}\n')
    seed(home, corpus)
    return home, corpus


def test_summed_word_counts_is_the_sum_of_train_splits(seeded):
    home, corpus = seeded
    counts, devices = summed_word_counts(home)
    assert devices == 3

    per_device = collections.Counter()
    for m in members(home):
        with Device(home.device(m.device_id)) as d:
            per_device.update(d.train_word_counts())
    assert counts == per_device

    # Independently, from the corpus: each kept user's oldest 80 %.
    expected = collections.Counter()
    for _user, recs in group_by_user(read_records(corpus), corpus).items():
        if len(recs) >= 10:
            for r in recs[: len(recs) - heldout_count(len(recs))]:
                expected.update(r.text.split())
    assert counts == expected

    # alice's newest sentence is held out, so its words are not counted anywhere...
    assert "zebra" not in counts and "crossing" not in counts
    # ...though they are on her device.
    with Device(home.device(members(home)[0].device_id)) as alice:
        assert alice.splits().heldout[-1] == "zebra crossing"


def test_summed_word_counts_without_devices(home):
    with pytest.raises(VocabularyError, match="no devices"):
        summed_word_counts(home)


def test_train_tokenizer_on_a_seeded_home(seeded):
    home, _ = seeded
    report = train_tokenizer(home, TokenizerConfig(vocab_size=32))
    counts, _ = summed_word_counts(home)
    assert report.devices == 3
    assert report.words == sum(counts.values()) and report.distinct_words == len(counts)
    assert report.path == str(home.tokenizer)
    tok = Tokenizer.load(home.tokenizer)
    assert tok.vocab_size == report.vocab_size
    meta = json.loads((home.tokenizer / CONFIG_FILE).read_text())
    assert meta["sha256"] == hashlib.sha256((home.tokenizer / MODEL_FILE).read_bytes()).hexdigest()
    assert meta["devices"] == 3 and meta["distinct_words"] == len(counts)
    sentence = "the cat sat on a mat"
    assert tok.decode(tok.encode(sentence)) == sentence
    # Training read no raw text into the server room.
    for f in home.server.rglob("*"):
        if f.is_file():
            assert b"zebra" not in f.read_bytes()
