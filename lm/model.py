"""The Keras next-word LSTM: embedding -> (CIFG) LSTM with projection -> logits tied to the embedding.

The model is a subclassed ``tf.keras.Model``: TFF 0.87 fails at run time on functional-API
Keras models (see ../shared/TFF-0.87-NOTES.md §1). The cell is written out (rather than
``keras.layers.LSTM``) because Keras has no CIFG and no recurrent projection; it is small enough
to be re-run step by step in numpy on the device.

Training speed (``bench/train_flops.py``). A client batch is only 16 sequences, so a time step's
ops are tiny and their count, not their FLOPs, sets the cost of the recurrence. Hence:

* the input half of the gate matmul, ``x @ W_x + b``, is one matmul over all time steps before
  the loop; each step only does ``h @ W_h``, one tanh for every gate and the projection;
* the recurrence has a hand-written gradient: the backward loop only carries ``dh`` and ``dc``,
  and the weight gradients are three matmuls over all time steps after it (autodiff would
  accumulate them step by step);
* the tied output layer is a plain matmul + bias (``einsum`` ran as a slow MKL kernel), and the
  cross-entropy is built on ``tf.nn.softmax`` (TF's fused sparse cross-entropy kernel took
  several times as long as the output matmul on this CPU).

The weights keep the names, shapes and layout of the step-by-step cell (``rnn/cell/kernel`` has
the input rows first), which ``ProjectedLSTMCell.call`` still implements as the reference.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lm.config import ModelConfig
from tokenizer.specials import PAD_ID


class ProjectedLSTMCell(tf.keras.layers.Layer):
    """An LSTM cell with a recurrent projection (LSTMP); with ``cifg`` the forget gate is 1 - input gate.

    State is ``[h, c]`` with ``h`` of size ``projection_dim`` and ``c`` of size ``units``.
    Gate order in the kernel: input, [forget,] candidate, output. It owns the weights;
    ``ProjectedLSTM`` runs it over whole sequences, and ``call`` is one step (the reference,
    usable with ``keras.layers.RNN``).
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
        # sigmoid(z) = (tanh(z / 2) + 1) / 2: pre-activations scaled by this run through one tanh.
        scale = np.ones(self.gates * self.units, np.float32)
        for gate in (0, 2) if self.cifg else (0, 1, 3):
            scale[gate * self.units : (gate + 1) * self.units] = 0.5
        self.gate_scale = scale
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
        return {**super().get_config(), "units": self.units, "projection_dim": self.projection_dim,
                "cifg": self.cifg, "seed": self.seed}


def _gates(a, cifg: bool):
    """Input, forget, candidate and output gates from ``a = tanh(scaled pre-activations)``."""
    if cifg:
        ai, g, ao = tf.split(a, 3, axis=-1)
        i = 0.5 * ai + 0.5
        return i, 1.0 - i, g, 0.5 * ao + 0.5
    ai, af, g, ao = tf.split(a, 4, axis=-1)
    return 0.5 * ai + 0.5, 0.5 * af + 0.5, g, 0.5 * ao + 0.5


def _steps(size, width: int) -> tf.TensorArray:
    return tf.TensorArray(tf.float32, size=size, element_shape=tf.TensorShape([None, width]))


def projected_lstm_sequence(xw, w_h, projection, *, cifg: bool):
    """Runs the cell over time-major inputs from zero state; returns every ``h``, ``[T, B, P]``.

    ``xw`` is ``x @ W_x + b`` for all steps, ``[T, B, G*U]``, and both it and ``w_h`` are already
    multiplied by the cell's ``gate_scale`` so that one tanh serves every gate.
    """

    @tf.custom_gradient
    def run(xw, w_h, projection):
        return _sequence_and_gradient(xw, w_h, projection, cifg)

    return run(xw, w_h, projection)


def _sequence_and_gradient(xw, w_h, projection, cifg: bool):
    """The forward loop, and the backward pass as a function of the gradient of every ``h``."""
    steps, batch = tf.shape(xw)[0], tf.shape(xw)[1]
    units, proj_dim, width = projection.shape[0], projection.shape[1], w_h.shape[1]
    xs = _steps(steps, width).unstack(xw)

    def step(t, h, c, hs, cs, acts):
        a = tf.tanh(xs.read(t) + tf.matmul(h, w_h))
        i, f, g, o = _gates(a, cifg)
        c = f * c + i * g
        h = tf.matmul(o * tf.tanh(c), projection)
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), acts.write(t, a)

    init = (0, tf.zeros([batch, proj_dim]), tf.zeros([batch, units]), _steps(steps, proj_dim),
            _steps(steps, units), _steps(steps, width))
    _, _, _, hs, cs, acts = tf.while_loop(lambda t, *_: t < steps, step, init)
    hs, cs, acts = hs.stack(), cs.stack(), acts.stack()

    def grad(d_hs):
        # Everything that does not depend on the backward recursion is computed for all steps at once.
        c_prev = tf.concat([tf.zeros_like(cs[:1]), cs[:-1]], 0)
        i, f, g, o = _gates(acts, cifg)
        tanh_c = tf.tanh(cs)
        d_sig = 0.5 * (1.0 - tf.square(acts))  # d sigmoid / d scaled pre-activation, for the sigmoid gates
        dm_to_dc = o * (1.0 - tf.square(tanh_c))  # m = o * tanh(c)
        from_dc = [(g - c_prev) * d_sig[..., :units]] if cifg else [  # c = c' + i (g - c')
            g * d_sig[..., :units], c_prev * d_sig[..., units : 2 * units]]  # c = f c' + i g
        from_dc.append(i * (1.0 - tf.square(g)))
        dz_factor = tf.concat([*from_dc, tanh_c * d_sig[..., -units:]], -1)  # [T, B, G*U]
        projection_t, w_h_t = tf.transpose(projection), tf.transpose(w_h)
        d_hs_, factors, dm_to_dc_, f_ = (_steps(steps, w).unstack(v) for w, v in (
            (proj_dim, d_hs), (width, dz_factor), (units, dm_to_dc), (units, f)))

        def back(t, dh_next, dc_next, dzs, dhs):
            dh = d_hs_.read(t) + dh_next
            dm = tf.matmul(dh, projection_t)
            dc = dc_next + dm * dm_to_dc_.read(t)
            dz = tf.concat([dc] * len(from_dc) + [dm], -1) * factors.read(t)
            return t - 1, tf.matmul(dz, w_h_t), dc * f_.read(t), dzs.write(t, dz), dhs.write(t, dh)

        init = (steps - 1, tf.zeros([batch, proj_dim]), tf.zeros([batch, units]), _steps(steps, width),
                _steps(steps, proj_dim))
        _, _, _, dzs, dhs = tf.while_loop(lambda t, *_: t >= 0, back, init)
        dz, dh = dzs.stack(), dhs.stack()
        h_prev = tf.concat([tf.zeros_like(hs[:1]), hs[:-1]], 0)
        flat = lambda v: tf.reshape(v, [-1, v.shape[-1]])  # noqa: E731
        d_w_h = tf.matmul(flat(h_prev), flat(dz), transpose_a=True)
        d_projection = tf.matmul(flat(o * tanh_c), flat(dh), transpose_a=True)
        return dz, d_w_h, d_projection

    return hs, grad


class ProjectedLSTM(tf.keras.layers.Layer):
    """``keras.layers.RNN(cell, return_sequences=True)`` for this cell, restructured for speed.

    ``[B, T, E] -> [B, T, P]`` from zero state. The weights are the cell's, created under the
    cell's name as Keras's RNN layer does, so they are still called ``rnn/cell/...``.
    """

    def __init__(self, cell: ProjectedLSTMCell, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell

    def build(self, input_shape) -> None:
        with tf.name_scope(self.cell.name):
            self.cell.build(input_shape)
        super().build(input_shape)

    def call(self, inputs):
        cell, in_dim = self.cell, inputs.shape[-1]
        scale = tf.constant(cell.gate_scale)
        kernel = cell.kernel * scale
        x = tf.transpose(inputs, [1, 0, 2])  # time-major, so that a step reads one contiguous slice
        steps, batch = tf.shape(x)[0], tf.shape(x)[1]
        xw = tf.nn.bias_add(tf.matmul(tf.reshape(x, [-1, in_dim]), kernel[:in_dim]), cell.bias * scale)
        xw = tf.reshape(xw, [steps, batch, kernel.shape[1]])
        hs = projected_lstm_sequence(xw, kernel[in_dim:], cell.projection, cifg=cell.cifg)
        return tf.transpose(hs, [1, 0, 2])


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
        self.rnn = ProjectedLSTM(cell, name="rnn")
        self.output_bias = self.add_weight(name="output_bias", shape=(config.vocab_size,), initializer="zeros")

    def call(self, tokens, training=False):
        return tied_logits(self.rnn(self.embedding(tokens)), self.embedding.embeddings, self.output_bias)


def tied_logits(h, embeddings, bias):
    """``[B, T, E] -> [B, T, V]`` logits against the input embedding: one matmul with a fused bias."""
    shape = tf.shape(h)
    logits = tf.nn.bias_add(tf.matmul(tf.reshape(h, [-1, embeddings.shape[1]]), embeddings, transpose_b=True), bias)
    return tf.reshape(logits, [shape[0], shape[1], embeddings.shape[0]])


def build_model(config: ModelConfig, seed: int | None = None) -> NextWordModel:
    """Builds the model and its weights (with a dummy call), ready for TFF or Keras."""
    model = NextWordModel(config, seed=seed)
    model(tf.zeros([1, config.sequence_length], tf.int32))
    return model


@tf.custom_gradient
def sparse_softmax_cross_entropy(logits, labels):
    """``tf.nn.sparse_softmax_cross_entropy_with_logits`` for ``[N, V]`` logits, from ``tf.nn.softmax``.

    log-sum-exp = max logit - log(max probability); the max probability is at least 1/V, so
    this never takes the log of an underflowed number.
    """
    p = tf.nn.softmax(logits)
    at_label = tf.stack([tf.range(tf.shape(labels)[0]), labels], axis=1)
    loss = tf.reduce_max(logits, -1) - tf.math.log(tf.reduce_max(p, -1)) - tf.gather_nd(logits, at_label)

    def grad(d_loss):
        return tf.tensor_scatter_nd_sub(p * d_loss[:, None], at_label, d_loss), None

    return loss, grad


class MaskedCrossEntropy(tf.keras.losses.Loss):
    """Mean next-piece cross-entropy over the non-padding positions of a batch."""

    def __init__(self, name: str = "loss_without_pad", **kwargs):
        super().__init__(name=name, reduction=tf.keras.losses.Reduction.NONE, **kwargs)

    def call(self, y_true, y_pred):
        y_true = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        mask = tf.cast(tf.not_equal(y_true, PAD_ID), tf.float32)
        ce = sparse_softmax_cross_entropy(tf.reshape(y_pred, [-1, tf.shape(y_pred)[-1]]), y_true)
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


def stable_name(model: tf.keras.Model, variable: tf.Variable) -> str:
    """``next_word_model_3/rnn/cell/kernel:0`` -> ``rnn/cell/kernel`` (independent of build order)."""
    name = variable.name.split(":")[0]
    prefix = model.name + "/"
    return name[len(prefix) :] if name.startswith(prefix) else name


def named_weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """All weights by stable name, as saved in a published version's ``weights.npz``."""
    return {stable_name(model, v): v.numpy() for v in model.weights}


def assign_named_weights(model: tf.keras.Model, weights: dict[str, np.ndarray], *, source: str = "weights") -> None:
    """Sets every weight from ``weights``; raises ``ValueError`` naming what is missing or mis-shaped."""
    for v in model.weights:
        name = stable_name(model, v)
        if name not in weights:
            raise ValueError(f"{source}: no array named {name!r}")
        if tuple(weights[name].shape) != tuple(v.shape):
            raise ValueError(f"{source}: {name!r} has shape {tuple(weights[name].shape)}, "
                             f"the model needs {tuple(v.shape)}")
        v.assign(weights[name])


def trainable_names(config: ModelConfig) -> list[str]:
    """The stable names of the trainable weights, in the order TFF's model lists them (model deltas)."""
    model = build_model(config)
    return [stable_name(model, v) for v in model.trainable_variables]
