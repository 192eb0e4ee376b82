"""The product: what the keyboard suggests, a mix on the device of three parts.

- the global LSTM of the installed version (federated, optionally pretrained on public text);
- the n-grams published with that version (learned privately with TFF's heavy hitters);
- the device's personal model: word n-grams of this device's own log and live typing
  (``keyboard/ngram.py``), so a new word or name is suggested after one or two uses, words the
  global vocabulary lacks included. It lives only in memory, rebuilt from the log: deleting the
  log deletes it.

They are mixed linearly, P(w | context) = Σ λ_c P_c(w | context), over the union of each part's
best candidates (``CANDIDATES`` of each; the LSTM gives its beam's words with their probabilities,
and a word outside its beam counts 0 for it). The weights λ are fitted on this device's own text
by EM (``fit_weights``), on sentences none of the parts has learned from: the device's held-out
split (never used for federated training or for the n-gram sketches) and what is typed from then
on, each sentence scored by every part *before* the personal model learns it. Fitting on the
train split instead would give nearly all the weight to whichever part memorised it (measured:
the n-grams got 0.96). So the weights, like the personal model, keep learning from live typing
(``observe``). Nothing of the personal model or of the weights leaves the device.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import ConfigError
from keyboard.ngram import NgramModel
from tokenizer.words import split_typed
from tokenizer.words import words as words_of

# Best words asked of each part per keystroke: the beam's three (its search is the costly part),
# five of each n-gram model (cheap). Fixed, so the ranking never depends on how many are shown.
CANDIDATES = {"lstm": 3, "ngrams": 5, "personal": 5}
PARTS = ("lstm", "ngrams", "personal")
# A device with little typing keeps weights near these: pseudo-positions of the EM's prior.
PRIOR = {"lstm": 0.5, "ngrams": 0.3, "personal": 0.2}
PRIOR_STRENGTH = 20.0
FIT_POSITIONS = 3000  # the newest scored words the weights are fitted on (bounds the work per sentence)


@dataclass(frozen=True)
class MixWeights:
    """λ for each part; parts that are absent have weight 0 and the rest sum to 1."""

    lstm: float = PRIOR["lstm"]
    ngrams: float = PRIOR["ngrams"]
    personal: float = PRIOR["personal"]

    def __post_init__(self) -> None:
        values = [getattr(self, p) for p in PARTS]
        if any(not (v >= 0.0) for v in values) or not sum(values) > 0:
            raise ConfigError(f"mix weights must be non-negative with a positive sum, got {values}")

    @classmethod
    def prior(cls, parts: Sequence[str]) -> MixWeights:
        total = sum(PRIOR[p] for p in parts)
        return cls(**{p: (PRIOR[p] / total if p in parts else 0.0) for p in PARTS})

    def as_dict(self) -> dict[str, float]:
        return {p: getattr(self, p) for p in PARTS}


class ProductPredictor:
    """The keyboard's suggestions: the installed LSTM, the published n-grams and the personal model, mixed."""

    name = "product"

    def __init__(self, lstm=None, ngrams: NgramModel | None = None, personal: NgramModel | None = None,
                 weights: MixWeights | None = None, *, version: str | None = None):
        """``lstm`` is a ``ModelPredictor``.

        Or anything with its ``scored``, ``word_log_probs`` and ``can_produce``.
        """
        self.lstm, self.ngrams = lstm, ngrams
        self.personal = personal if personal is not None else NgramModel()
        self.weights = weights or MixWeights.prior(self.parts)
        self.version = version if version is not None else getattr(lstm, "version", None)
        self._lock = threading.Lock()  # observe() runs on the event loop while suggest() runs in a worker
        self._seen: dict[str, list[np.ndarray]] = {part: [] for part in self.parts}  # P_part(word) per sentence

    @property
    def parts(self) -> tuple[str, ...]:
        present = {"lstm": self.lstm is not None, "ngrams": self.ngrams is not None, "personal": True}
        return tuple(p for p in PARTS if present[p])

    # -- the keyboard ------------------------------------------------------------------------
    def suggest(self, text: str, k: int = 3) -> list[str]:
        """Up to ``k`` words completing the partial word of ``text`` (or, after a space, next words)."""
        return [word for word, _ in self.scored(*split_typed(text), k)]

    def observe(self, sentence: str, *, fit: bool = True) -> None:
        """Learns a finished sentence at once: the personal model counts its words, and (with ``fit``)
        every part's probability of them, taken before that, refits the weights."""
        ws = words_of(sentence)
        if not ws:
            return
        with self._lock:
            if fit and len(self.parts) > 1:
                self._refit(ws)
            self.personal.observe(ws)

    def observe_many(self, sentences: Sequence[str], *, fit_from: int = 0) -> None:
        """``observe(s, fit=i >= fit_from)`` for each sentence in turn, with the same result, faster:
        the LSTM scores the fitted sentences in one batch (its probabilities do not depend on what
        the personal model learned) and the weights are fitted once, at the end (each fit starts
        from the prior, so only the last one counts)."""
        lists = [words_of(s) for s in sentences]
        fitted = [i for i, ws in enumerate(lists) if ws and i >= fit_from] if len(self.parts) > 1 else []
        with self._lock:
            lstm = iter(self.lstm.word_log_probs([lists[i] for i in fitted])
                        if self.lstm is not None and fitted else ())
            chosen = set(fitted)
            for i, ws in enumerate(lists):
                if not ws:
                    continue
                if i in chosen:
                    self._remember(ws, np.exp(next(lstm)) if self.lstm is not None else None)
                self.personal.observe(ws)
            if fitted:
                self._fit()

    def _refit(self, ws: list[str]) -> None:
        self._remember(ws, np.exp(self.lstm.word_log_probs([ws])[0]) if self.lstm is not None else None)
        self._fit()

    def _remember(self, ws: list[str], lstm: np.ndarray | None) -> None:
        """Every part's probability of each word of ``ws``, the personal model's before it learns them."""
        probs = {"personal": np.array([self.personal.prob(w, ws[:j]) for j, w in enumerate(ws)])}
        if self.lstm is not None:
            probs["lstm"] = lstm
        if self.ngrams is not None:
            probs["ngrams"] = np.array([self.ngrams.prob(w, ws[:j]) for j, w in enumerate(ws)])
        for part in self.parts:
            self._seen[part].append(probs[part])
        while sum(map(len, self._seen["personal"])) - len(self._seen["personal"][0]) >= FIT_POSITIONS:
            for part in self.parts:
                self._seen[part].pop(0)

    def _fit(self) -> None:
        self.weights = fit_weights(self.parts, {p: np.concatenate(self._seen[p]) for p in self.parts})

    def scored(self, context: list[str], partial: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best words with their mixed probabilities, best first (ties by word)."""
        w = self.weights
        lstm = dict(self.lstm.scored(context, partial, CANDIDATES["lstm"])) if self.lstm is not None and w.lstm else {}
        with self._lock:
            candidates = set(lstm)
            for part, model in (("ngrams", self.ngrams), ("personal", self.personal)):
                if model is not None and getattr(w, part):
                    candidates.update(word for word, _ in model.top(context, partial, CANDIDATES[part]))
            scores = {word: self._mixed(word, context, lstm) for word in candidates}
        return sorted(scores.items(), key=lambda ws: (-ws[1], ws[0]))[:k]

    def _mixed(self, word: str, context: Sequence[str], lstm: dict[str, float]) -> float:
        w = self.weights
        p = w.lstm * float(np.exp(lstm[word])) if word in lstm else 0.0
        if self.ngrams is not None and w.ngrams:
            p += w.ngrams * self.ngrams.prob(word, context)
        if w.personal:
            p += w.personal * self.personal.prob(word, context)
        return p

    # -- evaluation (lm/recall.py's interface) ---------------------------------------------
    def can_produce(self, word: str) -> bool:
        with self._lock:
            known = self.personal.prob(word, ()) > 0 or (self.ngrams is not None and self.ngrams.prob(word, ()) > 0)
        return known or (self.lstm is not None and self.lstm.can_produce(word))

    def suggest_sentence(self, words: Sequence[str], k: int) -> list[list[str]]:
        """At each position 1..n-1, what the keyboard shows after the words before it and a space."""
        return [[word for word, _ in self.scored(list(words[:i]), "", k)] for i in range(1, len(words))]


def fit_weights(parts: Sequence[str], probs: dict[str, np.ndarray], *, iterations: int = 30) -> MixWeights:
    """EM for the mixture weights of ``parts`` from each part's probability of each target word.

    ``probs[part][i]`` is P_part(target_i | context_i). The prior (``PRIOR``, ``PRIOR_STRENGTH``
    pseudo-positions) keeps a device with few sentences near sensible weights. Positions that no
    part can predict carry no information and are skipped.
    """
    parts = list(parts)
    p = np.stack([np.asarray(probs[part], np.float64) for part in parts])  # [parts, positions]
    p = p[:, p.sum(axis=0) > 0]
    prior = np.array([PRIOR[part] for part in parts])
    prior = prior / prior.sum()
    lam = prior.copy()
    for _ in range(iterations):
        joint = lam[:, None] * p
        resp = joint / joint.sum(axis=0, keepdims=True)
        lam = (resp.sum(axis=1) + PRIOR_STRENGTH * prior) / (p.shape[1] + PRIOR_STRENGTH)
    return MixWeights(**{part: (float(lam[parts.index(part)]) if part in parts else 0.0) for part in PARTS})


def build_product(train_sentences: Sequence[str], *, lstm=None, ngrams: NgramModel | None = None,
                  version: str | None = None, parts: Sequence[str] | None = None) -> ProductPredictor:
    """The product for a device: the personal model learned from its train split, prior weights.

    Feed it the held-out split (and then live typing) with ``observe``: that fits the weights.
    ``parts`` restricts the mix (for the ablation); by default every part that is present.
    """
    present = {"lstm": lstm is not None, "ngrams": ngrams is not None, "personal": True}
    parts = [p for p in (parts or PARTS) if present[p]]
    personal = NgramModel()
    for sentence in train_sentences:
        personal.observe(words_of(sentence))
    return ProductPredictor(lstm if "lstm" in parts else None, ngrams if "ngrams" in parts else None,
                            personal, MixWeights.prior(parts), version=version)


def load_ngrams(version_dir: Path) -> NgramModel | None:
    """The n-grams published with a (verified) version, or None for a version without them."""
    from common import artifacts

    version_dir = Path(version_dir)
    if artifacts.NGRAMS not in artifacts.read_manifest(version_dir)["files"]:
        return None
    return NgramModel.from_counts(artifacts.read_ngrams(version_dir / artifacts.NGRAMS))
