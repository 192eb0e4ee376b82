"""Small published versions and fakes shared by the keyboard tests (numpy only, no TensorFlow), and the
live evaluation runner that the keyboard and federated tests of device evaluation share."""

from __future__ import annotations

import collections
import threading
from pathlib import Path

import numpy as np

from federated import registry
from lm.config import ModelConfig
from tokenizer.vocab import TokenizerConfig, train_from_counts

WORDS = [
    "the", "a", "cat", "dog", "sat", "ran", "on", "in", "to", "park", "mat", "ball", "red", "big",
    "small", "and", "then", "with", "my", "your", "good", "morning", "night", "love", "you", "thank",
    "see", "tomorrow",
]


def tiny_tokenizer_proto(vocab_size: int = 48) -> bytes:
    """A SentencePiece model trained in memory on a made-up word-count table."""
    counts = collections.Counter({w: 50 - 2 * i for i, w in enumerate(WORDS)})
    return train_from_counts(counts, TokenizerConfig(vocab_size=vocab_size))


def publish_random(models_dir: Path, *, seed: int = 0, promote: bool = True, proto: bytes | None = None,
                   round_num: int = 1, diverged: bool = False) -> registry.Version:
    """Publishes (and by default promotes) a version with random CIFG weights, like a trained one.

    ``diverged`` puts a NaN in the weights: the files verify but the model cannot run.
    """
    from tokenizer.vocab import Tokenizer

    proto = proto or tiny_tokenizer_proto()
    v, e, u = Tokenizer(proto).vocab_size, 8, 12
    rng = np.random.default_rng(seed)
    weights = {
        "embedding/embeddings": rng.normal(0, 0.8, (v, e)).astype(np.float32),
        "rnn/cell/kernel": rng.normal(0, 0.8, (2 * e, 3 * u)).astype(np.float32),
        "rnn/cell/bias": rng.normal(0, 0.1, 3 * u).astype(np.float32),
        "rnn/cell/projection": rng.normal(0, 0.8, (u, e)).astype(np.float32),
        "output_bias": rng.normal(0, 0.8, v).astype(np.float32),
    }
    if diverged:
        weights["output_bias"][0] = np.nan
    config = ModelConfig(vocab_size=v, embedding_dim=e, lstm_units=u)
    version = registry.publish(models_dir, weights=weights, config=config, tokenizer_proto=proto,
                               round_num=round_num, metrics={})
    if promote:
        registry.record_decision(models_dir, version.name, promoted=True, reason="test")
    return version


class FakePredictor:
    """Suggests ``<partial>1``, ``<partial>2``, ``<partial>3`` (or fixed words), and records each call."""

    name = "fake"

    def __init__(self, version: str | None = None, words: tuple[str, ...] | None = None):
        self.version = version
        self.words = words
        self.calls: list[str] = []

    def suggest(self, text: str, k: int = 3) -> list[str]:
        self.calls.append(text)
        if self.words is not None:
            return list(self.words[:k])
        partial = "" if not text or text[-1].isspace() else text.split()[-1]
        return [f"{partial or 'next'}{i}" for i in range(1, k + 1)]


class VocabularyPredictor:
    """The first ``k`` words of a fixed list that start with the partial word: chips easy to work out by hand."""

    name = "vocabulary"
    WORDS = ("the", "cat", "sat", "on", "mat", "a", "dog", "ran", "cats")

    def __init__(self, version: str | None = "0001"):
        self.version = version

    def suggest(self, text: str, k: int = 3) -> list[str]:
        from keyboard.predictor import split_context

        _, partial = split_context(text)
        return [w for w in self.WORDS if w.startswith(partial)][:k]


def start_live_eval(evaluation, version: str, **run_options) -> tuple[threading.Thread, dict]:
    """Runs ``evaluation.run(version, **run_options)`` in a thread and returns once its task is open.

    Returns the thread and a dict that holds the run's ``result`` once the thread has ended; the
    caller's devices answer the task meanwhile, as agents would.
    """
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(result=evaluation.run(version, **run_options)))
    thread.start()
    while evaluation.task is None:
        thread.join(0.01)
    return thread, out


def make_app(device, predictor=None, **kwargs):
    """A ``KeyboardApp`` on ``device`` with a :class:`FakePredictor` and no battery, so status is deterministic."""
    from keyboard.app import KeyboardApp  # textual: only the app tests pay for it

    kwargs.setdefault("charging", lambda: None)
    return KeyboardApp(device, predictor if predictor is not None else FakePredictor(), **kwargs)
