"""The Keras next-word LSTM: embedding -> (CIFG) LSTM with projection -> logits tied to the embedding.

The model is a subclassed ``tf.keras.Model``: TFF 0.87 fails at run time on functional-API
Keras models (see ../shared/TFF-0.87-NOTES.md §1). The cell is written out (rather than
``keras.layers.LSTM``) because Keras has no CIFG and no recurrent projection; it is small enough
to be re-run step by step in numpy on the device.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from federated.model_config import ModelConfig
from tokenizer.specials import PAD_ID


class ProjectedLSTMCell(tf.keras.layers.Layer):
    """An LSTM cell with a recurrent projection (LSTMP); with ``cifg`` the forget gate is 1 - input gate.

    State is ``[h, c]`` with ``h`` of size ``projection_dim`` and ``c`` of size ``units``.
    Gate order in the kernel: input, [forget,] candidate, output.
    """

    def __init__(self, units: int, projection_dim: int, cifg: bool = True, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.projection_dim, self.cifg, self.seed = units, projection_dim, cifg, seed
        self.gates = 3 if cifg else 4
        self.state_size = [projection_dim, units]
        self.output_size = projection_dim

    def build(self, input_shape) -> None:
        in_dim = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(in_dim + self.projection_dim, self.gates * self.units),
            initializer=tf.keras.initializers.GlorotUniform(seed=self.seed),
        )
        # Start with the forget gate mostly open: +1 on a separate forget gate, or -1 on the
        # CIFG input gate (whose complement is the forget gate).
        bias = np.zeros(self.gates * self.units, dtype=np.float32)
        bias[: self.units] = -1.0 if self.cifg else 0.0
        if not self.cifg:
            bias[self.units : 2 * self.units] = 1.0
        self.bias = self.add_weight(name="bias", shape=bias.shape, initializer=tf.constant_initializer(bias))
        self.projection = self.add_weight(
            name="projection", shape=(self.units, self.projection_dim),
            initializer=tf.keras.initializers.GlorotUniform(seed=None if self.seed is None else self.seed + 1),
        )
        super().build(input_shape)

    def call(self, inputs, states):
        h, c = states
        z = tf.matmul(tf.concat([inputs, h], axis=-1), self.kernel) + self.bias
        if self.cifg:
            zi, zg, zo = tf.split(z, 3, axis=-1)
            i = tf.sigmoid(zi)
            f = 1.0 - i
        else:
            zi, zf, zg, zo = tf.split(z, 4, axis=-1)
            i, f = tf.sigmoid(zi), tf.sigmoid(zf)
        c = f * c + i * tf.tanh(zg)
        h = tf.matmul(tf.sigmoid(zo) * tf.tanh(c), self.projection)
        return h, [h, c]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "projection_dim": self.projection_dim, "cifg": self.cifg, "seed": self.seed}


class NextWordModel(tf.keras.Model):
    """Token ids ``[batch, time]`` -> next-piece logits ``[batch, time, vocab]``. Uncompiled.

    ``seed`` fixes the initial weights, so that a run with a fixed seed is reproducible.
    """

    def __init__(self, config: ModelConfig, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embedding = tf.keras.layers.Embedding(
            config.vocab_size, config.embedding_dim, name="embedding",
            embeddings_initializer=tf.keras.initializers.RandomUniform(-0.05, 0.05, seed=seed),
        )
        cell = ProjectedLSTMCell(
            config.lstm_units, config.embedding_dim, cifg=config.cifg,
            seed=None if seed is None else seed + 1, name="cell",
        )
        self.rnn = tf.keras.layers.RNN(cell, return_sequences=True, name="rnn")
        self.output_bias = self.add_weight(name="output_bias", shape=(config.vocab_size,), initializer="zeros")

    def call(self, tokens, training=False):
        h = self.rnn(self.embedding(tokens))
        return tf.einsum("bte,ve->btv", h, self.embedding.embeddings) + self.output_bias


def build_model(config: ModelConfig, seed: int | None = None) -> NextWordModel:
    """Builds the model and its weights (with a dummy call), ready for TFF or Keras."""
    model = NextWordModel(config, seed=seed)
    model(tf.zeros([1, config.sequence_length], tf.int32))
    return model


class MaskedCrossEntropy(tf.keras.losses.Loss):
    """Mean next-piece cross-entropy over the non-padding positions of a batch."""

    def __init__(self, name: str = "loss_without_pad", **kwargs):
        super().__init__(name=name, reduction=tf.keras.losses.Reduction.NONE, **kwargs)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        mask = tf.cast(tf.not_equal(y_true, PAD_ID), tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_true, logits=y_pred)
        return tf.reduce_sum(ce * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


class MaskedAccuracy(tf.keras.metrics.Metric):
    """Next-piece top-1 accuracy over the non-padding positions (padding is masked, OOV and EOS count)."""

    def __init__(self, name: str = "accuracy_without_pad", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_weight(name="correct", initializer="zeros")
        self.total = self.add_weight(name="total", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.int32)
        mask = tf.cast(tf.not_equal(y_true, PAD_ID), tf.float32)
        hit = tf.cast(tf.equal(tf.argmax(y_pred, axis=-1, output_type=tf.int32), y_true), tf.float32)
        self.correct.assign_add(tf.reduce_sum(hit * mask))
        self.total.assign_add(tf.reduce_sum(mask))

    def result(self):
        return tf.math.divide_no_nan(self.correct, self.total)

    def get_config(self):
        return {"name": self.name}


class NumTokens(tf.keras.metrics.Metric):
    """How many non-padding target tokens were seen."""

    def __init__(self, name: str = "num_tokens", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_weight(name="total", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add(tf.reduce_sum(tf.cast(tf.not_equal(tf.cast(y_true, tf.int32), PAD_ID), tf.float32)))

    def result(self):
        return self.total

    def get_config(self):
        return {"name": self.name}


def _stable_name(model: tf.keras.Model, variable: tf.Variable) -> str:
    """``next_word_model_3/rnn/cell/kernel:0`` -> ``rnn/cell/kernel`` (independent of build order)."""
    name = variable.name.split(":")[0]
    prefix = model.name + "/"
    return name[len(prefix) :] if name.startswith(prefix) else name


def named_weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """All weights by stable name, as saved in a published version's ``weights.npz``."""
    return {_stable_name(model, v): v.numpy() for v in model.weights}


def assign_named_weights(model: tf.keras.Model, weights: dict[str, np.ndarray], *, source: str = "weights") -> None:
    """Sets every weight from ``weights``; raises ``ValueError`` naming what is missing or mis-shaped."""
    for v in model.weights:
        name = _stable_name(model, v)
        if name not in weights:
            raise ValueError(f"{source}: no array named {name!r}")
        if tuple(weights[name].shape) != tuple(v.shape):
            raise ValueError(f"{source}: {name!r} has shape {tuple(weights[name].shape)}, the model needs {tuple(v.shape)}")
        v.assign(weights[name])
