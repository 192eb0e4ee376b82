"""Sentences as fixed-length windows of piece ids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm.examples import cached_examples, encode_examples, sentence_windows
from tokenizer.specials import BOS_ID, EOS_ID, PAD_ID

B, E, P = BOS_ID, EOS_ID, PAD_ID


def test_short_sentence_is_padded():
    assert sentence_windows([10, 11], 5) == [[B, 10, 11, E, P, P]]


def test_empty_sentence_is_just_markers():
    assert sentence_windows([], 3) == [[B, E, P, P]]


def test_sentence_filling_one_window_exactly():
    # <s> + 3 ids + </s> = 5 tokens = sequence_length + 1: one full window, no padding.
    assert sentence_windows([10, 11, 12], 4) == [[B, 10, 11, 12, E]]


def test_sentence_exactly_sequence_length_long():
    # 4 ids with sequence_length 4: <s> 10 11 12 13 </s> needs a second window for the last pair.
    assert sentence_windows([10, 11, 12, 13], 4) == [[B, 10, 11, 12, 13], [13, E, P, P, P]]


def test_long_sentence_is_cut_into_overlapping_windows():
    assert sentence_windows(list(range(10, 20)), 4) == [
        [B, 10, 11, 12, 13],
        [13, 14, 15, 16, 17],
        [17, 18, 19, E, P],
    ]
    assert sentence_windows(list(range(10, 17)), 4) == [
        [B, 10, 11, 12, 13],
        [13, 14, 15, 16, E],
    ]


def test_sequence_length_one():
    assert sentence_windows([10, 11], 1) == [[B, 10], [10, 11], [11, E]]


@given(st.lists(st.integers(4, 1000), max_size=60), st.integers(1, 20))
@settings(max_examples=200, deadline=None)
def test_windows_cover_every_pair_once(ids, length):
    windows = sentence_windows(ids, length)
    seq = [B, *ids, E]
    assert all(len(w) == length + 1 for w in windows)
    assert len(windows) == -(-(len(seq) - 1) // length)  # ceil
    pairs = [(w[i], w[i + 1]) for w in windows for i in range(length) if w[i + 1] != P]
    assert pairs == list(itertools.pairwise(seq))
    for w in windows:  # padding only at the end of a window
        real = [t for t in w if t != P]
        assert w[: len(real)] == real


def _fake_encode(text: str) -> list[int]:
    return [4 + len(word) for word in text.split()]


def test_encode_examples_shape_and_dtype():
    out = encode_examples(_fake_encode, ["a bb ccc", "dddd", "e f g h i j k"], 4)
    assert out.dtype == np.int32
    assert out.shape == (1 + 1 + 2, 5)
    np.testing.assert_array_equal(
        out,
        [
            [B, 5, 6, 7, E],
            [B, 8, E, P, P],
            [B, 5, 5, 5, 5],
            [5, 5, 5, 5, E],
        ],
    )


@pytest.mark.parametrize("length", [1, 4, 20])
def test_encode_examples_of_nothing(length):
    out = encode_examples(_fake_encode, [], length)
    assert out.shape == (0, length + 1)
    assert out.dtype == np.int32
    out = encode_examples(_fake_encode, iter(()), length)
    assert out.shape == (0, length + 1)


def test_encode_examples_accepts_a_generator():
    out = encode_examples(_fake_encode, (s for s in ["a", "b"]), 3)
    assert out.shape == (2, 4)


class _CountingEncode:
    def __init__(self):
        self.calls = 0

    def __call__(self, sentence):
        self.calls += 1
        return _fake_encode(sentence)


def test_cached_examples_encode_once_and_again_when_the_split_or_tokenizer_changes(tmp_path):
    enc = _CountingEncode()
    first = cached_examples(tmp_path, ["a bb", "ccc"], enc, tokenizer_sha256="t1", sequence_length=4)
    assert np.array_equal(first, encode_examples(_fake_encode, ["a bb", "ccc"], 4)) and enc.calls == 2
    again = cached_examples(tmp_path, ["a bb", "ccc"], enc, tokenizer_sha256="t1", sequence_length=4)
    assert np.array_equal(again, first) and enc.calls == 2
    cached_examples(tmp_path, ["a bb", "ccc", "dd"], enc, tokenizer_sha256="t1", sequence_length=4)
    assert enc.calls == 5
    cached_examples(tmp_path, ["a bb", "ccc", "dd"], enc, tokenizer_sha256="t2", sequence_length=4)
    assert enc.calls == 8


def test_a_torn_cache_file_is_rebuilt(tmp_path):
    cached_examples(tmp_path, ["a bb"], _fake_encode, tokenizer_sha256="t", sequence_length=4)
    path = tmp_path / "cache" / "examples.npz"
    path.write_bytes(path.read_bytes()[:20])
    out = cached_examples(tmp_path, ["a bb"], _fake_encode, tokenizer_sha256="t", sequence_length=4)
    assert np.array_equal(out, encode_examples(_fake_encode, ["a bb"], 4))


def test_deleting_the_log_deletes_the_cached_token_ids(tmp_path):
    from keyboard.store import Device

    with Device(tmp_path / "dev", create=True) as device:
        device.append("hello there")
        cached_examples(device.directory, device.splits().train, _fake_encode, tokenizer_sha256="t", sequence_length=4)
        assert (device.directory / "cache").is_dir()
        device.delete_log()
    assert not (tmp_path / "dev" / "cache").exists()
