"""Word n-gram models on the device: the personal model and the privately learned n-grams.

One class serves both. ``NgramModel`` holds unigram, bigram and trigram counts of words (as
``tokenizer.words`` reads them) and scores the next word with interpolated absolute discounting
(Ney et al. 1994; the interpolation of Chen & Goodman 1998), D = 0.75:

    P3(w|u,v) = max(c(uvw) - D, 0)/c(uv.) + D·T(uv)/c(uv.) · P2(w|v)    (P2 where c(uv.) = 0)
    P2(w|v)   = max(c(vw) - D, 0)/c(v.)   + D·T(v)/c(v.)   · P1(w)      (P1 where c(v.) = 0)
    P1(w)     = c(w) / c(.)

T counts the distinct words seen after a context. A sentence is ``<s> <s> w1 … wn </s>``; ``</s>``
has probability but is never suggested, and a word never counted has probability 0 (the mix
with the other parts gives it mass). Unlike the pooled Kneser–Ney reference (``eval/ngram.py``),
which is fitted once on everyone's text, this model grows one sentence at a time
(``observe``), so a word is suggested after its first use, and it can be built from released
counts (``from_counts``) as well as from sentences.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence

import numpy as np

BOS, EOS = "<s>", "</s>"
DISCOUNT = 0.75


class _Context:
    """The words seen after one context, with their counts."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.total = 0

    def add(self, word: str, n: int) -> None:
        self.counts[word] = self.counts.get(word, 0) + n
        self.total += n


class NgramModel:
    """Interpolated absolute-discount word trigram; counts can grow one sentence at a time."""

    def __init__(self, *, discount: float = DISCOUNT) -> None:
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        self.discount = discount
        self.unigrams = _Context()
        self.bigrams: dict[str, _Context] = {}
        self.trigrams: dict[tuple[str, str], _Context] = {}
        self._index: tuple[list[str], np.ndarray] | None = None  # words sorted, and their counts
        self._ranked: dict[tuple[str, str], list[tuple[float, str]]] = {}  # per context, best first

    # -- counts ------------------------------------------------------------------------------
    @classmethod
    def from_counts(cls, tables: Mapping[int, Mapping[tuple[str, ...], int]], **kwargs) -> NgramModel:
        """A model from released counts: ``{1: {(w,): c}, 2: {(v, w): c}, 3: {(u, v, w): c}}``.

        Contexts may contain ``<s>``; predicted words may be ``</s>``. Counts must be positive.
        """
        model = cls(**kwargs)
        for order, table in tables.items():
            for gram, count in table.items():
                if len(gram) != order or not count > 0:
                    raise ValueError(f"order-{order} count {gram!r}: {count!r} "
                                     f"is not a positive count of {order} words")
                model._add(gram, int(count))
        return model

    def observe(self, words: Sequence[str]) -> None:
        """Counts one finished sentence's words (already read by ``tokenizer.words``)."""
        if not words:
            return
        padded = [BOS, BOS, *words, EOS]
        for i in range(2, len(padded)):
            self._add(tuple(padded[i - 2 : i + 1]), 1)
            self._add(tuple(padded[i - 1 : i + 1]), 1)
            self._add((padded[i],), 1)

    def _add(self, gram: tuple[str, ...], n: int) -> None:
        *context, word = gram
        if len(context) == 0:
            self.unigrams.add(word, n)
            self._index = None
        elif len(context) == 1:
            self.bigrams.setdefault(context[0], _Context()).add(word, n)
        else:
            self.trigrams.setdefault((context[0], context[1]), _Context()).add(word, n)
        self._ranked.clear()

    @property
    def empty(self) -> bool:
        return self.unigrams.total == 0

    # -- probabilities -----------------------------------------------------------------------
    def _weights(self, context: Sequence[str]) -> tuple[_Context | None, _Context | None, float, float]:
        u, v = _last_two(context)
        tri, bi = self.trigrams.get((u, v)), self.bigrams.get(v)
        d = self.discount
        lam3 = d * len(tri.counts) / tri.total if tri else 1.0
        lam2 = d * len(bi.counts) / bi.total if bi else 1.0
        return tri, bi, lam3, lam2

    def prob(self, word: str, context: Sequence[str]) -> float:
        """P(word | the last two words of ``context``); 0.0 for a word never counted."""
        if not self.unigrams.total:
            return 0.0
        tri, bi, lam3, lam2 = self._weights(context)
        d = self.discount
        p1 = self.unigrams.counts.get(word, 0) / self.unigrams.total
        p2 = (max(bi.counts.get(word, 0) - d, 0.0) / bi.total if bi else 0.0) + lam2 * p1
        return (max(tri.counts.get(word, 0) - d, 0.0) / tri.total if tri else 0.0) + lam3 * p2

    def top(self, context: Sequence[str], prefix: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` most probable words after ``context`` that start with ``prefix``, best first.

        Exact: a word seen after neither the bigram nor the trigram context scores
        λ3·λ2·P1(w), so among those the most frequent words with the prefix win.
        """
        if n < 1 or not self.unigrams.total:
            return []
        key = _last_two(context)
        ranked = self._ranked.get(key)
        if ranked is None:
            ranked = self._ranked[key] = self._rank(context)
        found = {w: p for p, w in _first(ranked, prefix, n)}
        # Every one of these scores at least λ3·λ2·P1 of any word left out of both lists.
        for word in self._frequent(prefix, n):
            if word not in found:
                found[word] = self.prob(word, context)
        return sorted(found.items(), key=lambda wp: (-wp[1], wp[0]))[:n]

    def _rank(self, context: Sequence[str]) -> list[tuple[float, str]]:
        """Every word seen after the bigram or trigram context, scored, best first (cached per context)."""
        tri, bi, _, _ = self._weights(context)
        words = set(bi.counts if bi else ()) | set(tri.counts if tri else ())
        words.discard(EOS)
        return sorted(((self.prob(w, context), w) for w in words), key=lambda pw: (-pw[0], pw[1]))

    def _frequent(self, prefix: str, n: int) -> list[str]:
        """The ``n`` most frequent words that start with ``prefix`` (ties by word)."""
        if self._index is None:
            words = sorted(w for w in self.unigrams.counts if w != EOS)
            self._index = words, np.array([self.unigrams.counts[w] for w in words], np.int64)
        words, counts = self._index
        lo = bisect.bisect_left(words, prefix)
        hi = bisect.bisect_left(words, prefix + "\U0010ffff", lo) if prefix else len(words)
        if hi - lo <= n:
            order = range(lo, hi)
        else:
            part = lo + np.argpartition(-counts[lo:hi], n - 1)[:n]
            order = part.tolist()
        return [words[i] for i in sorted(order, key=lambda i: (-counts[i], words[i]))]


def _last_two(context: Sequence[str]) -> tuple[str, str]:
    padded = [BOS, BOS, *context[-2:]]
    return padded[-2], padded[-1]


def _first(ranked: list[tuple[float, str]], prefix: str, n: int) -> list[tuple[float, str]]:
    """The first ``n`` entries of a best-first list whose word starts with ``prefix``."""
    if not prefix:
        return ranked[:n]
    return list(itertools.islice((pw for pw in ranked if pw[1].startswith(prefix)), n))
