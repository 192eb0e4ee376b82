"""Building the vocabulary from word counts that devices compute on their own train splits.

Two ways to gather the counts that SentencePiece trains on:

* plain sum (``gathering=None``): each device reports the counts of all words in its train
  split and the server sums them. The server sees the full summed table, rare words included.
* private heavy hitters (a ``HeavyHittersConfig``): each device contributes only its ``m``
  most frequent words, each once, through TFF's IBLT heavy-hitters computation; the server
  learns how many devices use each word that at least ``k`` devices use, optionally with DP
  noise (``federated.heavy_hitters``). The table is then devices-per-word, not tokens-per-word.

Where the pieces come from (``pieces``): the devices' table (the default), a public corpus's word
counts (``federated/public_text.py``: no device takes part), or both summed with equal weight.
Either way SentencePiece trains on the resulting (word, count) table, and ``tokenizer.json``
records how the counts were gathered.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from common.errors import FedkbError
from common.layout import Home
from federated import public_text
from federated.heavy_hitters import HeavyHitters, HeavyHittersConfig
from federated.population import members, taking_part
from keyboard.store import Device
from tokenizer import vocab
from tokenizer.private_counts import device_words

PIECE_SOURCES = ("devices", "public", "both")


class VocabularyError(FedkbError):
    """No devices to count words on."""


@dataclass(frozen=True)
class VocabularyReport:
    devices: int
    words: int  # sum of the counts trained on (tokens for the plain sum, device-word pairs for heavy hitters)
    distinct_words: int
    vocab_size: int
    path: str
    gathering: dict = field(default_factory=lambda: {"method": "plain_sum"})


def _population(home: Home):
    population = taking_part(home, members(home))  # an opted-out device's words are not counted
    if not population:
        raise VocabularyError(f"no devices in {home.devices}; run `fedkb population seed --corpus shakespeare` first")
    return population


def summed_word_counts(home: Home) -> tuple[collections.Counter[str], int]:
    """Sums every device's train-split word counts; returns (counts, devices counted)."""
    population = _population(home)
    total: collections.Counter[str] = collections.Counter()
    for member in population:
        with Device(home.device(member.device_id)) as device:
            total.update(device.train_word_counts())
    return total, len(population)


def heavy_hitter_counts(
    home: Home, config: HeavyHittersConfig, *, rng: np.random.Generator | None = None
) -> HeavyHitters:
    """Runs private heavy-hitters discovery over every device, in a TFF runtime of its own.

    Each device picks its own top ``m`` words (the on-device step); the lists go only into
    TFF's client computation. Starts and stops its own ``worker_binary``, so do not call it
    inside another ``LocalRuntime`` (TFF has one default context).
    """
    from federated import heavy_hitters
    from federated.runtime import LocalRuntime

    word_lists = []
    for member in _population(home):
        with Device(home.device(member.device_id)) as device:
            counts = device.train_word_counts()
        word_lists.append(device_words(counts, config.max_words_per_device, config.max_word_bytes))
    home.logs.mkdir(parents=True, exist_ok=True)
    with LocalRuntime(log_path=home.logs / "worker.log"):
        return heavy_hitters.discover(word_lists, config, rng=rng)


def default_character_coverage(gathering: HeavyHittersConfig | None, pieces: str = "devices") -> float:
    """SentencePiece's character coverage to use with each way of gathering the counts.

    Heavy hitters keep only words that k devices use, so every character of those words is kept
    (1.0); with fewer, rarer-looking words, 0.9995 turned even "-" and "z" into <unk> on the
    Shakespeare population. The plain sum keeps 0.9995, which drops the rarest characters, and so
    does a table with public text in it: there the rarest characters are truly rare.
    """
    return 1.0 if gathering is not None and pieces == "devices" else vocab.TokenizerConfig.character_coverage


def public_word_counts(path) -> tuple[collections.Counter[str], dict]:
    """The word counts of a public corpus (words as ``tokenizer.words`` defines them) and their provenance."""
    text = public_text.read(public_text.resolve(path))
    counts = text.word_counts()
    return counts, {"path": str(text.path), "sha256": text.sha256, "passages": len(text.passages),
                    "words": sum(counts.values()), "distinct_words": len(counts)}


def equal_weight_sum(
    devices: collections.Counter[str], public: collections.Counter[str]
) -> tuple[collections.Counter[str], float]:
    """``devices + public`` with the smaller table scaled up to the other's total; returns (sum, factor).

    The devices' table counts devices per word (heavy hitters) or tokens (plain sum), a public
    corpus counts tokens, and their sizes differ by orders of magnitude: equal totals give each
    half the mass, so the devices' words keep their pieces whatever the corpus size. Scaling up
    (never down) keeps every count an integer of at least 1.
    """
    small, large = sorted((devices, public), key=lambda c: sum(c.values()))
    factor = sum(large.values()) / max(sum(small.values()), 1)
    total = collections.Counter({w: max(1, round(c * factor)) for w, c in small.items() if c > 0})
    total.update(large)
    return total, factor if small is devices else 1 / factor


def train_tokenizer(
    home: Home, config: vocab.TokenizerConfig, gathering: HeavyHittersConfig | None = None, *,
    pieces: str = "devices", public_corpus=None,
) -> VocabularyReport:
    """Gathers word counts (plain sum or private heavy hitters, a public corpus, or both) and trains SentencePiece.

    ``pieces``: ``devices`` (the devices' table only), ``public`` (the word counts of
    ``public_corpus`` only; no device takes part) or ``both`` (``equal_weight_sum``).
    """
    if pieces not in PIECE_SOURCES:
        raise ValueError(f"pieces must be one of {', '.join(PIECE_SOURCES)}, got {pieces!r}")
    public = None
    if pieces != "devices":
        public_counts, public = public_word_counts(public_corpus if public_corpus is not None else "public")
    if pieces == "public":
        counts, devices, provenance = public_counts, 0, {"method": "public_corpus"}
    else:
        counts, devices, provenance = _device_counts(home, gathering)
    if pieces == "both":
        counts, public["device_weight"] = equal_weight_sum(counts, public_counts)
    proto = vocab.train_from_counts(counts, config)
    provenance = {**provenance, "pieces": pieces, **({"public": public} if public else {})}
    words = sum(counts.values())
    tok = vocab.save(
        home.tokenizer, proto, config,
        {"devices": devices, "words": words, "distinct_words": len(counts), "gathering": provenance},
    )
    return VocabularyReport(devices, words, len(counts), tok.vocab_size, str(home.tokenizer), provenance)


def _device_counts(home: Home, gathering: HeavyHittersConfig | None) -> tuple[collections.Counter[str], int, dict]:
    """The devices' word-count table: the plain sum, or private heavy hitters."""
    if gathering is None:
        counts, devices = summed_word_counts(home)
        provenance: dict = {"method": "plain_sum"}
    else:
        found = heavy_hitter_counts(home, gathering)
        counts, devices, provenance = found.counts, found.devices, found.provenance(gathering)
        if len(counts) < 4:
            raise VocabularyError(
                f"only {len(counts)} words were used by at least {gathering.k_anonymity} devices"
                + (f" and survived the DP threshold ({found.mechanism.threshold:.1f} devices)"
                   if found.mechanism else "")
                + f" among {devices} devices; lower --k-anonymity, raise --max-words-per-device or --dp-epsilon, "
                "or seed more devices")
    from federated import ledger

    dp = provenance.get("dp") if isinstance(provenance.get("dp"), dict) else None
    ledger.append(home.server, {"kind": "vocabulary", "method": provenance["method"], "devices": devices,
                                "epsilon": dp and dp["epsilon"], "delta": dp["delta"] if dp else 0.0})
    return counts, devices, provenance
