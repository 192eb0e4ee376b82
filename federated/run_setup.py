"""Setting up a training run: what it needs (a population, the tokenizer) and the run record
(``run.json``) that a resumed checkpoint must agree with, and ``TrainError``, which says what to run first.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from common.errors import FedkbError
from common.layout import Home
from federated import pretrain
from federated.configs import TrainConfig
from federated.privacy import PrivacyConfig
from lm.config import ModelConfig, preset
from tokenizer.vocab import Tokenizer, TokenizerError


class TrainError(FedkbError):
    """Training cannot start or go on; the message says what to run first."""


def make_run_record(model: ModelConfig, train: TrainConfig, privacy: PrivacyConfig, tokenizer: Tokenizer,
                init: dict | None = None) -> dict:
    """What a checkpoint must agree with to be resumed (everything but the round count)."""
    return {"model": asdict(model), "train": train.as_dict(), "privacy": privacy.as_dict(),
            "tokenizer_sha256": tokenizer.sha256, "init": init or pretrain.RANDOM_INIT, "checkpoints": "sealed"}


def read_run_record(home: Home) -> dict | None:
    """The settings of the run whose checkpoints are in ``home`` (None before the first run)."""
    path = home.run_json
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainError(f"{path}: unreadable ({exc}); pass --fresh to start over") from None


def check_resumable(home: Home, record: dict, *, fresh: bool) -> None:
    """Refuses to resume from a checkpoint made with other settings, saying what differs."""
    path = home.run_json
    if fresh or not path.is_file():
        return
    saved = read_run_record(home)
    saved.setdefault("privacy", PrivacyConfig().as_dict())  # runs from before privacy settings existed
    diffs = []
    for section in ("model", "train", "privacy"):
        for key in sorted(set(saved.get(section, {})) | set(record[section])):
            a, b = saved.get(section, {}).get(key), record[section].get(key)
            if a != b:
                diffs.append(f"{key}: checkpoint {a!r}, now {b!r}")
    if saved.get("tokenizer_sha256") != record["tokenizer_sha256"]:
        diffs.append(f"the tokenizer {home.tokenizer_model} was retrained since the checkpoint")
    started = saved.get("init", pretrain.RANDOM_INIT)  # runs from before pretraining started from random weights
    if started != record.get("init", pretrain.RANDOM_INIT):
        diffs.append(f"the checkpoint started from {pretrain.describe_init(started)}, "
                     f"now {pretrain.describe_init(record['init'])} (--no-pretrained starts from random weights)")
    if diffs:
        raise TrainError(
            f"the checkpoint in {home.state} was made with other settings ({'; '.join(diffs)}). "
            "Run with the same settings to resume, pass --fresh to start over, or use another --home."
        )


def prepare(home: Home, train: TrainConfig) -> tuple[list, Tokenizer, ModelConfig]:
    """Checks that a population and a tokenizer exist; returns them and the model config."""
    from federated.population import members

    population = members(home)
    if not population:
        raise TrainError(f"no devices in {home.devices}; run `fedkb population seed --corpus shakespeare` first")
    return (population, *load_tokenizer(home, train))


def load_tokenizer(home: Home, train: TrainConfig) -> tuple[Tokenizer, ModelConfig]:
    """The home's tokenizer and the model config it implies."""
    try:
        tokenizer = Tokenizer.load(home.tokenizer)
    except TokenizerError as exc:
        raise TrainError(str(exc)) from None
    return tokenizer, preset(train.preset, vocab_size=tokenizer.vocab_size)
