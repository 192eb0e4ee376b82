"""Federated training rounds: sample eligible devices, run FedAvg, checkpoint, release, publish.

Each round: each eligible device (idle, charging, unmetered, enough train sentences) takes
part with probability q = K / eligible (Poisson sampling, ``federated/sampling.py``), drawn
from a secret key kept in the server's private state (or from ``--seed``, publicly), so a
resumed run picks the same clients without the draw being published. Each selected device
turns its own train split into examples and TFF runs one round. The round is entered in the
privacy ledger (``federated/ledger.py``) before anything of it is released. The learning state
is saved with ``tff.program.FileProgramStateManager``, the metrics that may be released go to
CSV and TensorBoard through ``tff.program`` release managers, and every ``publish_every``
rounds the global model becomes a published version.

What a run needs and the run record a resumed checkpoint is checked against are in
``federated/run_setup.py``; the session's privacy accounting is mixed in from
``federated/session_privacy.py``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tensorflow_federated as tff

from common.atomic import atomic_write
from common.layout import Home
from federated import checkpoints, ledger, ngrams, pretrain, registry, sampling, training
from federated.faults import crash_point
from federated.privacy import PrivacyConfig
from federated.run_setup import TrainError, check_resumable, load_tokenizer, make_run_record, prepare, read_run_record
from federated.secagg import SecAggError
from federated.session_privacy import PrivacyAccounting
from keyboard import client_work
from lm.config import ModelConfig
from lm.model import build_model, named_weights
from tokenizer.vocab import Tokenizer

MAX_DRAWS = 48  # availability draws a round waits through before it fails for want of devices


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


@functools.lru_cache(maxsize=4)
def _built_rounds(model: ModelConfig, train: training.TrainConfig, privacy: PrivacyConfig):
    """``training.build_rounds``, built once per configuration in a process (building takes 4-7 s).

    The rounds hold no state of a run (that is the learning state a session keeps), so a second
    session of the same configuration, as after a resume or a ``--fresh`` restart, can share them.
    """
    return training.build_rounds(model, train, privacy=privacy)


def client_examples(home: Home, device_id: str, tokenizer: Tokenizer, model: ModelConfig,
                    train: training.TrainConfig, round_num: int) -> np.ndarray:
    """The simulation's device adapter: a device's round examples, as its agent would compute them."""
    from keyboard.store import Device

    with Device(home.device(device_id)) as device:
        sentences = device.splits().train
    return client_work.round_examples(home.device(device_id), sentences, tokenizer.encode,
                                      tokenizer_sha256=tokenizer.sha256, sequence_length=model.sequence_length,
                                      settings=training.local_training(train), round_num=round_num)


class Session(PrivacyAccounting):
    """A resumable training run: the learning process is built once, rounds run one at a time.

    ``fedkb train`` runs rounds back to back; ``fedkb serve`` runs one whenever enough devices
    are eligible. Either way each round is checkpointed, so a new session resumes where the last
    one stopped.
    """

    def __init__(self, home: Home, train: training.TrainConfig, *, privacy: PrivacyConfig | None = None,
                 publish_every: int = 5, fresh: bool = False, pretrained: bool = True, live: bool = False):
        if publish_every < 1:
            raise TrainError("--publish-every must be at least 1")
        self.home, self.train, self.publish_every, self.live = home, train, publish_every, live
        self.privacy = privacy or PrivacyConfig()
        if live and self.privacy.ftrl:
            raise TrainError("--dp-mechanism ftrl runs in the simulation only (`fedkb train`): live rounds "
                             "do not enforce --min-separation nor run DP")
        if live:  # the coordinator of live rounds knows devices only from their check-ins
            self.population, self._availability = [], None
            self.tokenizer, self.model_config = load_tokenizer(home, train)
        else:
            from federated.population import availability_arrays

            self.population, self.tokenizer, self.model_config = prepare(home, train)
            self._availability = availability_arrays(self.population)  # once per run, not per round
        # Public-text pretraining (``fedkb pretrain``) gives the round-0 weights, unless --no-pretrained.
        start = pretrain.starting_point(home, self.tokenizer, self.model_config) if pretrained else None
        record = make_run_record(self.model_config, train, self.privacy, self.tokenizer,
                             init=start.init_record if start else None)
        check_resumable(home, record, fresh=fresh)
        previous = None if fresh else read_run_record(home)
        legacy = previous is not None and previous.get("checkpoints") != "sealed"  # written before seals existed
        # Names this run in its versions, so a round re-run after a crash does not publish twice.
        self.run_id = (previous or {}).get("run_id") or uuid.uuid4().hex
        record["run_id"] = self.run_id
        self._states = tff.program.FileProgramStateManager(str(home.state), keep_total=3, keep_first=False)
        if fresh:
            _sync(self._states.remove_all())
            home.metrics_csv.unlink(missing_ok=True)
        home.state.mkdir(parents=True, exist_ok=True)
        try:
            self.sampling = sampling.load_or_create(home.state, train.seed if train.public_sampling else None,
                                                    fresh=fresh)
        except sampling.SamplingError as exc:
            raise TrainError(str(exc)) from None
        atomic_write(home.run_json, json.dumps(record, indent=2, sort_keys=True).encode())
        self.process = _built_rounds(self.model_config, train, self.privacy)
        self.state = self.process.initialize()
        if start is not None:
            self.state = self.process.set_model_weights(
                self.state, pretrain.tff_model_weights(start.weights, self.model_config))
        loaded, self.done = _sync(self._load_latest(legacy))
        if loaded is not None:
            self.state = loaded
        self.participation = None  # DP-FTRL: who took part when, for --min-separation
        if self.privacy.ftrl:
            from federated.ftrl import Participation

            self.participation = Participation.load(home.state, self.privacy.min_separation, done=self.done)
        for stale in [*home.models.glob(".tmp-*"), *home.state.glob("program_state_*_temp*")]:
            shutil.rmtree(stale, ignore_errors=True)  # a version or a TFF checkpoint whose writing a crash interrupted
        self._csv = tff.program.CSVFileReleaseManager(
            file_path=str(home.metrics_csv), key_fieldname="round", save_mode=tff.program.CSVSaveMode.APPEND
        )
        self._tensorboard = tff.program.TensorBoardReleaseManager(summary_dir=str(home.tensorboard))
        self._keras_model = build_model(self.model_config)

    def _checkpoint(self, version: int) -> Path:
        return self.home.state / f"program_state_{version}"

    async def _load_latest(self, legacy: bool):
        """The newest sealed checkpoint (state, round); half-written ones are removed, damaged ones refused."""
        for version in sorted(await self._states.get_versions() or [], reverse=True):
            path = self._checkpoint(version)
            if not checkpoints.is_sealed(path) and not legacy:
                checkpoints.discard(path)  # the trainer died while writing it: resume from the one before
                continue
            try:
                if checkpoints.is_sealed(path):
                    checkpoints.verify(path)
                state = await self._states.load(version, self.state)
            except checkpoints.CheckpointError as exc:
                raise TrainError(f"{exc}: this checkpoint is damaged; "
                                 "restore it, or pass --fresh to start over") from None
            except Exception as exc:  # TensorFlow raises many types for a damaged SavedModel
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise TrainError(f"{path}: cannot be loaded ({first}); pass --fresh to start over") from None
            if legacy:
                checkpoints.seal(path)
            return state, version
        return None, 0

    def select(self, round_num: int, *, utc_hour: int | None = None, draw: int = 0):
        """The clients round ``round_num`` would train on (at simulated hour ``round_num mod 24`` by default)."""
        from federated.population import poisson_select

        population, arrays = self.population, self._availability
        if self.participation is not None:  # DP-FTRL: devices inside their separation are not offered
            population, arrays = self.participation.offered(population, arrays, round_num)
        selection = poisson_select(self.home, population, round_num, self.train.clients_per_round,
                                   key=self.sampling, seed=self.train.seed, min_examples=self.train.min_examples,
                                   utc_hour=utc_hour, draw=draw, arrays=arrays)
        if self.participation is not None:
            selection = replace(selection, population=len(self.population))
        return selection

    def _select_waiting(self, round_num: int):
        """The round's clients; if too few devices are eligible, the round waits for the next check-ins.

        A small population can have no eligible device at a simulated hour. As a real coordinator
        waits for devices to check in again, the round takes further availability draws an hour
        later each (deterministic for seed, round and draw, so a resumed run picks the same
        clients), up to ``MAX_DRAWS``; only then does it fail.
        """
        needed = 2 if self.privacy.secure_agg else 1
        # Secure aggregation sums at most max_clients updates without wrapping; a Poisson draw
        # above it (probability < 1e-7) is taken again, as an empty one is.
        most = training.secagg_config(self.train).max_clients if self.privacy.secure_agg else None
        selection = self.select(round_num)
        for draw in range(1, MAX_DRAWS):
            if len(selection.device_ids) >= needed and (most is None or len(selection.device_ids) <= most):
                break
            # the simulated clock moves on an hour per draw: devices check in again later
            selection = self.select(round_num, utc_hour=(round_num + draw) % 24, draw=draw)
        return selection

    def run_round(self, *, total_rounds: int | None = None, selection=None, force_publish: bool = False) -> RoundResult:
        """Runs, records and checkpoints round ``done + 1``; publishes every ``publish_every`` rounds."""
        return _sync(self._run_round(total_rounds, selection, force_publish))

    async def _run_round(self, total_rounds, selection, force_publish) -> RoundResult:
        round_num = self.done + 1
        t0 = time.perf_counter()
        selection = selection or self._select_waiting(round_num)
        if self.privacy.secure_agg and len(selection.device_ids) == 1:
            raise TrainError(f"round {round_num}: only one device is eligible; secure aggregation needs at least "
                             "two, or the sum would be that device's update")
        if not selection.device_ids:
            separation = (f"; --min-separation {self.privacy.min_separation} keeps devices that took part in "
                          f"the last {self.privacy.min_separation - 1} rounds out" if self.participation else "")
            raise TrainError(
                f"round {round_num}: none of {selection.population} devices is eligible "
                f"({selection.available} idle, charging and unmetered; --min-examples {self.train.min_examples}"
                f"{separation})"
            )
        data = [
            training.client_dataset(
                client_examples(self.home, d, self.tokenizer, self.model_config, self.train, round_num),
                self.train, shuffle_seed=client_work.shuffle_seed(training.local_training(self.train), round_num),
            )
            for d in selection.device_ids
        ]
        try:
            output = self.process.next(self.state, data, names=selection.device_ids)
        except SecAggError as exc:
            raise TrainError(f"round {round_num}: {exc}; nothing of this round was saved") from None
        seconds = time.perf_counter() - t0
        return await self._record(round_num, total_rounds, output.state, training.train_metrics(output.metrics),
                                  selection, seconds, force_publish)

    def record_round(self, state, metrics: dict, selection, seconds: float, *,
                     total_rounds: int | None = None, force_publish: bool = False) -> RoundResult:
        """Records round ``done + 1``, whose new learning ``state`` was computed elsewhere (a live round)."""
        return _sync(self._record(self.done + 1, total_rounds, state, dict(metrics), selection, seconds, force_publish))

    async def _record(self, round_num, total_rounds, state, metrics, selection, seconds, force_publish) -> RoundResult:
        """Metrics, version and checkpoint of a round whose new state is ``state``."""
        if not np.isfinite(metrics["loss"]):
            raise TrainError(
                f"round {round_num}: the training loss is {metrics['loss']}: the model diverged. Lower "
                f"--client-lr ({self.train.client_lr}) or --server-lr ({self.train.server_lr}); "
                f"nothing of this round was saved, round {self.done} is the last checkpoint"
            )
        metrics.update(clients=len(selection.device_ids), available_devices=selection.available,
                       population=selection.population, round_seconds=seconds)
        eligible = getattr(selection, "eligible", None)
        if eligible is not None:
            metrics.update(eligible_devices=eligible)
        released = ledger.releasable_metrics(metrics, dp_noise=self.privacy.dp_noise)
        # The ledger first: from here on the round counts as released, once per time it runs.
        ledger.append(self.home.server, self._ledger_entry(round_num, selection, metrics, released))
        # Metrics and the version go out before the state is saved: a crash in between re-runs
        # this round identically (same clients, same key) and overwrites the metrics row.
        await self._csv.release(dict(released), key=round_num)
        await self._tensorboard.release(dict(released), key=round_num)
        if not self.live:  # a live device records its rounds itself
            from keyboard.store import Device

            for device_id in selection.device_ids:
                with Device(self.home.device(device_id)) as device:
                    device.set(last_round=round_num)
        published = None
        if force_publish or round_num % self.publish_every == 0 or round_num == total_rounds:
            published = self.publish(state, round_num, released).name
        if self.participation is not None:  # before the checkpoint: a re-run after a crash drops it again
            self.participation.record(round_num, selection.device_ids)
        await self._states.save(state, round_num)
        crash_point(round_num, "checkpoint")
        checkpoints.seal(self._checkpoint(round_num))
        self.state, self.done = state, round_num
        return RoundResult(round_num, total_rounds or round_num, dict(metrics), selection.device_ids, seconds,
                           published)

    def global_weights(self, state=None) -> dict[str, np.ndarray]:
        """The global model of ``state`` (default: the current one) as named float32 arrays."""
        self.process.get_model_weights(self.state if state is None else state).assign_weights_to(self._keras_model)
        return named_weights(self._keras_model)

    def publish(self, state, round_num: int, metrics: dict) -> registry.Version:
        newest = registry.newest(self.home.models)
        if newest is not None and newest.manifest.get("run_id") == self.run_id and newest.round == round_num:
            return newest  # published before a crash stopped this round from being checkpointed
        return registry.publish(
            self.home.models, weights=self.global_weights(state), config=self.model_config,
            tokenizer_proto=self.tokenizer.model_proto, round_num=round_num, metrics=metrics,
            extra={"run_id": self.run_id, "train_config": self.train.as_dict(),
                   "privacy_config": self.privacy.as_dict(), "privacy": self.privacy_spent(round_num)},
            ngrams=ngrams.current_table(self.home),  # the private n-grams gathered so far, if any
        )


def _sync(coro):
    """Runs one ``tff.program`` coroutine to completion from synchronous code."""
    return asyncio.run(coro)


def run(
    home: Home,
    train: training.TrainConfig,
    *,
    rounds: int,
    privacy: PrivacyConfig | None = None,
    publish_every: int = 5,
    fresh: bool = False,
    pretrained: bool = True,
    on_round: Callable[[RoundResult], None] | None = None,
) -> TrainSummary:
    """Runs (or resumes) training until ``rounds`` rounds are complete. Needs a TFF context."""
    if rounds < 1:
        raise TrainError("--rounds must be at least 1")
    session = Session(home, train, privacy=privacy, publish_every=publish_every, fresh=fresh, pretrained=pretrained)
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
