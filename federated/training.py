"""The TFF learning process: weighted FedAvg over the next-word model, built from configs.

FedAvg is TFF's ``build_weighted_fed_avg``: client work is local SGD on a device's train split,
aggregation is the example-weighted mean of model deltas, the server applies them with its own
optimizer (SGD with momentum, Adam or Yogi — Reddi et al. 2020). Nothing here loops over rounds.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from federated.model import MaskedAccuracy, MaskedCrossEntropy, NumTokens, build_model
from federated.model_config import ModelConfig
from federated.optimizers import ClippedSGD

SERVER_OPTIMIZERS = ("sgdm", "adam", "yogi")


@dataclass(frozen=True)
class TrainConfig:
    """How rounds are run. Saved beside the checkpoints; a resumed run must agree on it."""

    preset: str = "small"  # model preset (see federated/model_config.py)
    clients_per_round: int = 10  # K devices sampled from the eligible ones each round
    server_optimizer: str = "adam"  # sgdm | adam | yogi
    client_lr: float = 0.5  # local SGD learning rate
    client_clip_norm: float = 1.0  # local gradients are clipped to this global norm (LSTMs explode)
    server_lr: float = 0.03  # server optimizer learning rate (1.0 with sgdm is plain FedAvg)
    server_momentum: float = 0.9  # for sgdm only
    local_epochs: int = 1  # passes over a device's train split per round
    batch_size: int = 16  # examples per local step
    min_examples: int = 5  # a device needs at least this many train sentences to take part
    max_examples_per_client: int = 512  # cap on examples a device trains on per round (Gboard caps too)
    seed: int = 0  # client sampling, availability draws and local shuffling

    def __post_init__(self) -> None:
        if self.server_optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(f"server optimizer must be one of {', '.join(SERVER_OPTIMIZERS)}, got {self.server_optimizer!r}")
        for name in ("clients_per_round", "local_epochs", "batch_size", "min_examples", "max_examples_per_client"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("client_lr", "server_lr", "client_clip_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 <= self.server_momentum < 1:
            raise ValueError(f"server momentum must be in [0, 1), got {self.server_momentum}")

    def as_dict(self) -> dict:
        return asdict(self)


def input_spec(config: ModelConfig):
    spec = tf.TensorSpec([None, config.sequence_length], tf.int32)
    return (spec, spec)


def model_fn_for(config: ModelConfig, seed: int | None = None):
    """A no-arg builder of a fresh TFF model, as TFF's algorithm builders want."""

    def model_fn():
        return tff.learning.models.from_keras_model(
            build_model(config, seed=seed),
            input_spec=input_spec(config),
            loss=MaskedCrossEntropy(),
            metrics=[MaskedAccuracy(), NumTokens()],
        )

    return model_fn


def server_optimizer(train: TrainConfig):
    if train.server_optimizer == "sgdm":
        return tff.learning.optimizers.build_sgdm(learning_rate=train.server_lr, momentum=train.server_momentum or None)
    if train.server_optimizer == "adam":
        return tff.learning.optimizers.build_adam(learning_rate=train.server_lr)
    return tff.learning.optimizers.build_yogi(learning_rate=train.server_lr)


def build_process(model: ModelConfig, train: TrainConfig, *, model_aggregator=None):
    """Weighted FedAvg (weights = number of examples); ``model_aggregator`` None is TFF's mean."""
    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn_for(model, seed=train.seed),
        client_optimizer_fn=ClippedSGD(train.client_lr, train.client_clip_norm),
        server_optimizer_fn=server_optimizer(train),
        model_aggregator=model_aggregator,
    )


def client_dataset(examples: np.ndarray, train: TrainConfig, shuffle_seed: int) -> tf.data.Dataset:
    """A device's examples as TFF client data: ``(inputs, targets)`` batches, shuffled, repeated."""
    x, y = examples[:, :-1], examples[:, 1:]
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if len(examples) > 1:
        ds = ds.shuffle(len(examples), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.repeat(train.local_epochs).batch(train.batch_size)


def train_metrics(output_metrics) -> collections.OrderedDict:
    """The client-side training metrics of one round, as plain floats."""
    m = output_metrics["client_work"]["train"]
    return collections.OrderedDict((k, float(v)) for k, v in m.items())
