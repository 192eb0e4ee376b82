"""What the keyboard asks after every keystroke: the top-k words for the text typed so far.

The app only knows the small ``Predictor`` interface, so tests drive it with a fake and the event
loop never depends on how suggestions are made. ``ModelPredictor`` runs the installed model in
numpy and keeps the LSTM state at each word boundary of the sentence being typed, so a keystroke
costs one beam search, not a re-run of the sentence. ``FrequencyPredictor`` is the fallback before
any model is installed: the person's own word and word-pair counts.
"""

from __future__ import annotations

import collections
import heapq
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from fedkb.artifacts import TOKENIZER
from keyboard.install import installed
from keyboard.lm import NumpyLM, State
from keyboard.personalize import active_model_dir
from keyboard.store import Device
from keyboard.suggest import WordSuggester
from tokenizer.specials import BOS_ID
from tokenizer.vocab import Tokenizer, TokenizerError


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
    """``("the cat sa")`` -> ``(["the", "cat"], "sa")``; after a space the partial word is empty.

    The same rule as ``WordSuggester.suggest``, so every predictor sees the same context.
    """
    words = text.split()
    partial = "" if (not text or text[-1].isspace()) else (words.pop() if words else "")
    return words, partial


class ModelPredictor:
    """An installed model version, with the LSTM state cached at each word boundary of the sentence."""

    def __init__(self, version_dir: Path, *, version: str | None = None, beam: int = 4, max_pieces: int = 4):
        version_dir = Path(version_dir)
        lm = NumpyLM.load(version_dir)
        tokenizer = Tokenizer.load(version_dir / TOKENIZER)
        self.suggester = WordSuggester(lm, tokenizer, beam=beam, max_pieces=max_pieces)
        self.name = WordSuggester.name
        self.version: str | None = version or version_dir.name
        # _states[i] is the state after <s> and the first i words of _words; _logps caches its
        # next-piece log-probabilities once asked for.
        start = lm.cell(np.array([BOS_ID], np.int64), lm.zero_state(1))
        self._words: list[str] = []
        self._states: list[State] = [start]
        self._logps: list[np.ndarray | None] = [None]
        # A superseded worker thread may still be inside suggest() when the next keystroke arrives.
        self._lock = threading.Lock()

    def suggest(self, text: str, k: int = 3) -> list[str]:
        """Same answer as ``WordSuggester.suggest(text, k)``; only words not yet fed are run."""
        words, partial = split_context(text)
        with self._lock:
            logp, state = self._boundary(words)
            return self.suggester.suggest_from(logp, state, k, prefixes=[partial])[0]

    def _boundary(self, words: list[str]) -> tuple[np.ndarray, State]:
        """Log-probs and state after ``<s> words``, reusing the longest cached prefix of the sentence."""
        keep = 0
        for cached, word in zip(self._words, words):
            if cached != word:
                break
            keep += 1
        del self._words[keep:], self._states[keep + 1 :], self._logps[keep + 1 :]
        lm = self.suggester.lm
        for word in words[keep:]:
            state = self._states[-1]
            for piece in self.suggester.word_pieces(word):
                state = lm.cell(np.array([piece], np.int64), state)
            self._words.append(word)
            self._states.append(state)
            self._logps.append(None)
        if self._logps[-1] is None:
            self._logps[-1] = lm.log_probs(self._states[-1][0])
        return self._logps[-1], self._states[-1]


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
        words = sentence.split()
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


def load_predictor(device_dir: Path) -> Predictor:
    """The model the device should run (its personal model where that won), else the person's word counts."""
    current = installed(device_dir)
    reason = "no model yet"
    if current is not None:
        model_dir = active_model_dir(device_dir) or current.path
        label = current.version if model_dir == current.path else f"{current.version} (personalized)"
        try:
            return ModelPredictor(model_dir, version=label)
        except (OSError, ValueError, KeyError, TokenizerError) as exc:
            # A version that verifies but cannot run (say, weights that diverged) must not stop the person typing.
            reason = f"model {label} cannot run ({exc})"
    with Device(device_dir) as device:
        sentences = device.sentences()
    return FrequencyPredictor(sentences, reason=reason)
