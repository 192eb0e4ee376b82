"""Building the vocabulary from word counts that devices compute on their own train splits.

Each device reports the counts of the words in its train split; the server only ever sees
the sum. (A later step replaces the plain sum with TFF's private heavy hitters.)
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from fedkb.home import Home
from federated.population import members
from keyboard.store import Device
from tokenizer import vocab


class VocabularyError(Exception):
    """No devices to count words on."""


@dataclass(frozen=True)
class VocabularyReport:
    devices: int
    words: int
    distinct_words: int
    vocab_size: int
    path: str


def summed_word_counts(home: Home) -> tuple[collections.Counter[str], int]:
    """Sums every device's train-split word counts; returns (counts, devices counted)."""
    population = members(home)
    if not population:
        raise VocabularyError(f"no devices in {home.devices}; run `fedkb population seed --corpus shakespeare` first")
    total: collections.Counter[str] = collections.Counter()
    for member in population:
        with Device(home.device(member.device_id)) as device:
            total.update(device.train_word_counts())
    return total, len(population)


def train_tokenizer(home: Home, config: vocab.TokenizerConfig) -> VocabularyReport:
    counts, devices = summed_word_counts(home)
    proto = vocab.train_from_counts(counts, config)
    tok = vocab.save(
        home.tokenizer, proto, config,
        {"devices": devices, "words": sum(counts.values()), "distinct_words": len(counts)},
    )
    return VocabularyReport(devices, sum(counts.values()), len(counts), tok.vocab_size, str(home.tokenizer))
