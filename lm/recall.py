"""Whole-word next-word recall@k, token loss and OOV rate: the one definition used everywhere.

At each position of a held-out sentence after its first word, a predictor suggests k whole
words given the sentence so far; a *hit* is when the word the user actually typed next is among
them. A word is defined once, in ``tokenizer/words.py``: letters and digits, punctuation removed,
lower-cased. Every predictor — the product, each of its parts, the baselines — is measured by
these functions on the same words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tokenizer.words import normalize
from tokenizer.words import words as words_of

KS = (1, 3, 5)


class WordPredictor(Protocol):
    name: str

    def can_produce(self, word: str) -> bool: ...

    def suggest_sentence(self, words: Sequence[str], k: int) -> list[list[str]]: ...


@dataclass
class RecallCounts:
    """Sums over predictions; they add across sentences and devices."""

    predictions: int = 0
    oov: int = 0  # next words the predictor cannot produce at all
    hits: dict[int, int] = field(default_factory=lambda: {k: 0 for k in KS})

    def __add__(self, other: RecallCounts) -> RecallCounts:
        return RecallCounts(
            self.predictions + other.predictions, self.oov + other.oov,
            {k: self.hits.get(k, 0) + other.hits.get(k, 0) for k in set(self.hits) | set(other.hits)},
        )

    def recall(self, k: int) -> float:
        return self.hits[k] / self.predictions if self.predictions else 0.0

    @property
    def oov_rate(self) -> float:
        return self.oov / self.predictions if self.predictions else 0.0

    def summary(self) -> dict[str, float | int]:
        return {"predictions": self.predictions, **{f"recall_at_{k}": self.recall(k) for k in sorted(self.hits)},
                "oov_rate": self.oov_rate}


def score_suggestions(words: Sequence[str], suggestions: Sequence[Sequence[str]], can_produce, ks=KS) -> RecallCounts:
    """Counts hits for ``suggestions[i-1]`` (given ``words[:i]``) against ``words[i]``, i = 1..n-1."""
    if len(suggestions) != max(len(words) - 1, 0):
        raise ValueError(f"{len(suggestions)} suggestion lists for a {len(words)}-word sentence")
    counts = RecallCounts(hits={k: 0 for k in ks})
    for target, suggested in zip(words[1:], suggestions):
        counts.predictions += 1
        counts.oov += not can_produce(target)
        for k in ks:
            counts.hits[k] += target in suggested[:k]
    return counts


def recall_counts(predictor: WordPredictor, sentences: Iterable[str], ks=KS) -> RecallCounts:
    """Recall counts over many sentences (batched when the predictor offers ``suggest_sentences``)."""
    word_lists = [words_of(s) for s in sentences]
    batch = getattr(predictor, "suggest_sentences", None)
    if batch is not None:
        suggestions = batch([w for w in word_lists if len(w) >= 2], max(ks))
        it = iter(suggestions)
        per_sentence = [next(it) if len(w) >= 2 else [] for w in word_lists]
    else:
        per_sentence = [predictor.suggest_sentence(w, max(ks)) for w in word_lists]
    total = RecallCounts(hits={k: 0 for k in ks})
    for words, suggested in zip(word_lists, per_sentence):
        total = total + score_suggestions(words, suggested, predictor.can_produce, ks)
    return total


def token_nll(lm, encode, sentences: Iterable[str], chunk: int = 1024) -> tuple[float, int]:
    """Summed negative log-likelihood of ``pieces </s>`` after ``<s>``, and the number of pieces."""
    from tokenizer.specials import EOS_ID

    seqs = [list(encode(normalize(s))) for s in sentences]
    if not seqs:
        return 0.0, 0
    hs, _ = lm.run_batch(seqs)
    rows = [r for r, q in enumerate(seqs) for _ in range(len(q) + 1)]
    cols = [t for q in seqs for t in range(len(q) + 1)]
    targets = np.array([p for q in seqs for p in [*q, EOS_ID]])
    h = hs[rows, cols]
    total = 0.0
    for start in range(0, len(targets), chunk):
        logp = lm.log_probs(h[start : start + chunk])
        total -= float(logp[np.arange(len(logp)), targets[start : start + chunk]].sum())
    return total, len(targets)


def quantiles_from_histogram(
    edges: Sequence[float], counts: Sequence[int], qs=(0.1, 0.25, 0.5, 0.75, 0.9)
) -> dict[str, float]:
    """Quantiles read off a histogram (linear within a bin): what the server can know from counts alone."""
    counts = np.asarray(counts, float)
    total = counts.sum()
    if total == 0:
        return {f"p{round(q * 100)}": float("nan") for q in qs}
    cum = np.concatenate([[0.0], np.cumsum(counts)]) / total
    return {f"p{round(q * 100)}": float(np.interp(q, cum, edges)) for q in qs}
