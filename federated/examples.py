"""A device's sentences as fixed-length training examples of piece ids (numpy only)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tokenizer.specials import BOS_ID, EOS_ID, PAD_ID


def sentence_windows(ids: list[int], sequence_length: int) -> list[list[int]]:
    """``<s> ids </s>`` cut into windows of ``sequence_length + 1`` that overlap by one token.

    Each window gives ``sequence_length`` (input, next-piece) pairs; the last is padded.
    """
    seq = [BOS_ID, *ids, EOS_ID]
    span = sequence_length + 1
    windows = []
    for start in range(0, max(len(seq) - 1, 1), sequence_length):
        window = seq[start : start + span]
        windows.append(window + [PAD_ID] * (span - len(window)))
    return windows


def encode_examples(encode, sentences: Iterable[str], sequence_length: int) -> np.ndarray:
    """Int32 array ``[examples, sequence_length + 1]``: inputs are ``[:, :-1]``, targets ``[:, 1:]``."""
    rows = [w for s in sentences for w in sentence_windows(encode(s), sequence_length)]
    if not rows:
        return np.zeros((0, sequence_length + 1), np.int32)
    return np.asarray(rows, dtype=np.int32)
