"""The keyboard's beam: ``WordSuggester.suggest_from`` for one context, keeping its work between keystrokes.

Per keystroke the cost is model steps, each ending in logits over the whole vocabulary (the
softmax normalizer and the chance of a word boundary need every logit). A step's result depends
only on the pieces fed since ``<s>``, not on what has been typed of the current word, so every
step is kept as a node of a trie over piece sequences. Typing one more letter of a word visits
mostly nodes the previous keystroke computed, and when the word is finished, its node is the
next context. Typed-prefix tests bisect sorted piece surfaces instead of comparing strings across
the vocabulary, and the search stops as soon as the probability left in the beam could not
change the top-k order. Suggestions are those of the reference beam, which the tests check, up
to float32 rounding: a node's logits come from a one-row product here and from a small batch
there, so two words whose probabilities agree to about 1e-6 may come out in either order (once
in 20,390 keystrokes of a trained gboard model).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from keyboard.lm import log_softmax
from keyboard.suggest import WordSuggester, _top

_NONE = np.zeros(0, np.int64)
# Bounds are computed from float32 log-probabilities, exact to about 1e-6 relative; a margin of
# 1e-3 keeps a stop exact whatever the rounding.
_MARGIN = 1.001


@dataclass(eq=False)
class Node:
    """The model after ``<s>`` and a sequence of pieces: its state and, once computed, its next-piece scores."""

    h: np.ndarray  # [E] output state
    c: np.ndarray  # [U] cell state
    logits: np.ndarray | None = None  # [V] next-piece logits
    log_z: np.float32 | None = None  # their log-normalizer
    end: np.float32 | None = None  # log P(the next piece closes a word: a word start or </s>)
    children: dict[int, Node] = field(default_factory=dict)  # by the piece fed next
    first: np.ndarray | None = None  # [V] next-piece log-probs, once this node served as a context
    first_top: tuple[np.ndarray, np.ndarray] | None = None  # its best word-start pieces and their log-probs
    # Once the beam extended this node with nothing typed in the way: its best continuation pieces
    # (ids, log-probs; as many as the beam is wide) and the probability of all continuations.
    conts: tuple[np.ndarray, np.ndarray, float] | None = None


class _SortedPieces:
    """One class of pieces (word starts or continuations), searchable by the text they add to a word."""

    def __init__(self, surfaces: Sequence[str], ids: np.ndarray):
        order = sorted(range(len(ids)), key=lambda i: surfaces[ids[i]])
        self.keys = [surfaces[ids[i]] for i in order]
        self.sorted_ids = ids[order]
        self.by_surface: dict[str, list[int]] = {}
        for i in ids.tolist():
            self.by_surface.setdefault(surfaces[i], []).append(i)

    def consistent(self, prefix: str, so_far: str) -> np.ndarray | None:
        """The pieces that, appended to ``so_far``, keep the word consistent with the typed ``prefix``;
        None when every piece does. Same rule as ``WordSuggester._consistent``."""
        if so_far.startswith(prefix):
            return None  # the typed part is covered: any continuation fits
        if not prefix.startswith(so_far):
            return _NONE
        rest = prefix[len(so_far):]
        # Pieces that cover the rest: a contiguous run of the sorted surfaces.
        lo = bisect.bisect_left(self.keys, rest)
        if ord(rest[-1]) < 0x10FFFF:  # every string that starts with rest sorts below rest with its last letter bumped
            hi = bisect.bisect_left(self.keys, rest[:-1] + chr(ord(rest[-1]) + 1), lo)
        else:
            hi = lo
            while hi < len(self.keys) and self.keys[hi].startswith(rest):
                hi += 1
        # Pieces that are a shorter prefix of the rest (the rest itself is in the run above).
        shorter = [i for n in range(len(rest)) for i in self.by_surface.get(rest[:n], ())]
        if not shorter:
            return self.sorted_ids[lo:hi]
        return np.concatenate([self.sorted_ids[lo:hi], np.array(shorter, np.int64)])


class CachedBeam:
    """Runs the reference beam of a ``WordSuggester`` from context nodes, computing each node once."""

    def __init__(self, suggester: WordSuggester):
        self.s = suggester
        self.lm = suggester.lm
        surfaces = suggester.surface.tolist()
        self.starts = _SortedPieces(surfaces, suggester.start_ids)
        self.conts = _SortedPieces(surfaces, suggester.cont_ids)

    # -- nodes -----------------------------------------------------------------------------------
    def root(self, h: np.ndarray, c: np.ndarray) -> Node:
        return Node(np.asarray(h, np.float32).reshape(-1), np.asarray(c, np.float32).reshape(-1))

    def feed(self, node: Node, pieces: Sequence[int]) -> Node:
        """The node after feeding ``pieces`` to ``node``: found in the trie, or stepped one piece at a time."""
        for piece in pieces:
            child = node.children.get(piece)
            if child is None:
                child = node.children[piece] = Node(*self.lm.cell(piece, (node.h, node.c)))
            node = child
        return node

    def _score(self, node: Node) -> None:
        """Fills a node's logits, normalizer and word-boundary score with the reference's formulas.

        One row at a time: OpenBLAS multiplies one row by the 10k-piece output matrix several times
        faster per row than a small batch of rows (no packing), and rows skipped are not computed.
        """
        logits = self.lm.logits(node.h[None])[0]
        peak = logits.max()
        expd = np.exp(logits - peak)
        node.log_z = np.log(expd.sum()) + peak
        ends = expd @ self.s.ends_word
        node.end = np.log(ends) + peak - node.log_z if ends > 0 else np.float32(-np.inf)
        node.logits = logits

    def _child(self, parent: Node, piece: int) -> Node:
        """The scored node after ``parent`` and ``piece``, from the trie or computed now."""
        node = parent.children.get(piece)
        if node is None:
            node = parent.children[piece] = Node(*self.lm.cell(piece, (parent.h, parent.c)))
        if node.logits is None:
            self._score(node)
        return node

    # -- the search ------------------------------------------------------------------------------
    def suggest(self, context: Node, prefix: str, k: int) -> list[str]:
        """Top-``k`` words after ``context`` that start with ``prefix``: ``WordSuggester.suggest_from``'s answer."""
        return [word for word, _ in self.scored(context, prefix, k)]

    def scored(self, context: Node, prefix: str, k: int) -> list[tuple[str, float]]:
        """``suggest``'s words, each with the log-probability the search had found for it when it stopped.

        Entries are visited best first and the search ends as soon as what is left of the beam
        cannot change the answer (``_settled``), often before the last depth or the last entry.
        """
        b, surface = self.s.beam, self.s.surface
        if context.first is None:
            if context.logits is None:
                self._score(context)
            context.first = log_softmax(context.logits[None])[0]
        cand = self.starts.consistent(prefix, "")
        if cand is None and context.first_top is not None:  # after a space: the same every time
            ids, scores = context.first_top
        else:
            ids = self.s.start_ids if cand is None else cand
            scores = context.first[ids]
            best = _top(scores[None], b)[0]
            ids, scores = ids[best], scores[best]
            if cand is None:
                context.first_top = ids, scores
        beam = [(context, int(i), score, surface[i]) for i, score in zip(ids, scores) if np.isfinite(score)]
        finished: dict[str, float] = {}
        answer = lambda: sorted(finished.items(), key=lambda ws: -ws[1])[:k]  # noqa: E731
        for depth in range(self.s.max_pieces):
            last = depth == self.s.max_pieces - 1
            beam.sort(key=lambda e: -e[2])
            # (word so far, probability the entry can still add, whether that includes the word itself)
            left = [(word, math.exp(score), True) for _, _, score, word in beam]
            options: list[tuple[Node, np.ndarray, np.ndarray]] = []  # per entry: node, continuations, scores
            for i, (parent, piece, score, word) in enumerate(beam):
                node = self._child(parent, piece)
                done = score + node.end
                if np.isfinite(done) and word and word.startswith(prefix):  # the bare "▁" piece alone is no word
                    finished[word] = np.logaddexp(finished.get(word, -np.inf), done)
                if last:
                    left[i] = (word, 0.0, False)
                else:  # what this entry can still add: the continuations that fit what was typed
                    ids, logp, mass = self._continuations(node, prefix, word)
                    options.append((node, ids, score + logp))
                    left[i] = (word, left[i][1] * mass, False)  # continuations: longer words only
                if len(finished) >= k and _settled(finished, left, k):
                    return answer()
            if last:
                break
            beam = self._extend(beam, options)
            if not beam:
                break
        return answer()

    def _continuations(self, node: Node, prefix: str, word: str) -> tuple[np.ndarray, np.ndarray, float]:
        """The best continuation pieces after ``node`` that keep ``word`` consistent with the typed
        prefix (as many as the beam is wide: the beam's next entries are among them), their
        log-probabilities (the reference's formula: logits minus the normalizer), and the total
        probability of all such continuations."""
        allowed = self.conts.consistent(prefix, word)
        if allowed is None and node.conts is not None:
            return node.conts
        ids = self.s.cont_ids if allowed is None else allowed
        logp = node.logits[ids] - node.log_z
        best = _top(logp[None], self.s.beam)[0]
        out = ids[best], logp[best], float(np.exp(logp.astype(np.float64)).sum())
        if allowed is None:  # the typed prefix is covered: the same on every keystroke, keep it
            node.conts = out
        return out

    def _extend(self, beam: list, options: list[tuple[Node, np.ndarray, np.ndarray]]) -> list:
        """The ``beam`` best one-piece continuations of the beam's entries (``options`` per entry)."""
        ids = np.concatenate([o[1] for o in options])
        ext = np.concatenate([o[2] for o in options])
        starts = np.cumsum([0, *(len(o[1]) for o in options)])
        out = []
        for j in _top(ext[None], self.s.beam)[0]:
            if np.isfinite(ext[j]):
                entry = int(np.searchsorted(starts, j, side="right")) - 1
                out.append((options[entry][0], int(ids[j]), ext[j], beam[entry][3] + self.s.surface[ids[j]]))
        return out


def _settled(finished: dict[str, float], left: Sequence[tuple[str, float, bool]], k: int) -> bool:
    """Whether what the beam can still add cannot change the top-``k`` words or their order.

    ``finished`` maps words to log-probabilities; ``left`` lists, per beam entry, its word so far,
    the probability it can still add, and whether that may go to the word itself (an entry not
    yet stepped) or only to longer words (its continuations). Pieces only append, so a finished
    word can gain at most the sum over the entries that can still become it, and a word not seen
    yet at most the largest such sum along one chain of prefixes. Gains carry a margin for
    float32 rounding; a word nothing can reach keeps its exact score.
    """
    ranked = sorted(finished.items(), key=lambda ws: -ws[1])
    probs = [math.exp(v) for _, v in ranked]
    live = [entry for entry in left if entry[1] > 0.0]
    kth = probs[k - 1]
    if len(probs) > k and not kth > probs[k]:
        return False  # a tie at the k-th place: only the full search orders it as the reference does

    def gain(word: str) -> float:
        return _MARGIN * sum(m for u, m, itself in live if word.startswith(u) and (itself or word != u))

    # Words outside the top k: one not seen yet, then each finished one (the rest are out of reach).
    unseen = _MARGIN * max((sum(m for u, m, _ in live if w.startswith(u)) for w, _, _ in live), default=0.0)
    if not kth > unseen:
        return False
    most = _MARGIN * sum(m for _, m, _ in live)
    for i in range(k, len(ranked)):
        if probs[i] + most < kth:
            break
        if not kth > probs[i] + gain(ranked[i][0]):
            return False
    # Inside the top k: each word must stay above everything ranked below it, gains included.
    below = -1.0
    for i in range(k - 1, 0, -1):
        below = max(below, probs[i] + gain(ranked[i][0]))
        if not probs[i - 1] > below:
            return False
    return True
