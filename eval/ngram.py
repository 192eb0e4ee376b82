"""Whole-word next-word baselines: a unigram model and an interpolated Kneser–Ney trigram.

Both are fitted on the *pooled* train sentences of every device. That is a centralized
reference that a real keyboard could not build without collecting what people type; it exists
only to measure what federated learning achieves (the KN trigram is what Gboard shipped before
its federated LSTM). A word is what ``tokenizer.words.words`` reads: punctuation removed,
lower-cased, as for every model.

Both classes implement the interface the recall code uses: ``name``, ``can_produce(word)`` and
``suggest_sentence(words, k)``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

import numpy as np

from common.errors import ConfigError
from tokenizer.words import words as words_of

BOS = "<s>"  # sentence-start padding, only ever a context
EOS = "</s>"  # end of sentence: predicted (has probability) but never suggested
UNK = "<unk>"  # stands for training words cut by ``max_vocab``; never suggested


def _vocabulary(token_lists: list[list[str]], max_vocab: int | None, model: str) -> tuple[list[str], int]:
    """Words by descending count, ties by word, cut to ``max_vocab``; also returns the word count."""
    if max_vocab is not None and max_vocab < 1:
        raise ConfigError(f"max_vocab must be at least 1, got {max_vocab}")
    counts = collections.Counter(w for words in token_lists for w in words)
    if not counts:
        raise ValueError(f"cannot fit the {model} model: the training sentences contain no words")
    words = sorted(counts, key=lambda w: (-counts[w], w))
    return words[:max_vocab], len(words)


def _check_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")


class UnigramPredictor:
    """Always suggests the k most frequent training words (ties broken by word)."""

    name = "unigram"

    def __init__(self, vocabulary: list[str]) -> None:
        """Use ``fit``; ``vocabulary`` is ordered most frequent first."""
        self.vocabulary = tuple(vocabulary)
        self._known = frozenset(vocabulary)

    @classmethod
    def fit(cls, sentences: Iterable[str], max_vocab: int | None = None) -> UnigramPredictor:
        """Counts the words of ``sentences``; keeps the ``max_vocab`` most frequent.

        Raises:
            ValueError: the sentences hold no words, or ``max_vocab`` < 1.
        """
        words, _ = _vocabulary([words_of(s) for s in sentences], max_vocab, cls.name)
        return cls(words)

    def can_produce(self, word: str) -> bool:
        return word in self._known

    def suggest_sentence(self, words: Sequence[str], k: int) -> list[list[str]]:
        """The same top-k list for every position 1..len(words)-1."""
        _check_k(k)
        top = self.vocabulary[:k]
        return [list(top) for _ in range(len(words) - 1)]


class KneserNeyTrigram:
    """Interpolated Kneser–Ney over whole words (Chen & Goodman 1998; Jurafsky & Martin ch. 3).

    With discount D, trigram counts c, and ``N(.vw)`` = number of distinct u seen before (v, w):

        P3(w|u,v) = max(c(uvw) - D, 0)/c(uv.) + D·T3(uv)/c(uv.) · P2(w|v)
        P2(w|v)   = max(N(.vw) - D, 0)/N(.v.) + D·T2(v)/N(.v.) · P1(w)
        P1(w)     = max(N(.w) - D, 0)/N(..)   + D·T1/N(..)    · 1/|E|

    where T = number of distinct words following that context, ``N(.w)`` = number of distinct v
    seen before w, and E = vocabulary ∪ {</s>} (∪ {<unk>} if ``max_vocab`` cut words). A context
    never seen in training has no mass of its own: its weight on the lower order is 1. Training
    sentences are padded ``<s> <s> w1 … wn </s>``; every n-gram ends at a predicted token, so
    ``<s>`` is never predicted.
    """

    name = "ngram"

    def __init__(self, vocabulary: list[str], trigram_ids: np.ndarray, trigram_counts: np.ndarray,
                 discount: float, has_unk: bool) -> None:
        """Use ``fit``. Ids: words 0..V-1 (``vocabulary`` order), then </s>, <unk>, <s>, unseen."""
        v = len(vocabulary)
        self.vocabulary = tuple(vocabulary)
        self.discount = discount
        self._index = {w: i for i, w in enumerate(vocabulary)}
        self._eos, self._unk, self._bos, self._unseen = v, v + 1, v + 2, v + 3
        self._has_unk = has_unk
        m = v + 4  # size of the context id space
        d = discount

        # Trigram level: types sorted by (u, v, w), so each context (u, v) is one slice.
        ctx = trigram_ids[:, 0] * m + trigram_ids[:, 1]
        order = np.lexsort((trigram_ids[:, 2], ctx))
        ctx, w3, c3 = ctx[order], trigram_ids[order, 2], trigram_counts[order].astype(np.float64)
        starts = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]])
        ends = np.r_[starts[1:], len(ctx)]
        c_uv = np.add.reduceat(c3, starts)
        lam3 = d * (ends - starts) / c_uv
        self._a3 = np.maximum(c3 - d, 0.0) / np.repeat(c_uv, ends - starts)
        self._ctx3 = dict(zip(ctx[starts].tolist(), zip(starts.tolist(), ends.tolist(), lam3.tolist())))

        # Bigram level from continuation counts: N(.vw) = number of trigram types ending in (v, w).
        vw, n_vw = np.unique(trigram_ids[:, 1] * m + trigram_ids[:, 2], return_counts=True)
        v2, w2 = vw // m, vw % m
        n_v = np.bincount(v2, weights=n_vw, minlength=m)
        t_v = np.bincount(v2, minlength=m)
        self._w2 = w2  # sorted within each v, with </s> and <unk> (the largest ids) last
        self._b2 = np.maximum(n_vw - d, 0.0) / n_v[v2]
        self._start2 = np.searchsorted(v2, np.arange(m), "left").tolist()
        self._end2 = np.searchsorted(v2, np.arange(m), "right").tolist()
        self._wend2 = np.searchsorted(vw, np.arange(m) * m + v).tolist()  # end of the words in v's slice
        self._lam2 = np.where(n_v > 0, d * t_v / np.maximum(n_v, 1), 1.0).tolist()
        # Each (u, v, w) also made (v, w) a bigram type: where w sits in v's bigram slice.
        v3 = ctx % m
        self._off3 = np.searchsorted(vw, v3 * m + w3) - np.asarray(self._start2)[v3]

        # Unigram level: N(.w) = number of bigram types ending in w, mixed with uniform over E.
        n_w = np.bincount(w2, minlength=v + 2)[: v + 2].astype(np.float64)
        events = v + 1 + int(has_unk)
        self._c = np.maximum(n_w - d, 0.0) / len(w2) + d * np.count_nonzero(n_w) / len(w2) / events
        if not has_unk:
            self._c[self._unk] = 0.0
        # Words only (never </s> or <unk>) by descending C, ties by id: the dense part's top-k.
        self._c_order = np.lexsort((np.arange(v), -self._c[:v]))

    @classmethod
    def fit(cls, sentences: Iterable[str], discount: float = 0.75,
            max_vocab: int | None = None) -> KneserNeyTrigram:
        """Counts the trigrams of ``sentences``; words beyond the ``max_vocab`` most frequent become <unk>.

        Raises:
            ValueError: the sentences hold no words, ``max_vocab`` < 1, or discount not in (0, 1].
        """
        # D <= 1 keeps every seen event's discounted count >= 0, so each level sums to 1.
        if not 0.0 < discount <= 1.0:
            raise ConfigError(f"discount must be in (0, 1], got {discount}")
        token_lists = [words_of(s) for s in sentences]
        words, distinct = _vocabulary(token_lists, max_vocab, cls.name)
        v = len(words)
        index = {w: i for i, w in enumerate(words)}
        eos, unk, bos = v, v + 1, v + 2
        seqs = [[bos, bos, *(index.get(t, unk) for t in toks), eos] for toks in token_lists if toks]
        flat = np.fromiter((i for s in seqs for i in s), dtype=np.int64)
        # Trigram (u, v, w) for every predicted position: drop the two leading <s> of each sentence.
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64)
        first = np.r_[0, np.cumsum(lengths)[:-1]]
        is_target = np.ones(len(flat), dtype=bool)
        is_target[first] = is_target[first + 1] = False
        at = np.flatnonzero(is_target)
        grams = np.stack([flat[at - 2], flat[at - 1], flat[at]], axis=1)
        ids, counts = np.unique(grams, axis=0, return_counts=True)
        return cls(words, ids, counts, discount, has_unk=distinct > v)

    def can_produce(self, word: str) -> bool:
        return word in self._index

    def _id(self, word: str) -> int:
        """Context id of a word: unknown words are <unk> if training had one, else never-seen."""
        if word == BOS:
            return self._bos
        i = self._index.get(word)
        if i is not None:
            return i
        return self._unk if self._has_unk else self._unseen

    def _sparse(self, u: int, v: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """For context (u, v): the words seen after v, their A and B terms, and λ3, λ2.

        Every word seen after (u, v) was also seen after v, so v's bigram words cover A's support.
        """
        s3, e3, lam3 = self._ctx3.get(u * (len(self.vocabulary) + 4) + v, (0, 0, 1.0))
        s2, e2 = self._start2[v], self._end2[v]
        a = np.zeros(e2 - s2)
        a[self._off3[s3:e3]] = self._a3[s3:e3]
        return self._w2[s2:e2], a, self._b2[s2:e2], lam3, self._lam2[v]

    def prob(self, word: str, context: tuple[str, str]) -> float:
        """P(word | context) for word in vocabulary ∪ {</s>, <unk>}; 0.0 for any other word.

        ``context`` is the two previous words; use ``<s>`` for positions before the sentence start.
        """
        w = {EOS: self._eos, UNK: self._unk}.get(word, self._index.get(word))
        if w is None or (w == self._unk and not self._has_unk):
            return 0.0
        ws, a, b, lam3, lam2 = self._sparse(self._id(context[0]), self._id(context[1]))
        hit = np.flatnonzero(ws == w)
        a_w, b_w = (float(a[hit[0]]), float(b[hit[0]])) if len(hit) else (0.0, 0.0)
        # Same expression and operation order as suggest_sentence, so scores match bit for bit.
        return a_w + lam3 * (b_w + lam2 * float(self._c[w]))

    def suggest_sentence(self, words: Sequence[str], k: int) -> list[list[str]]:
        """Top-k next words at each position 1..len(words)-1, given the sentence so far.

        score(w) = A(w) + λ3·(B(w) + λ2·C(w)) with A, B >= 0 nonzero only for the few words seen
        after the context, so score(w) >= λ3·λ2·C(w) with equality off those sparse words. Any word
        outside the sparse set and the first k of the precomputed C order is therefore beaten by
        those k words: the top-k is among the sparse words ∪ the C top-k, scored exactly. Ties
        are broken towards the more frequent training word.
        """
        _check_k(k)
        top_c = self._c_order[:k]
        ids = [self._bos, self._bos, *(self._id(t) for t in words)]
        out = []
        for i in range(1, len(words)):
            ws, a, b, lam3, lam2 = self._sparse(ids[i], ids[i + 1])
            n = self._wend2[ids[i + 1]] - self._start2[ids[i + 1]]  # drop </s> and <unk> at the end
            ws, score = ws[:n], (a + lam3 * (b + lam2 * self._c[ws]))[:n]
            # The C top-k words not already scored; for them A = B = 0 exactly.
            dense = top_c[ws.take(np.searchsorted(ws, top_c), mode="clip") != top_c] if n else top_c
            cand = np.concatenate((ws, dense))
            score = np.concatenate((score, 0.0 + lam3 * (0.0 + lam2 * self._c[dense])))
            out.append([self.vocabulary[j] for j in _top_k(cand, score, k)])
        return out


def _top_k(ids: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """The k ids with the highest score, best first, ties by smaller id."""
    if len(ids) > k:
        # Keep everything tied with the k-th best so the tie-break below stays exact.
        keep = score >= np.partition(score, len(score) - k)[len(score) - k]
        ids, score = ids[keep], score[keep]
    return ids[np.lexsort((ids, -score))[:k]]
