"""Federated training rounds: sample eligible devices, run FedAvg, checkpoint, release, publish.

Each round: the eligible devices (idle, charging, unmetered, enough train sentences) are
sampled (seeded by the run's seed and the round number, so a resumed run picks the same
clients), each selected device turns its own train split into examples, TFF runs one round,
the learning state is saved with ``tff.program.FileProgramStateManager``, metrics go to CSV
and TensorBoard through ``tff.program`` release managers, and every ``publish_every`` rounds
the global model becomes a published version.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow_federated as tff

from fedkb.home import Home
from federated import registry, training
from federated.examples import encode_examples
from federated.model import build_model, named_weights
from federated.model_config import ModelConfig, preset
from federated.population import members, select_clients
from keyboard.store import Device
from tokenizer.vocab import Tokenizer, TokenizerError

RUN_FILE = "run.json"


class TrainError(Exception):
    """Training cannot start or go on; the message says what to run first."""


@dataclass(frozen=True)
class RoundResult:
    round_num: int
    total_rounds: int
    metrics: dict[str, float]
    clients: list[str]
    seconds: float
    published: str | None = None


@dataclass
class TrainSummary:
    start_round: int
    end_round: int
    rounds: list[RoundResult] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    model_config: ModelConfig | None = None


def _run_record(model: ModelConfig, train: training.TrainConfig, tokenizer: Tokenizer) -> dict:
    """What a checkpoint must agree with to be resumed (everything but the round count)."""
    return {"model": asdict(model), "train": train.as_dict(), "tokenizer_sha256": tokenizer.sha256}


def check_resumable(home: Home, record: dict, *, fresh: bool) -> None:
    """Refuses to resume from a checkpoint made with other settings, saying what differs."""
    path = home.state / RUN_FILE
    if fresh or not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainError(f"{path}: unreadable ({exc}); pass --fresh to start over") from None
    diffs = []
    for section in ("model", "train"):
        for key in sorted(set(saved.get(section, {})) | set(record[section])):
            a, b = saved.get(section, {}).get(key), record[section].get(key)
            if a != b:
                diffs.append(f"{key}: checkpoint {a!r}, now {b!r}")
    if saved.get("tokenizer_sha256") != record["tokenizer_sha256"]:
        diffs.append("the tokenizer was retrained since the checkpoint")
    if diffs:
        raise TrainError(
            f"the checkpoint in {home.state} was made with other settings ({'; '.join(diffs)}). "
            "Run with the same settings to resume, pass --fresh to start over, or use another --home."
        )


def prepare(home: Home, train: training.TrainConfig) -> tuple[list, Tokenizer, ModelConfig]:
    """Checks that a population and a tokenizer exist; returns them and the model config."""
    population = members(home)
    if not population:
        raise TrainError(f"no devices in {home.devices}; run `fedkb population seed --corpus shakespeare` first")
    try:
        tokenizer = Tokenizer.load(home.tokenizer)
    except TokenizerError as exc:
        raise TrainError(str(exc)) from None
    return population, tokenizer, preset(train.preset, vocab_size=tokenizer.vocab_size)


def client_examples(home: Home, device_id: str, tokenizer: Tokenizer, model: ModelConfig,
                    train: training.TrainConfig, round_num: int) -> np.ndarray:
    """On the device: its train split as examples, at most ``max_examples_per_client`` of them."""
    with Device(home.device(device_id)) as device:
        sentences = device.splits().train
    examples = encode_examples(tokenizer.encode, sentences, model.sequence_length)
    if len(examples) > train.max_examples_per_client:
        rng = np.random.default_rng([train.seed, round_num, len(examples)])
        examples = examples[np.sort(rng.choice(len(examples), train.max_examples_per_client, replace=False))]
    return examples


class Session:
    """A resumable training run: the learning process is built once, rounds run one at a time.

    ``fedkb train`` runs rounds back to back; ``fedkb serve`` runs one whenever enough devices
    are eligible. Either way each round is checkpointed, so a new session resumes where the last
    one stopped.
    """

    def __init__(self, home: Home, train: training.TrainConfig, *, publish_every: int = 5, fresh: bool = False):
        if publish_every < 1:
            raise TrainError("--publish-every must be at least 1")
        self.home, self.train, self.publish_every = home, train, publish_every
        self.population, self.tokenizer, self.model_config = prepare(home, train)
        record = _run_record(self.model_config, train, self.tokenizer)
        check_resumable(home, record, fresh=fresh)
        self._states = tff.program.FileProgramStateManager(str(home.state), keep_total=3, keep_first=False)
        if fresh:
            _sync(self._states.remove_all())
            home.metrics_csv.unlink(missing_ok=True)
        home.state.mkdir(parents=True, exist_ok=True)
        (home.state / RUN_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        self.process = training.build_process(self.model_config, train)
        self.state = self.process.initialize()
        loaded, self.done = _sync(self._states.load_latest(self.state))
        if loaded is not None:
            self.state = loaded
        self._csv = tff.program.CSVFileReleaseManager(
            file_path=str(home.metrics_csv), key_fieldname="round", save_mode=tff.program.CSVSaveMode.APPEND
        )
        self._tensorboard = tff.program.TensorBoardReleaseManager(summary_dir=str(home.tensorboard))
        self._keras_model = build_model(self.model_config)

    def select(self, round_num: int, *, utc_hour: int | None = None, draw: int = 0):
        """The clients round ``round_num`` would train on (at simulated hour ``round_num mod 24`` by default)."""
        return select_clients(self.home, self.population, round_num, self.train.clients_per_round,
                              seed=self.train.seed, min_examples=self.train.min_examples,
                              utc_hour=utc_hour, draw=draw)

    def run_round(self, *, total_rounds: int | None = None, selection=None, force_publish: bool = False) -> RoundResult:
        """Runs, records and checkpoints round ``done + 1``; publishes every ``publish_every`` rounds."""
        return _sync(self._run_round(total_rounds, selection, force_publish))

    async def _run_round(self, total_rounds, selection, force_publish) -> RoundResult:
        round_num = self.done + 1
        t0 = time.perf_counter()
        selection = selection or self.select(round_num)
        if not selection.device_ids:
            raise TrainError(
                f"round {round_num}: none of {selection.population} devices is eligible "
                f"({selection.available} idle, charging and unmetered; --min-examples {self.train.min_examples})"
            )
        data = [
            training.client_dataset(
                client_examples(self.home, d, self.tokenizer, self.model_config, self.train, round_num),
                self.train, shuffle_seed=self.train.seed + round_num,
            )
            for d in selection.device_ids
        ]
        output = self.process.next(self.state, data)
        seconds = time.perf_counter() - t0
        metrics = training.train_metrics(output.metrics)
        if not np.isfinite(metrics["loss"]):
            raise TrainError(
                f"round {round_num}: the training loss is {metrics['loss']}: the model diverged. Lower "
                f"--client-lr ({self.train.client_lr}) or --server-lr ({self.train.server_lr}); "
                f"nothing of this round was saved, round {self.done} is the last checkpoint"
            )
        metrics.update(clients=len(selection.device_ids), available_devices=selection.available,
                       population=selection.population, round_seconds=seconds)
        # Metrics and the version go out before the state is saved: a crash in between re-runs
        # this round identically (same clients, same seed) and overwrites the metrics row.
        await self._csv.release(dict(metrics), key=round_num)
        await self._tensorboard.release(dict(metrics), key=round_num)
        for device_id in selection.device_ids:
            with Device(self.home.device(device_id)) as device:
                device.set(last_round=round_num)
        published = None
        if force_publish or round_num % self.publish_every == 0 or round_num == total_rounds:
            published = self.publish(output.state, round_num, metrics).name
        await self._states.save(output.state, round_num)
        self.state, self.done = output.state, round_num
        return RoundResult(round_num, total_rounds or round_num, dict(metrics), selection.device_ids, seconds, published)

    def publish(self, state, round_num: int, metrics: dict) -> registry.Version:
        self.process.get_model_weights(state).assign_weights_to(self._keras_model)
        return registry.publish(
            self.home.models, weights=named_weights(self._keras_model), config=self.model_config,
            tokenizer_proto=self.tokenizer.model_proto, round_num=round_num, metrics=metrics,
            extra={"train_config": self.train.as_dict()},
        )


def _sync(coro):
    """Runs one ``tff.program`` coroutine to completion from synchronous code."""
    return asyncio.run(coro)


def run(
    home: Home,
    train: training.TrainConfig,
    *,
    rounds: int,
    publish_every: int = 5,
    fresh: bool = False,
    on_round: Callable[[RoundResult], None] | None = None,
) -> TrainSummary:
    """Runs (or resumes) training until ``rounds`` rounds are complete. Needs a TFF context."""
    if rounds < 1:
        raise TrainError("--rounds must be at least 1")
    session = Session(home, train, publish_every=publish_every, fresh=fresh)
    summary = TrainSummary(start_round=session.done, end_round=max(session.done, rounds),
                           model_config=session.model_config)
    while session.done < rounds:
        result = session.run_round(total_rounds=rounds)
        summary.rounds.append(result)
        if result.published:
            summary.published.append(result.published)
        if on_round:
            on_round(result)
    return summary
