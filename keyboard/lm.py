"""The on-device language model: a published version run step by step in numpy.

The device never imports TensorFlow: ``model.json`` and the weights of a published version are
all it needs — ``ondevice.npz`` (int8, see ``common/ondevice.py``) when the version has one, else
``weights.npz``. One step feeds one piece per row and carries the LSTM state ``(h, c)``, so the
keyboard never re-runs the sentence and evaluation batches many positions at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tokenizer.specials import BOS_ID

State = tuple[np.ndarray, np.ndarray]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class NumpyLM:
    """The CIFG / LSTM next-piece model of ``lm/model.py``, in float32 numpy."""

    def __init__(self, config: dict, weights: dict[str, np.ndarray]):
        self.config = dict(config)
        f32 = lambda name: np.ascontiguousarray(weights[name], dtype=np.float32)  # noqa: E731
        self.embedding = f32("embedding/embeddings")  # [V, E]
        self.kernel = f32("rnn/cell/kernel")  # [E + P, G * U]
        self.bias = f32("rnn/cell/bias")
        self.projection = f32("rnn/cell/projection")  # [U, P]
        self.output_bias = f32("output_bias")
        for name in ("embedding", "kernel", "bias", "projection", "output_bias"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"model weights {name!r} hold NaN or infinite values; the model is unusable")
        self.embedding_t = np.ascontiguousarray(self.embedding.T)
        self.cifg = bool(self.config.get("cifg", True))
        self.vocab_size, self.embedding_dim = self.embedding.shape
        self.units = self.projection.shape[0]
        expected_gates = 3 if self.cifg else 4
        if self.kernel.shape != (2 * self.embedding_dim, expected_gates * self.units):
            raise ValueError(f"kernel shape {self.kernel.shape} does not fit the model config {self.config}")
        # The step's kernel with the sigmoid gates first and halved, so one tanh serves every gate:
        # sigmoid(z) = (tanh(z / 2) + 1) / 2, and halving is exact in floating point.
        u = self.units
        sigmoid_gates, candidate = ((0, 2), 1) if self.cifg else ((0, 1, 3), 2)
        cols = np.concatenate([np.arange(g * u, (g + 1) * u) for g in (*sigmoid_gates, candidate)])
        half = np.ones(len(cols), np.float32)
        half[: len(sigmoid_gates) * u] = 0.5
        self._step_kernel = np.ascontiguousarray(self.kernel[:, cols] * half)
        self._step_bias = self.bias[cols] * half
        self._sigmoid_width = len(sigmoid_gates) * u

    @classmethod
    def load(cls, version_dir: Path, *, on_device: bool = True) -> NumpyLM:
        """Loads a version directory (verify it first): its int8 on-device weights when its manifest
        lists them and ``on_device`` is set, else its float ``weights.npz``."""
        from common import artifacts, ondevice
        from common import version_dir as version_files

        version_dir = Path(version_dir)
        config = json.loads((version_dir / artifacts.CONFIG).read_text())
        if on_device and artifacts.ONDEVICE in artifacts.read_manifest(version_dir)["files"]:
            return cls(config, ondevice.load(version_dir / artifacts.ONDEVICE))
        return cls(config, version_files.read_weights(version_dir))

    def zero_state(self, batch: int) -> State:
        return (np.zeros((batch, self.embedding_dim), np.float32), np.zeros((batch, self.units), np.float32))

    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """Feeds one piece per row; returns next-piece log-probabilities ``[B, V]`` and the new state."""
        h, c = self.cell(tokens, state)
        return self.log_probs(h), (h, c)

    def cell(self, tokens: np.ndarray | int, state: State) -> State:
        """One LSTM step without the output layer (cheap: no softmax over the vocabulary).

        A batch (``tokens [B]``, states ``[B, ·]``) or one piece (an int, 1-D states: the keyboard's
        beam steps one node at a time). In-place where it can: at one row, array overhead is the cost.
        """
        h, c = state
        t = np.concatenate((self.embedding[tokens], h), axis=-1) @ self._step_kernel
        t += self._step_bias
        np.tanh(t, out=t)
        u, n = self.units, self._sigmoid_width
        gates, g = t[..., :n], t[..., n:]
        gates += 1.0
        gates *= 0.5
        if self.cifg:
            i, o = gates[..., :u], gates[..., u:]
            f = 1.0 - i
        else:
            i, f, o = gates[..., :u], gates[..., u : 2 * u], gates[..., 2 * u :]
        c = f * c + i * g
        return (o * np.tanh(c)) @ self.projection, c

    def logits(self, h: np.ndarray) -> np.ndarray:
        """Next-piece logits ``[B, V]`` from outputs ``h`` ``[B, E]``."""
        return h @ self.embedding_t + self.output_bias

    def log_probs(self, h: np.ndarray) -> np.ndarray:
        """Next-piece log-probabilities ``[B, V]`` from outputs ``h`` ``[B, E]``."""
        return log_softmax(self.logits(h))

    def run_batch(self, sequences: list[list[int]]) -> State:
        """Runs ``<s> seq`` for many sequences at once; returns the states after every input,
        ``h [S, T+1, E]`` and ``c [S, T+1, U]`` (positions past a sequence's end are padding)."""
        s = len(sequences)
        t = max((len(q) for q in sequences), default=0)
        tokens = np.zeros((s, t + 1), np.int64)
        tokens[:, 0] = BOS_ID
        for row, q in enumerate(sequences):
            tokens[row, 1 : len(q) + 1] = q
        hs = np.zeros((s, t + 1, self.embedding_dim), np.float32)
        cs = np.zeros((s, t + 1, self.units), np.float32)
        state = self.zero_state(s)
        for step in range(t + 1):
            state = self.cell(tokens[:, step], state)
            hs[:, step], cs[:, step] = state
        return hs, cs

    def run(self, pieces: list[int]) -> tuple[np.ndarray, list[State]]:
        """Runs ``<s> pieces``; returns log-probs after each input ``[T+1, V]`` and the state after each."""
        state = self.zero_state(1)
        outputs, states = [], []
        for token in [BOS_ID, *pieces]:
            logp, state = self.step(np.array([token]), state)
            outputs.append(logp[0])
            states.append(state)
        return np.stack(outputs), states

