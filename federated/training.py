"""The TFF learning process: weighted FedAvg over the next-word model, built from configs.

FedAvg is TFF's ``build_weighted_fed_avg``: client work is local SGD on a device's train split,
aggregation is the example-weighted mean of model deltas, the server applies them with its own
optimizer (SGD with momentum, Adam or Yogi — Reddi et al. 2020). Nothing here loops over rounds.
"""

from __future__ import annotations

import collections
import collections.abc
import math

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from federated.configs import SERVER_OPTIMIZERS, TrainConfig  # noqa: F401  (re-exported: the builders take it)
from federated.optimizers import ClippedSGD
from federated.privacy import PrivacyConfig
from federated.privacy import model_aggregator as privacy_aggregator
from lm.config import ModelConfig
from lm.model import MaskedAccuracy, MaskedCrossEntropy, NumTokens, build_model


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


def build_process(model: ModelConfig, train: TrainConfig, *, privacy: PrivacyConfig | None = None,
                  model_aggregator=None, model_fn=None):
    """FedAvg whose aggregator follows ``privacy``; ``model_aggregator`` overrides it.

    ``model_fn`` replaces ``model_fn_for(model, seed=train.seed)`` (benchmarks compare model
    implementations with it).

    Without DP, updates are weighted by examples (TFF's weighted mean). With DP every device
    counts once: the DP aggregator bounds each device's influence, which example weights would undo.
    """
    privacy = privacy or PrivacyConfig()
    model_fn = model_fn or model_fn_for(model, seed=train.seed)
    if privacy.ftrl:
        from federated.ftrl import check_server_optimizer

        check_server_optimizer(train.server_optimizer)
    if model_aggregator is None:
        specs = None
        if privacy.ftrl:
            from federated.ftrl import record_specs

            specs = record_specs(model_fn)
        model_aggregator = aggregator_factory(train, privacy, record_specs=specs)
    weighting = tff.learning.ClientWeighting.UNIFORM if privacy.dp else tff.learning.ClientWeighting.NUM_EXAMPLES
    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=ClippedSGD(train.client_lr, train.client_clip_norm),
        server_optimizer_fn=server_optimizer(train),
        client_weighting=weighting,
        model_aggregator=model_aggregator,
        # A Python-style loop over the dataset iterator instead of ``dataset.reduce``: in the C++
        # runtime it trains the same batches about 1.6x faster (bench/train_throughput.py).
        loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR,
    )


def aggregator_factory(train: TrainConfig, privacy: PrivacyConfig, *, record_specs=None):
    """The weighted aggregation factory ``build_process`` gives FedAvg (TFF's weighted mean when None).

    ``record_specs`` (the trainable weights' specs) is needed by DP-FTRL's tree aggregator only.
    """
    secure = secagg_config(train) if privacy.secure_agg else None
    return (privacy_aggregator(privacy, train.clients_per_round, secure=secure, record_specs=record_specs)
            or tff.aggregators.MeanFactory())


class ServerParts:
    """The server's half of a FedAvg round, for a live coordinator that receives the client updates.

    ``build_weighted_fed_avg`` composes distributor, client work, aggregator and finalizer into one
    process; here the aggregator and the finalizer (the server optimizer) are built from the same
    factories and types, so they step the process's own state: a live round of uploaded updates
    leaves the state a simulated round of the same updates would.
    """

    def __init__(self, process, train: TrainConfig, privacy: PrivacyConfig):
        weights_type = process.get_model_weights.type_signature.result
        self.aggregator = aggregator_factory(train, privacy).create(
            weights_type.trainable, tff.TensorType(np.float32))
        self.finalizer = tff.learning.templates.build_apply_optimizer_finalizer(server_optimizer(train), weights_type)

    def apply(self, state, updates: list[list[np.ndarray]], weights: list[float]):
        """The state after aggregating ``updates`` (trainable deltas in model order) and the server update."""
        aggregated = self.aggregator.next(state.aggregator, updates, [np.float32(w) for w in weights])
        finalized = self.finalizer.next(state.finalizer, state.global_model_weights, aggregated.result)
        new_state = tff.learning.templates.LearningAlgorithmState(
            global_model_weights=finalized.result, distributor=state.distributor, client_work=state.client_work,
            aggregator=aggregated.state, finalizer=finalized.state)
        return new_state, aggregated.measurements

    def apply_mean(self, state, mean: list[np.ndarray]):
        """The state after the server update with an aggregate formed outside TFF (live secure aggregation).

        The secure aggregator's state is constant (fixed clip, stateless secure sums), so only the
        finalizer steps; the mean is what ``MeanFactory`` over the secure sums returns.
        """
        finalized = self.finalizer.next(state.finalizer, state.global_model_weights,
                                        [np.asarray(m, np.float32) for m in mean])
        return tff.learning.templates.LearningAlgorithmState(
            global_model_weights=finalized.result, distributor=state.distributor, client_work=state.client_work,
            aggregator=state.aggregator, finalizer=finalized.state)


def secagg_config(train: TrainConfig):
    """Secure aggregation sized for these rounds: the sum of K clients' quantized updates never wraps."""
    from federated.secagg_factory import SecAggConfig

    steps = math.ceil(train.max_examples_per_client / train.batch_size) * train.local_epochs
    return SecAggConfig(
        # ClippedSGD already bounds a device's model delta by lr x clip x steps, so this L2 clip
        # never changes an update; it fixes the quantization range.
        clip=train.client_lr * train.client_clip_norm * steps,
        # A Poisson draw has K participants only on average: 4K (at least 20) is exceeded with
        # probability below 1e-7 for any K, at the cost of about 2 bits of quantization precision.
        max_clients=max(20, 4 * train.clients_per_round),
        max_weight=float(train.max_examples_per_client * train.local_epochs),  # TFF counts examples over all epochs
    )


class Rounds:
    """A learning process's rounds; ``SecureRounds`` has the same interface and also needs the names."""

    def __init__(self, process):
        self.process = process

    def initialize(self):
        return self.process.initialize()

    def get_model_weights(self, state):
        return self.process.get_model_weights(state)

    def set_model_weights(self, state, weights):
        return self.process.set_model_weights(state, weights)

    def next(self, state, client_data, *, names=None):
        del names  # the plain sum does not care who the clients are
        return self.process.next(state, client_data)


def build_rounds(model: ModelConfig, train: TrainConfig, *, privacy: PrivacyConfig | None = None):
    """What ``fedkb train`` runs: FedAvg, with the Bonawitz et al. protocol around it under ``--secure-agg``."""
    privacy = privacy or PrivacyConfig()
    process = build_process(model, train, privacy=privacy)
    if not privacy.secure_agg:
        return Rounds(process)
    from federated.secagg_round import SecureRounds

    return SecureRounds(process, secagg_config(train))


def local_training(train: TrainConfig, privacy: PrivacyConfig | None = None):
    """The client settings of these rounds, as a live round's task carries them to a device."""
    from common.messages import LocalTraining

    return LocalTraining(client_lr=train.client_lr, client_clip_norm=train.client_clip_norm,
                         local_epochs=train.local_epochs, batch_size=train.batch_size,
                         max_examples_per_client=train.max_examples_per_client, seed=train.seed,
                         weighting="uniform" if (privacy and privacy.dp) else "examples")


def client_dataset(examples: np.ndarray, train: TrainConfig, shuffle_seed: int) -> tf.data.Dataset:
    """A device's examples as TFF client data: the dataset the device agent trains on itself."""
    from keyboard import client_work

    return client_work.client_dataset(examples, local_training(train), shuffle_seed)


def train_metrics(output_metrics) -> collections.OrderedDict:
    """The round's training metrics as plain floats, with the aggregator's (e.g. the DP clip) after them."""
    m = output_metrics["client_work"]["train"]
    out = collections.OrderedDict((k, float(v)) for k, v in m.items())
    out.update(_scalars(output_metrics.get("aggregator", {}), "aggregator"))
    return out


def _scalars(tree, prefix: str) -> dict[str, float]:
    """Numeric leaves of a nested metrics structure, keyed by their path."""
    if isinstance(tree, collections.abc.Mapping):
        items = tree.items()
    elif hasattr(tree, "_asdict"):
        items = tree._asdict().items()
    else:
        value = np.asarray(tree)
        return {prefix: float(value)} if value.shape == () and np.issubdtype(value.dtype, np.number) else {}
    out: dict[str, float] = {}
    for key, value in items:
        out.update(_scalars(value, f"{prefix}/{key}"))
    return out
