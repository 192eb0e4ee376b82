"""Hand-made stand-ins for a tokenizer and a language model, so beam results can be worked out by hand."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from tokenizer.specials import BOS_ID, EOS_ID

# ids 0-3 are the specials; then word-start pieces and continuation pieces.
PIECES = ["<pad>", "<unk>", "<s>", "</s>", "▁the", "▁ca", "t", "s", "▁dog", "▁,", ",", "▁run"]
ID = {p: i for i, p in enumerate(PIECES)}


class FakeTokenizer:
    """Encodes by a fixed table of words; anything else is <unk>."""

    source = "<fake>"
    sha256 = "fake"
    WORDS: ClassVar[dict[str, list[str]]] = {
        "the": ["▁the"], "cat": ["▁ca", "t"], "cats": ["▁ca", "t", "s"], "dog": ["▁dog"],
        "dog,": ["▁dog", ","], "run": ["▁run"], ",": ["▁,"],
    }

    vocab_size = len(PIECES)

    def piece(self, i: int) -> str:
        return PIECES[i]

    def encode(self, text: str) -> list[int]:
        return [ID[p] for w in text.split() for p in self.WORDS.get(w, ["<unk>"])]

    def decode(self, ids: list[int]) -> str:
        text = "".join(PIECES[i] for i in ids if i > 3 or i == 1).replace("▁", " ").strip()
        return text.replace("<unk>", " ⁇ ")


class TableLM:
    """A bigram model over pieces: the next-piece distribution depends only on the last piece fed."""

    def __init__(self, table: dict[int, dict[int, float]]):
        self.vocab_size = len(PIECES)
        self.logp = np.full((self.vocab_size, self.vocab_size), -np.inf, np.float32)
        for prev, dist in table.items():
            total = sum(dist.values())
            for nxt, p in dist.items():
                self.logp[prev, nxt] = np.log(p / total)
        self.embedding_dim = 1

    def zero_state(self, batch):
        return np.zeros((batch, 1), np.float32), np.zeros((batch, 1), np.float32)

    def cell(self, tokens, state):
        t = np.asarray(tokens, np.float32).reshape(-1, 1)
        return t, t  # the "state" is the last piece

    def logits(self, h):
        return self.logp[h[:, 0].astype(int)]

    def log_probs(self, h):
        return self.logits(h)

    def step(self, tokens, state):
        h, c = self.cell(tokens, state)
        return self.log_probs(h), (h, c)

    def run_batch(self, sequences):
        t = max((len(q) for q in sequences), default=0)
        hs = np.zeros((len(sequences), t + 1, 1), np.float32)
        for r, q in enumerate(sequences):
            toks = [BOS_ID, *q] + [0] * (t - len(q))
            hs[r, :, 0] = toks
        return hs, hs.copy()

    def run(self, pieces):
        hs, _ = self.run_batch([pieces])
        return self.log_probs(hs[0]), None


def default_table() -> dict[int, dict[int, float]]:
    """After <s>: the .5, ▁ca .3, ▁dog .2. ▁ca -> t 1. t -> ▁run .6, s .4 (so 'cat' .6·.3, 'cats' .4·.3 …)."""
    return {
        BOS_ID: {ID["▁the"]: 0.5, ID["▁ca"]: 0.3, ID["▁dog"]: 0.2},
        ID["▁the"]: {ID["▁ca"]: 0.7, ID["▁dog"]: 0.3},
        ID["▁ca"]: {ID["t"]: 1.0},
        ID["t"]: {ID["▁run"]: 0.6, ID["s"]: 0.4},
        ID["s"]: {ID["▁run"]: 1.0},
        ID["▁dog"]: {ID[","]: 0.5, ID["▁run"]: 0.5},
        ID[","]: {ID["▁the"]: 1.0},
        ID["▁run"]: {EOS_ID: 1.0},
        ID["▁,"]: {EOS_ID: 1.0},
    }


def resign(version_dir) -> None:
    """Signs ``version_dir``'s manifest with its registry's key, as the coordinator publishing it would."""
    from pathlib import Path

    from common import artifacts, signing
    from federated import registry

    version_dir = Path(version_dir)
    key = signing.load_or_create(registry.keys_dir(version_dir.parent))
    (version_dir / signing.SIGNATURE).write_bytes(signing.sign(key, (version_dir / artifacts.MANIFEST).read_bytes()))


def ngram_model(sentences, **kwargs):
    """A ``keyboard.ngram.NgramModel`` that has observed ``sentences`` (lists of words)."""
    from keyboard.ngram import NgramModel

    model = NgramModel(**kwargs)
    for words in sentences:
        model.observe(words)
    return model


def select_clients(home, population, round_num: int, k: int, *, seed: int, min_examples: int, arrays=None):
    """Up to ``k`` eligible devices drawn uniformly, deterministically for (seed, round): a fixed-size
    draw over the simulated conditions, for tests of what a selection must respect (the program
    draws with ``federated.sampling``)."""
    from federated.population import Selection, availability_arrays, available, round_conditions
    from keyboard.store import Device

    ok = available(round_conditions(population, round_num, seed, arrays or availability_arrays(population)))
    rng = np.random.default_rng([seed, round_num, 0, 0x5A])
    chosen: list[str] = []
    for index in rng.permutation(np.flatnonzero(ok)):
        device_id = population[int(index)].device_id
        with Device(home.device(device_id)) as device:
            if device.status()["train_sentences"] >= min_examples:
                chosen.append(device_id)
                if len(chosen) == k:
                    break
    return Selection(chosen, int(ok.sum()), len(population))
