"""Public-data pretraining: the model trained centrally on public text, before any federated round.

Gboard starts federated training from a model pretrained on public data and reports +19–23 %
relative next-word accuracy from it (arXiv 2404.04360). ``pretrain`` reads a public corpus
(``federated/public_text.py``: never a device's text), encodes it with the home's tokenizer,
trains the model with Keras (``federated/central.py``) and saves, atomically,

    <home>/server/pretrained/weights.npz    named weights, as ``lm.model.named_weights``
                             model.json     the ModelConfig
                             pretrain.json  what it was made from: tokenizer and corpus sha256,
                                            config, tokens trained, seconds, loss curve, file sha256s

``fedkb train`` starts from these weights when they match the home's tokenizer and the run's
model config (``starting_point``), and records which weights it started from in ``run.json``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common.artifacts import sha256_file
from common.atomic import atomic_write, fsync_dir
from common.errors import ConfigError, FedkbError
from common.layout import Home
from federated import central, public_text
from lm.config import ModelConfig, preset
from lm.examples import encode_examples
from tokenizer.specials import PAD_ID, UNK_ID

if TYPE_CHECKING:
    from tokenizer.vocab import Tokenizer

WEIGHTS, CONFIG, RECORD = "weights.npz", "model.json", "pretrain.json"
FORMAT = 1
RANDOM_INIT = {"from": "random"}  # what run.json records for a run that did not start pretrained


class PretrainError(FedkbError):
    """Pretraining cannot run, or a pretrained model cannot be used; the message says what to do."""


@dataclass(frozen=True)
class PretrainConfig:
    """How the model is pretrained. Training stops at whichever budget is spent first."""

    preset: str = field(default="small", metadata={"help": "model size; `fedkb train` must use the same --preset"})
    tokens: int | None = field(default=1_000_000, metadata={
        "help": "token budget: target pieces trained on, cycling through the corpus if needed (0: no limit)"})
    seconds: float | None = field(default=None, metadata={
        "help": "wall-clock budget of the training loop in seconds (0: no limit)"})
    learning_rate: float = field(default=2e-3, metadata={"help": "Adam learning rate"})
    batch_size: int = field(default=32, metadata={"help": "examples per step"})
    seed: int = field(default=0, metadata={"help": "initial weights and the order of the examples"})

    def __post_init__(self) -> None:
        preset(self.preset)  # raises ValueError for an unknown preset
        if self.tokens is None and self.seconds is None:
            raise ConfigError("pretraining needs a token budget, a wall-clock budget, or both")
        if self.tokens is not None and self.tokens < 1:
            raise ConfigError(f"the token budget must be at least 1, got {self.tokens}")
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(f"the wall-clock budget must be positive, got {self.seconds}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class Pretrained:
    """A saved pretrained model that matches a tokenizer and a model config."""

    path: Path
    weights: dict[str, np.ndarray]
    record: dict

    @property
    def init_record(self) -> dict:
        """What ``run.json`` records of a run that starts from these weights."""
        return {"from": "pretrained", "weights_sha256": self.record["files"][WEIGHTS],
                "corpus_sha256": self.record["corpus"]["sha256"], "tokens": self.record["tokens_trained"]}


def home_tokenizer(home: Home) -> Tokenizer:
    from tokenizer.vocab import Tokenizer, TokenizerError  # sentencepiece: not for `fedkb --help`

    try:
        return Tokenizer.load(home.tokenizer)
    except TokenizerError as exc:
        raise PretrainError(f"{exc}; pretraining encodes the public text with the home's tokenizer") from None


def pretrain(home: Home, corpus_path: str | Path, config: PretrainConfig = PretrainConfig(), *,
             on_batch: Callable[[int, float], None] | None = None) -> dict:
    """Pretrains on the public corpus at ``corpus_path``; saves and returns the record (``pretrain.json``)."""
    tokenizer = home_tokenizer(home)
    model = preset(config.preset, vocab_size=tokenizer.vocab_size)
    text = public_text.read(public_text.resolve(corpus_path))
    examples = encode_examples(tokenizer.encode, text.passages, model.sequence_length)
    if len(examples) == 0:
        raise PretrainError(f"{text.path}: no passage has a word to train on")
    targets = examples[:, 1:]
    available = int((targets != PAD_ID).sum())
    try:
        run = central.fit(model, examples, batch_size=config.batch_size, learning_rate=config.learning_rate,
                          seed=config.seed, token_budget=config.tokens, seconds=config.seconds, on_batch=on_batch)
    except FloatingPointError as exc:
        raise PretrainError(f"pretraining diverged: {exc}") from None
    record = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tokenizer_sha256": tokenizer.sha256,
        "model": asdict(model),
        "config": asdict(config),
        "corpus": {"path": str(text.path), "sha256": text.sha256, "passages": len(text.passages),
                   "examples": len(examples), "tokens": available,
                   "unk_rate": float((targets == UNK_ID).sum() / max(available, 1))},
        "tokens_trained": run.tokens,
        "passes": run.tokens / available,
        "batches": run.batches,
        "seconds": run.seconds,
        "stopped_by": run.stopped_by,
        "loss_curve": [[t, loss] for t, loss in run.loss_curve],
    }
    _save(home, run.weights, model, record)
    return record


def _save(home: Home, weights: dict[str, np.ndarray], model: ModelConfig, record: dict) -> None:
    """Writes the model into a temporary folder, then swaps it for the old one."""
    home.server.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(home)
    buf = io.BytesIO()
    np.savez(buf, **weights)
    files = {WEIGHTS: buf.getvalue(), CONFIG: model.to_json().encode()}
    record = {**record, "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    tmp, old = home.server / f".pretrained.tmp-{os.getpid()}", home.server / f".pretrained.old-{os.getpid()}"
    tmp.mkdir()
    try:
        for name, data in files.items():
            atomic_write(tmp / name, data)
        atomic_write(tmp / RECORD, json.dumps(record, indent=2).encode())
        if home.pretrained.exists():
            os.rename(home.pretrained, old)
        os.rename(tmp, home.pretrained)
        fsync_dir(home.server)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(home: Home) -> None:
    for stale in home.server.glob(".pretrained.*"):
        shutil.rmtree(stale, ignore_errors=True)


def read_record(home: Home) -> dict | None:
    """``pretrain.json`` of the home's pretrained model; None when there is none."""
    path = home.pretrained / RECORD
    if not home.pretrained.exists():
        if any(home.server.glob(".pretrained.old-*")):
            raise PretrainError(f"a pretraining run was interrupted while replacing {home.pretrained}; "
                                "run `fedkb pretrain` again, or pass --no-pretrained")
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") != FORMAT or not isinstance(record.get("files"), dict):
            raise ValueError(f"format {record.get('format')!r}, expected {FORMAT}")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise PretrainError(f"{path}: unreadable ({exc}); run `fedkb pretrain` again") from None
    return record


def mismatch(record: dict, tokenizer: Tokenizer, model: ModelConfig) -> str | None:
    """Why a pretrained model cannot start training with ``tokenizer`` and ``model`` (None if it can)."""
    if record["tokenizer_sha256"] != tokenizer.sha256:
        return "it was trained with another tokenizer (the home's tokenizer was retrained since)"
    if record["model"] != asdict(model):
        diffs = ", ".join(f"{k} {record['model'].get(k)!r} vs {v!r}" for k, v in asdict(model).items()
                          if record["model"].get(k) != v)
        return f"it was pretrained for another model ({diffs}; pretrain with the same --preset)"
    return None


def starting_point(home: Home, tokenizer: Tokenizer, model: ModelConfig) -> Pretrained | None:
    """The pretrained model training should start from: None without one; refused if it does not match."""
    record = read_record(home)
    if record is None:
        return None
    why = mismatch(record, tokenizer, model)
    if why is not None:
        raise PretrainError(f"the pretrained model in {home.pretrained} cannot start this training run: {why}. "
                            "Run `fedkb pretrain` again, or pass --no-pretrained to start from random weights")
    path = home.pretrained / WEIGHTS
    try:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != record["files"][WEIGHTS]:
            raise ValueError(f"sha256 does not match {RECORD}; the file is damaged or was replaced")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            weights = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError) as exc:
        raise PretrainError(f"{path}: {exc}; run `fedkb pretrain` again") from None
    return Pretrained(home.pretrained, weights, record)


def reusable(home: Home, corpus_path: Path, config: PretrainConfig) -> dict | None:
    """The record of a pretrained model made from this corpus for this tokenizer and preset, if there is one."""
    try:
        record = read_record(home)
    except PretrainError:
        return None
    if record is None or record["corpus"]["sha256"] != sha256_file(corpus_path):
        return None
    tokenizer = home_tokenizer(home)
    model = preset(config.preset, vocab_size=tokenizer.vocab_size)
    return None if mismatch(record, tokenizer, model) else record


def describe_init(init: dict) -> str:
    if init.get("from") != "pretrained":
        return "random weights"
    return f"pretrained weights {init.get('weights_sha256', '?')[:12]} ({init.get('tokens', 0):,} tokens)"


def tff_model_weights(weights: dict[str, np.ndarray], model: ModelConfig):
    """Named weights as ``tff.learning.models.ModelWeights``, in the order of the TFF model's variables.

    TFF's Keras model lists the Keras model's ``trainable_variables`` and ``non_trainable_variables``;
    a freshly built model has them in the order the learning process was built with.
    """
    import tensorflow_federated as tff

    from lm.model import assign_named_weights, build_model

    keras_model = build_model(model)
    assign_named_weights(keras_model, weights, source=WEIGHTS)
    return tff.learning.models.ModelWeights(
        trainable=[v.numpy() for v in keras_model.trainable_variables],
        non_trainable=[v.numpy() for v in keras_model.non_trainable_variables],
    )
