"""FedAvg's client work, in TensorFlow alone: what a device computes for a round.

A device trains the task's weights on its own train split with local SGD (gradients clipped by
global norm, as ``federated/optimizers.py``'s ``ClippedSGD``) and returns the *model delta*
``initial - trained`` with its weight (examples trained on, or 1 for uniform weighting). It is
TFF's ``build_model_delta_client_work`` step for step: the same batches in the same order, the
same loss, the same zeroing of a non-finite update; a test checks that the two agree. It needs
no TFF and no ``worker_binary``, so a device agent imports only TensorFlow.

The simulation (``fedkb train``) feeds TFF the same examples and datasets from here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.messages import LocalTraining, max_update_norm, max_weight  # noqa: F401  (the task's settings)
from lm.config import ModelConfig
from lm.examples import cached_examples


@dataclass(frozen=True)
class ClientUpdate:
    delta: dict[str, np.ndarray]  # initial - trained, per trainable weight name
    weight: float
    metrics: dict[str, float]  # sums: loss_sum (over tokens), tokens, correct, examples


def round_examples(device_dir: Path, sentences, encode, *, tokenizer_sha256: str, sequence_length: int,
                   settings: LocalTraining, round_num: int) -> np.ndarray:
    """A device's train split as examples for round ``round_num``, at most ``max_examples_per_client``."""
    examples = cached_examples(device_dir, sentences, encode, tokenizer_sha256=tokenizer_sha256,
                               sequence_length=sequence_length)
    if len(examples) > settings.max_examples_per_client:
        rng = np.random.default_rng([settings.seed, round_num, len(examples)])
        examples = examples[np.sort(rng.choice(len(examples), settings.max_examples_per_client, replace=False))]
    return examples


def shuffle_seed(settings: LocalTraining, round_num: int) -> int:
    return settings.seed + round_num


def client_dataset(examples: np.ndarray, settings: LocalTraining, shuffle_seed: int):
    """A device's examples as ``(inputs, targets)`` batches, shuffled anew for each epoch.

    The order comes from numpy's generator seeded with ``shuffle_seed`` alone. ``Dataset.shuffle``
    with an op seed also depends on TensorFlow's global seed, which any code in the process may
    have set (``tf.keras.utils.set_random_seed``: pretraining does): a device agent and the
    simulation would then train on the same examples in different orders.
    """
    import tensorflow as tf

    rng = np.random.default_rng(shuffle_seed)
    order = np.concatenate([rng.permutation(len(examples)) for _ in range(settings.local_epochs)])
    shuffled = examples[order]
    ds = tf.data.Dataset.from_tensor_slices((shuffled[:, :-1], shuffled[:, 1:]))
    return ds.batch(settings.batch_size)


def client_update(config: ModelConfig, weights: dict[str, np.ndarray], examples: np.ndarray,
                  settings: LocalTraining, *, round_num: int) -> ClientUpdate:
    """Trains ``weights`` on ``examples`` as TFF's model-delta client work does; returns the delta."""
    with _lock:  # one device trains at a time in a process; TensorFlow's own threads share the cores
        return _client_update(_trainer(config), weights, examples, settings, round_num)


def _client_update(trainer, weights, examples, settings, round_num) -> ClientUpdate:
    from lm.model import assign_named_weights, stable_name

    model, variables, step = trainer.model, trainer.model.trainable_variables, trainer.step
    assign_named_weights(model, weights, source="the task's weights")
    initial = [v.numpy() for v in variables]
    trainer.lr.assign(settings.client_lr)
    trainer.clip.assign(settings.client_clip_norm)

    sums = np.zeros(4, np.float64)
    examples_seen = batches = 0
    for x, y in client_dataset(examples, settings, shuffle_seed(settings, round_num)):
        loss_sum, tokens, correct, n = step(x, y)
        # TFF's Keras loss metric is the mean of batch losses weighted by batch size
        sums += [float(loss_sum), float(tokens), float(correct), float(loss_sum) / max(float(tokens), 1.0) * int(n)]
        examples_seen += int(n)
        batches += 1
    delta = {stable_name(model, v): w0 - v.numpy() for v, w0 in zip(variables, initial)}
    finite = all(np.isfinite(d).all() for d in delta.values())
    if not finite:  # as TFF: a non-finite update is zeroed and weighs nothing
        delta = {k: np.zeros_like(d) for k, d in delta.items()}
    weight = (float(examples_seen) if settings.weighting == "examples" else 1.0) if finite else 0.0
    return ClientUpdate(delta, weight, {"loss_sum": sums[0], "tokens": sums[1], "correct": sums[2],
                                        "loss_x_examples": sums[3], "examples": float(examples_seen),
                                        "batches": float(batches)})


@dataclass
class _Trainer:
    model: object
    step: object
    lr: object
    clip: object


_trainers: dict = {}  # one model and traced step per config, built once per process
_lock = threading.Lock()


def _trainer(config: ModelConfig) -> _Trainer:
    """The process's model and local-SGD step for ``config``, built and traced once (call with ``_lock``)."""
    cache = _trainers
    if config in cache:
        return cache[config]
    import tensorflow as tf

    from lm.model import MaskedCrossEntropy, build_model
    from tokenizer.specials import PAD_ID

    model = build_model(config)
    variables = model.trainable_variables
    loss_fn = MaskedCrossEntropy()
    lr, clip = tf.Variable(1.0, trainable=False), tf.Variable(1.0, trainable=False)
    spec = tf.TensorSpec([None, config.sequence_length], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, variables)
        grads = [tf.convert_to_tensor(g) for g in grads]  # embedding gradients arrive as IndexedSlices
        clipped, _ = tf.clip_by_global_norm(grads, clip)
        for v, g in zip(variables, clipped):
            v.assign(v - lr * g)
        mask = tf.cast(tf.not_equal(y, PAD_ID), tf.float32)
        tokens = tf.reduce_sum(mask)
        correct = tf.reduce_sum(mask * tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
        return loss * tokens, tokens, correct, tf.shape(x)[0]

    cache[config] = trainer = _Trainer(model, step, lr, clip)
    return trainer
