"""What the keyboard asks after every keystroke: the top-k words for the text typed so far.

The app only knows the small ``Predictor`` interface, so tests drive it with a fake and the event
loop never depends on how suggestions are made. ``ModelPredictor`` runs the installed model in
numpy (its int8 on-device weights, when the version has them) and keeps the model's steps between
keystrokes (``keyboard/beam.py``): the state at each word boundary of the sentence being typed,
and the beam's nodes for the word being typed, so a keystroke costs the few steps not yet taken.
``FrequencyPredictor`` is the fallback before any model is installed: the person's own word and
word-pair counts.
"""

from __future__ import annotations

import collections
import heapq
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from common.artifacts import TOKENIZER, ArtifactError
from keyboard.beam import CachedBeam, Node
from keyboard.controls import learnable_splits
from keyboard.install import installed
from keyboard.lm import NumpyLM
from keyboard.personalize import active_model_dir
from keyboard.store import Device
from keyboard.suggest import WordSuggester
from tokenizer.specials import BOS_ID
from tokenizer.vocab import Tokenizer, TokenizerError
from tokenizer.words import split_typed
from tokenizer.words import words as words_of

FIT_SENTENCES_AT_START = 200  # held-out sentences the mix weights are fitted on when the keyboard starts


@runtime_checkable
class Predictor(Protocol):
    """Suggests words for the text typed so far. Implementations must be safe to call from a thread."""

    name: str
    version: str | None

    def suggest(self, text: str, k: int = 3) -> list[str]:
        """Up to ``k`` completions of the partly typed last word or, after a space, next words."""
        ...


@runtime_checkable
class Learner(Protocol):
    """A predictor that also learns from each sentence the person finishes."""

    def observe(self, sentence: str) -> None: ...


def split_context(text: str) -> tuple[list[str], str]:
    """``("The cat, sa")`` -> ``(["the", "cat"], "sa")``; after a space or punctuation the partial word is empty.

    The words of ``tokenizer.words``, the same for every predictor and for evaluation.
    """
    return split_typed(text)


class ModelPredictor:
    """An installed model version, with the model's steps kept between keystrokes."""

    def __init__(self, version_dir: Path, *, version: str | None = None, beam: int = 4, max_pieces: int = 4):
        version_dir = Path(version_dir)
        lm = NumpyLM.load(version_dir)
        tokenizer = Tokenizer.load(version_dir / TOKENIZER)
        self.suggester = WordSuggester(lm, tokenizer, beam=beam, max_pieces=max_pieces)
        self.beam = CachedBeam(self.suggester)
        self.name = WordSuggester.name
        self.version: str | None = version or version_dir.name
        # _contexts[i] is the node after <s> and the first i words of _words.
        self._words: list[str] = []
        self._contexts: list[Node] = [self.beam.root(*lm.cell(np.array([BOS_ID], np.int64), lm.zero_state(1)))]
        # A superseded worker thread may still be inside suggest() when the next keystroke arrives.
        self._lock = threading.Lock()

    def suggest(self, text: str, k: int = 3) -> list[str]:
        """Same answer as ``WordSuggester.suggest(text, k)``; only steps not taken before are run."""
        return [word for word, _ in self.scored(*split_context(text), k)]

    def scored(self, words: list[str], partial: str, k: int) -> list[tuple[str, float]]:
        """The top-``k`` words after ``words`` that start with ``partial``, with their log-probabilities."""
        with self._lock:
            return self.beam.scored(self._context(words), partial, k)

    def word_log_probs(self, sentences: list[list[str]]) -> list[np.ndarray]:
        """log P(word | words before it) for each word of each sentence (``WordSuggester.word_log_probs``)."""
        return self.suggester.word_log_probs(sentences)

    def can_produce(self, word: str) -> bool:
        return self.suggester.can_produce(word)

    def _context(self, words: list[str]) -> Node:
        """The node after ``<s> words``, reusing the longest cached prefix of the sentence."""
        keep = 0
        for cached, word in zip(self._words, words):
            if cached != word:
                break
            keep += 1
        del self._words[keep:], self._contexts[keep + 1 :]
        for word in words[keep:]:
            previous = self._contexts[-1]
            # Usually the beam already took these steps while the word was typed.
            self._contexts.append(self.beam.feed(previous, self.suggester.word_pieces(word)))
            self._words.append(word)
            previous.children = {}  # only the newest context's beam is reused; this bounds memory
        return self._contexts[-1]


class FrequencyPredictor:
    """Suggestions from the person's own log: words after the previous word first, then by count."""

    name = "word_counts"
    version: str | None = None

    def __init__(self, sentences: Iterable[str] = (), *, reason: str = "no model yet"):
        self.reason = reason  # why there is no model, shown in the status bar
        self.unigrams: collections.Counter[str] = collections.Counter()
        # "" stands for the start of a sentence: no typed word is empty.
        self.bigrams: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._lock = threading.Lock()  # observe() runs on the event loop while suggest() runs in a worker
        for sentence in sentences:
            self.observe(sentence)

    def observe(self, sentence: str) -> None:
        """Counts the words and word pairs of one finished sentence."""
        words = words_of(sentence)
        with self._lock:
            self.unigrams.update(words)
            for previous, word in zip(["", *words], words):
                self.bigrams[previous][word] += 1

    def suggest(self, text: str, k: int = 3) -> list[str]:
        """Words starting with the partial word, ranked by (count after the previous word, count, word)."""
        words, partial = split_context(text)
        previous = words[-1] if words else ""
        with self._lock:
            after = self.bigrams.get(previous, {})
            candidates = [(-after.get(w, 0), -n, w) for w, n in self.unigrams.items() if w.startswith(partial)]
        return [w for _, _, w in heapq.nsmallest(k, candidates)]


def load_predictor(device_dir: Path, *, hold_back: int = 0) -> Predictor:
    """The product for this device (``keyboard.mix``): the installed version's LSTM (its personal
    fine-tune where that won) and n-grams, mixed with the personal model of the log, the weights
    fitted on the log. Without a usable version, the person's own word counts.

    ``hold_back``: the log's newest sentences the predictor does not learn, so a simulated typist
    can type them as new text (``keyboard/replay.py``).
    """
    from keyboard.mix import build_product, load_ngrams

    current = installed(device_dir)
    reason = "no model yet"
    with Device(device_dir) as device:
        splits = learnable_splits(device)  # what the person asked the device to forget stays forgotten
    heldout = splits.heldout[: max(0, len(splits.heldout) - hold_back)]
    if current is not None:
        model_dir = active_model_dir(device_dir, current=current) or current.path
        label = current.version if model_dir == current.path else f"{current.version} (personalized)"
        try:
            product = build_product(splits.train, lstm=ModelPredictor(model_dir, version=label),
                                    ngrams=load_ngrams(current.path), version=label)
        except (OSError, ValueError, KeyError, TokenizerError, ArtifactError) as exc:
            # A version that verifies but cannot run (say, weights that diverged) must not stop the person typing.
            reason = f"model {label} cannot run ({exc})"
        else:
            # The held-out split trained no part: it fits the weights (its newest sentences, which bounds
            # the work at start), and the personal model learns all of it.
            product.observe_many(heldout, fit_from=len(heldout) - FIT_SENTENCES_AT_START)
            return product
    return FrequencyPredictor(splits.train + heldout, reason=reason)
