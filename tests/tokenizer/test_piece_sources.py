"""Where the SentencePiece word counts come from: the devices, a public corpus, or both."""

from __future__ import annotations

import collections
import json

import pytest

from federated.vocabulary import equal_weight_sum, summed_word_counts, train_tokenizer
from tokenizer.vocab import CONFIG_FILE, Tokenizer, TokenizerConfig


@pytest.fixture
def public(tmp_path):
    path = tmp_path / "public.txt"
    path.write_text("The Congress shall have power.\nThe power of the Union, and the people!\n" * 20, encoding="utf-8")
    return path


def test_equal_weight_sum_scales_the_smaller_table_up():
    devices = collections.Counter({"the": 3, "cat": 1})  # total 4
    public = collections.Counter({"the": 10, "union": 6})  # total 16: devices are scaled by 4
    total, device_weight = equal_weight_sum(devices, public)
    assert total == {"the": 12 + 10, "cat": 4, "union": 6} and device_weight == 4.0
    total, device_weight = equal_weight_sum(public, devices)  # the other way round: public is the larger
    assert device_weight == 0.25 and total == {"the": 22, "cat": 4, "union": 6}
    small = collections.Counter({"rare": 1, "common": 99})
    total, _ = equal_weight_sum(small, collections.Counter({"x": 150}))
    assert total["rare"] == 2 and total["common"] == 148  # rounded, never below 1


def test_pieces_from_public_text_need_no_devices(home, public):
    report = train_tokenizer(home, TokenizerConfig(vocab_size=40), pieces="public", public_corpus=public)
    assert report.devices == 0 and report.distinct_words == 9  # the congress shall have power of union and people
    meta = json.loads((home.tokenizer / CONFIG_FILE).read_text())
    assert meta["gathering"]["pieces"] == "public" and meta["gathering"]["method"] == "public_corpus"
    assert meta["gathering"]["public"]["path"] == str(public) and meta["gathering"]["public"]["words"] == 20 * 13
    tok = Tokenizer.load(home.tokenizer)
    assert tok.decode(tok.encode("the power of the union")) == "the power of the union"  # lower-case words only


def test_pieces_from_both_sum_devices_and_public_words(seeded_home, public):
    device_counts, _ = summed_word_counts(seeded_home)
    report = train_tokenizer(seeded_home, TokenizerConfig(vocab_size=64), pieces="both", public_corpus=public)
    meta = json.loads((seeded_home.tokenizer / CONFIG_FILE).read_text())
    g = meta["gathering"]
    assert g["pieces"] == "both" and g["method"] == "plain_sum" and report.devices == 60
    assert report.distinct_words == len(set(device_counts) | {"congress", "shall", "have", "power", "of",
                                                               "union", "people", "the", "and"})
    assert g["public"]["device_weight"] == pytest.approx(20 * 13 / sum(device_counts.values()))


def test_an_unknown_piece_source_is_refused(home):
    with pytest.raises(ValueError, match="pieces must be one of devices, public, both"):
        train_tokenizer(home, TokenizerConfig(), pieces="web")
