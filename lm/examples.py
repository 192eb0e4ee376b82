"""A device's sentences as fixed-length training examples of piece ids, kept on the device (numpy only)."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from common.layout import DeviceLayout
from tokenizer.specials import BOS_ID, EOS_ID, PAD_ID
from tokenizer.words import normalize


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
    """Int32 array ``[examples, sequence_length + 1]``: inputs are ``[:, :-1]``, targets ``[:, 1:]``.

    The model learns words, not the punctuation around them: each sentence is read as its words
    (``tokenizer.words.normalize``); a sentence with no word gives no example.
    """
    rows = [w for s in map(normalize, sentences) if s for w in sentence_windows(encode(s), sequence_length)]
    if not rows:
        return np.zeros((0, sequence_length + 1), np.int32)
    return np.asarray(rows, dtype=np.int32)




def cached_examples(device_dir: Path, sentences: list[str], encode, *, tokenizer_sha256: str,
                    sequence_length: int) -> np.ndarray:
    """The device's examples, re-encoded only when its train split or the tokenizer changed.

    A device keeps its train split as token ids between rounds, as a phone would, instead of
    re-tokenizing it for every round it joins. The file is a cache: it is keyed by a digest of
    the sentences, the tokenizer and the sequence length, and anything unreadable is rebuilt.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{tokenizer_sha256}\0{sequence_length}\0".encode())
    for s in sentences:
        digest.update(s.encode("utf-8", "surrogatepass") + b"\0")
    key = digest.hexdigest()
    path = DeviceLayout(device_dir).cache / "examples.npz"  # token ids never leave the device either
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["key"]) == key:
                return saved["examples"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        pass  # missing, stale format or torn by a crash: rebuild
    examples = encode_examples(encode, sentences, sequence_length)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".examples.{os.getpid()}.npz")
    np.savez(tmp, key=np.array(key), examples=examples)
    os.replace(tmp, path)  # no fsync: losing the cache in a crash only costs a re-encode
    return examples
