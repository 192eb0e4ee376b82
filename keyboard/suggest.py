"""Whole-word suggestions from a subword model: a small beam over pieces up to the next word boundary.

The model predicts pieces; people accept words. A candidate word starts with a word-start piece
(``▁…``) and grows by continuation pieces; it is complete when the model's next piece is a
word start or ``</s>``. Its score is ``log P(pieces) + log P(boundary | pieces)``. Different
segmentations of the same word add up. This one function serves the keyboard (one context,
optionally a partly typed word) and evaluation (every position of a sentence in one batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.artifacts import ArtifactError
from keyboard.lm import NumpyLM, State
from tokenizer.specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID, WORD_START
from tokenizer.vocab import Tokenizer
from tokenizer.words import split_typed

_SPECIALS = (PAD_ID, UNK_ID, BOS_ID, EOS_ID)


class WordSuggester:
    """Top-k next words (or completions of a partial word) from a ``NumpyLM`` and its tokenizer."""

    name = "federated_lstm"

    def __init__(self, lm: NumpyLM, tokenizer: Tokenizer, *, beam: int = 4, max_pieces: int = 4):
        if lm.vocab_size != tokenizer.vocab_size:
            raise ArtifactError(  # a user-facing error: the files of a version do not belong together
                f"model has {lm.vocab_size} pieces but tokenizer {tokenizer.source} has {tokenizer.vocab_size}"
            )
        self.lm, self.tok, self.beam, self.max_pieces = lm, tokenizer, beam, max_pieces
        pieces = [tokenizer.piece(i) for i in range(tokenizer.vocab_size)]
        special = np.zeros(len(pieces), bool)
        special[list(_SPECIALS)] = True
        self.is_start = np.array([p.startswith(WORD_START) for p in pieces]) & ~special
        self.is_cont = ~self.is_start & ~special
        ends = self.is_start.copy()
        ends[EOS_ID] = True
        self.ends_word = ends.astype(np.float32)  # pieces that close the word before them
        self.start_ids, self.cont_ids = np.flatnonzero(self.is_start), np.flatnonzero(self.is_cont)
        # Surface text of each piece, as it appears inside a word (the marker dropped).
        self.surface = np.array([p[1:] if s else p for p, s in zip(pieces, self.is_start)], dtype=object)
        self.surface_str = self.surface.astype(str)  # for vectorized prefix tests

    # -- the beam ------------------------------------------------------------------------------
    def suggest_from(
        self, logp: np.ndarray, state: State, k: int, prefixes: Sequence[str] | None = None
    ) -> list[list[str]]:
        """Top-``k`` words for each row of a batch of model states (``logp`` ``[N, V]``, state rows N)."""
        n, b = logp.shape[0], self.beam
        prefixes = list(prefixes) if prefixes is not None else [""] * n
        first = logp[:, self.start_ids]
        for row, prefix in enumerate(prefixes):
            if prefix:
                first[row, ~self._consistent(prefix, "", self.start_ids)] = -np.inf
        top = _top(first, b)  # [N, B] indices into start_ids
        scores = np.take_along_axis(first, top, axis=1)
        idx = self.start_ids[top]
        words = [[self.surface[i] for i in row] for row in idx]
        h, c = (np.repeat(s, b, axis=0) for s in state)
        finished: list[dict[str, float]] = [{} for _ in range(n)]
        for depth in range(self.max_pieces):
            if not np.isfinite(scores).any():
                break
            h, c = self.lm.cell(idx.reshape(-1), (h, c))
            logits = self.lm.logits(h)
            peak = logits.max(axis=1, keepdims=True)
            expd = np.exp(logits - peak)
            log_z = np.log(expd.sum(axis=1)) + peak[:, 0]
            with np.errstate(divide="ignore"):
                end = (np.log(expd @ self.ends_word) + peak[:, 0] - log_z).reshape(n, b)
            done = scores + end
            for row in range(n):
                for j in np.flatnonzero(np.isfinite(done[row])):
                    word = words[row][j]
                    if word and word.startswith(prefixes[row]):  # the bare "▁" piece alone is no word
                        finished[row][word] = np.logaddexp(finished[row].get(word, -np.inf), done[row, j])
            if depth == self.max_pieces - 1:
                break
            cont = (logits[:, self.cont_ids] - log_z[:, None]).reshape(n, b, -1)
            ext = scores[:, :, None] + cont
            for row, prefix in enumerate(prefixes):
                if prefix:
                    for j in range(b):
                        ext[row, j, ~self._consistent(prefix, words[row][j], self.cont_ids)] = -np.inf
            flat = ext.reshape(n, -1)
            top = _top(flat, b)
            scores = np.take_along_axis(flat, top, axis=1)
            parent, piece = np.divmod(top, len(self.cont_ids))
            idx = self.cont_ids[piece]
            words = [[words[row][p] + self.surface[q] for p, q in zip(parent[row], idx[row])] for row in range(n)]
            rows = (np.arange(n)[:, None] * b + parent).reshape(-1)
            h, c = h[rows], c[rows]
        return [[w for w, _ in sorted(f.items(), key=lambda ws: -ws[1])[:k]] for f in finished]

    def _consistent(self, prefix: str, so_far: str, ids: np.ndarray) -> np.ndarray:
        """Which pieces of ``ids``, appended to ``so_far``, keep the word consistent with the typed ``prefix``.

        Vectorized: this runs for every beam row on every keystroke inside a word.
        """
        if so_far.startswith(prefix):
            return np.ones(len(ids), bool)  # the typed part is covered: any continuation fits
        if not prefix.startswith(so_far):
            return np.zeros(len(ids), bool)  # already diverged from what was typed
        rest = prefix[len(so_far):]
        surfaces = self.surface_str[ids]
        # The piece covers the rest of the typed prefix, or is itself a prefix of that rest.
        return np.char.startswith(surfaces, rest) | np.isin(surfaces, [rest[:i] for i in range(len(rest) + 1)])

    # -- evaluation: every position of a sentence ----------------------------------------------
    def word_pieces(self, word: str) -> list[int]:
        return self.tok.encode(word)

    def can_produce(self, word: str) -> bool:
        """Whether the beam can suggest ``word`` at all: no unknown piece, few enough pieces, same text back."""
        ids = self.word_pieces(word)
        return 0 < len(ids) <= self.max_pieces and UNK_ID not in ids and self.tok.decode(ids) == word

    def word_log_probs(self, sentences: Sequence[Sequence[str]], chunk: int = 1024) -> list[np.ndarray]:
        """log P(word | the words before it) for every word of every sentence, teacher-forced.

        A word's probability is that of its own pieces followed by a word boundary (a word start
        or ``</s>``), as in the beam, but for the tokenizer's one segmentation only: cheap enough to
        score a device's whole log, where the beam would search at every position.
        """
        pieces = [[self.word_pieces(w) for w in words] for words in sentences]
        hs, _ = self.lm.run_batch([[p for ws in sent for p in ws] for sent in pieces])
        rows = [r for r, sent in enumerate(pieces) for _ in range(sum(map(len, sent)) + 1)]
        cols = [t for sent in pieces for t in range(sum(map(len, sent)) + 1)]
        nxt = [p for sent in pieces for p in [*(q for ws in sent for q in ws), EOS_ID]]
        piece_lp, end_lp = np.empty(len(rows)), np.empty(len(rows))
        for start in range(0, len(rows), chunk):
            part = slice(start, start + chunk)
            logp = self.lm.log_probs(hs[rows[part], cols[part]])
            piece_lp[part] = logp[np.arange(len(logp)), nxt[part]]
            # log Σ exp over the word-boundary pieces (a max-shifted sum: np.logaddexp.reduce is ~10x slower)
            ends = logp[:, self.ends_word > 0]
            top = ends.max(axis=1, keepdims=True)
            end_lp[part] = (top + np.log(np.exp(ends - top).sum(axis=1, keepdims=True)))[:, 0]
        out, pos = [], 0
        for sent in pieces:
            lp = []
            for ws in sent:  # pieces of the word, then the boundary after its last piece
                lp.append(piece_lp[pos : pos + len(ws)].sum() + end_lp[pos + len(ws)] if ws else -np.inf)
                pos += len(ws)
            pos += 1  # the position that predicts </s>
            out.append(np.array(lp))
        return out

    def boundary_states(self, words: Sequence[str]) -> tuple[np.ndarray, State, list[list[int]]]:
        """Runs ``<s> w1 … wn``; returns log-probs and states at each word boundary (n + 1 rows)."""
        pieces = [self.word_pieces(w) for w in words]
        hs, cs = self.lm.run_batch([[p for ws in pieces for p in ws]])
        bounds = np.cumsum([0] + [len(p) for p in pieces])
        h, c = hs[0, bounds], cs[0, bounds]
        return self.lm.log_probs(h), (h, c), pieces

    def suggest_sentences(self, sentences: Sequence[Sequence[str]], k: int, chunk: int = 512) -> list[list[list[str]]]:
        """For each sentence and each position i in 1..n-1, the top-k words given ``words[:i]``; batched."""
        contexts = [list(words[:-1]) for words in sentences]
        pieces = [[self.word_pieces(w) for w in words] for words in contexts]
        hs, cs = self.lm.run_batch([[p for ws in sent for p in ws] for sent in pieces])
        rows, cols = [], []
        for row, sent in enumerate(pieces):
            bounds = np.cumsum([len(p) for p in sent])  # after 1, 2, … n-1 words
            rows += [row] * len(bounds)
            cols += bounds.tolist()
        h, c = hs[rows, cols], cs[rows, cols]
        flat: list[list[str]] = []
        for start in range(0, len(rows), chunk):
            part = slice(start, start + chunk)
            flat += self.suggest_from(self.lm.log_probs(h[part]), (h[part], c[part]), k)
        out, pos = [], 0
        for sent in pieces:
            out.append(flat[pos : pos + len(sent)])
            pos += len(sent)
        return out

    def suggest_sentence(self, words: Sequence[str], k: int) -> list[list[str]]:
        """For each position i in 1..n-1, the top-k words given ``words[:i]``."""
        return self.suggest_sentences([words], k)[0] if len(words) >= 2 else []

    # -- the keyboard: text typed so far -------------------------------------------------------
    def suggest(self, text: str, k: int = 3) -> list[str]:
        """Completions of the word being typed, or after a space the next word."""
        words, partial = split_typed(text)
        logp, (h, c), _ = self.boundary_states(words)
        return self.suggest_from(logp[-1:], (h[-1:], c[-1:]), k, prefixes=[partial])[0]


def _top(scores: np.ndarray, b: int) -> np.ndarray:
    """Indices of the ``b`` largest entries of each row (unordered), in O(V) rather than a full sort."""
    if scores.shape[1] <= b:
        return np.argsort(-scores, axis=1)
    return np.argpartition(-scores, b - 1, axis=1)[:, :b]
