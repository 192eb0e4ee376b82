"""On-device personalization: fine-tune the installed global model on this device's own sentences.

Wang et al. 2019 (arXiv 1910.10252): a global model fine-tuned for a few epochs on one person's
text predicts that person's words better, and a device should use the personal model only where it
beats the global one on the device's own held-out split. Everything here stays on the device: the
train split is read from ``<device>/log.sqlite`` and only the before/after recall of the eval
record is fit to leave it (``personalization_delta`` averages such records).

``<device>/personal/`` holds the personal model in the published-version format (``weights.npz``,
``model.json``, ``spm.model``, ``manifest.json`` with sha256), its manifest naming the global
version it was fine-tuned from; ``<device>/eval/personalization.json`` holds the comparison.
TensorFlow is imported only inside ``personalize`` (run it in a background process with
``python -m keyboard.personalize --device-dir DIR``); ``active_model_dir``, which the keyboard
calls, never touches it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common import artifacts, version_dir
from common.artifacts import CONFIG, MANIFEST, TOKENIZER, WEIGHTS
from common.atomic import atomic_write
from common.config_options import add_config_arguments
from common.errors import ConfigError, FedkbError
from common.layout import PERSONAL_DIR, DeviceLayout
from keyboard.controls import learnable_splits
from keyboard.install import Installed, installed
from keyboard.lm import NumpyLM
from keyboard.store import Device, DeviceError, Splits
from keyboard.suggest import WordSuggester
from lm.config import ModelConfig
from lm.examples import encode_examples
from lm.recall import recall_counts
from tokenizer.vocab import Tokenizer, TokenizerError

MIN_TRAIN_SENTENCES = 2  # one sentence is a memorized phrase, not a person's style
CLIP_NORM = 1.0  # global-norm clipping: a few large LSTM gradients must not wreck the global model
# Plain SGD, as in Wang et al. and the federated client; with clipping at 1.0 one step moves the
# model by at most 0.5, so the personal model stays near the global one. Tuned on 30 Shakespeare
# devices (small preset, centrally trained global, 5 epochs of 16): 0.5 (like Adam 3e-3) learns a
# phrase typed 20 times among 40 sentences (+2..12 points recall@1); 0.1-0.2 or Adam 1e-3 seldom
# learn it, and Adam 1e-2 overshoots. On devices without such a phrase no rate helped (0.5 cost
# 0.7 points on average): that is what the held-out check, use_personal, is for.
LEARNING_RATE = 0.5


@dataclass(frozen=True)
class PersonalizationConfig:
    """How the installed global model is fine-tuned into the personal one."""

    epochs: int = field(default=5, metadata={"help": "fine-tuning epochs over the train split"})
    learning_rate: float = field(default=LEARNING_RATE,
                                 metadata={"help": "plain SGD learning rate (see LEARNING_RATE)"})
    batch_size: int = field(default=16, metadata={"help": "examples per step"})
    seed: int = field(default=0, metadata={"help": "the order of the examples"})

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ConfigError(f"epochs, batch_size and learning_rate must be positive, "
                              f"got {self.epochs}, {self.batch_size}, {self.learning_rate}")


class PersonalizationError(FedkbError):
    """The device cannot be personalized (no device, no installed model, too little text)."""


@dataclass(frozen=True)
class ModelScores:
    """Whole-word recall of one model on the device's held-out split."""

    recall_at_1: float
    recall_at_3: float
    predictions: int


@dataclass(frozen=True)
class PersonalResult:
    """Global vs personal on this device's held-out split; ``to_record()`` is the eval record."""

    global_version: str
    global_scores: ModelScores
    personal_scores: ModelScores
    use_personal: bool
    trained_on_sentences: int
    epochs: int
    created: str
    personal_weights_sha256: str  # binds the record to the personal model it judged

    def to_record(self) -> dict:
        return {"global_version": self.global_version, "global": asdict(self.global_scores),
                "personal": asdict(self.personal_scores), "use_personal": self.use_personal,
                "trained_on_sentences": self.trained_on_sentences, "epochs": self.epochs,
                "created": self.created, "personal_weights_sha256": self.personal_weights_sha256}


def personalize(
    device_dir: Path, *, epochs: int = PersonalizationConfig.epochs,
    learning_rate: float = PersonalizationConfig.learning_rate, batch_size: int = PersonalizationConfig.batch_size,
    seed: int = PersonalizationConfig.seed,
) -> PersonalResult:
    """Fine-tunes the installed global model on the device's train split and compares it on held-out.

    Writes ``<device>/personal/`` (atomically) and ``<device>/eval/personalization.json``. The
    personal model must win strictly on recall@1, so a device with no held-out words keeps the global one.

    Raises:
        PersonalizationError: no device, no installed model version, or fewer than 2 train sentences.
        ValueError: a non-positive ``epochs``, ``learning_rate`` or ``batch_size``.
    """
    PersonalizationConfig(epochs, learning_rate, batch_size, seed)  # raises ConfigError for a bad one
    device_dir = Path(device_dir)
    splits, current = _inputs(device_dir)
    config_text = (current.path / CONFIG).read_text()
    config = ModelConfig.from_json(config_text)
    tok = Tokenizer.load(current.path / TOKENIZER)
    global_weights = version_dir.read_weights(current.path)
    examples = encode_examples(tok.encode, splits.train, config.sequence_length)
    weights = _fine_tune(config, global_weights, examples, epochs=epochs, learning_rate=learning_rate,
                         batch_size=batch_size, seed=seed)

    # Each scored as the keyboard would run it: the global version from its int8 on-device weights
    # when it has them, the personal model (float weights only) as it is.
    global_scores = _scores(NumpyLM.load(current.path), tok, splits.heldout)
    personal_scores = _scores(NumpyLM(json.loads(config_text), weights), tok, splits.heldout)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    details = {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed,
               "clip_norm": CLIP_NORM, "train_sentences": len(splits.train)}
    manifest = _write_personal(device_dir, weights, config_text, tok.model_proto, current, created,
                               {"heldout_recall_at_1": personal_scores.recall_at_1}, details)
    result = PersonalResult(
        global_version=current.version, global_scores=global_scores, personal_scores=personal_scores,
        use_personal=personal_scores.recall_at_1 > global_scores.recall_at_1,
        trained_on_sentences=len(splits.train), epochs=epochs, created=created,
        personal_weights_sha256=manifest["files"][WEIGHTS])
    # Written after the personal model, so a crash in between leaves a record that does not
    # match its sha256, and active_model_dir falls back to the global model.
    DeviceLayout(device_dir).eval.mkdir(exist_ok=True)
    atomic_write(DeviceLayout(device_dir).personalization, json.dumps(result.to_record(), indent=2).encode())
    return result


def _fine_tune(config: ModelConfig, weights: Mapping[str, np.ndarray], examples: np.ndarray, *, epochs: int,
               learning_rate: float, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Fine-tunes a copy of ``weights`` with the device's federated client work (``client_work``:
    clipped local SGD); returns the new named weights.

    Personalization and a device's contribution to a round are the same training code; here
    every example is used and nothing leaves the device.
    """
    from keyboard import client_work  # TensorFlow is imported there, only when training

    settings = client_work.LocalTraining(client_lr=learning_rate, client_clip_norm=CLIP_NORM, local_epochs=epochs,
                                         batch_size=batch_size, max_examples_per_client=max(len(examples), 1),
                                         seed=seed)
    update = client_work.client_update(config, dict(weights), examples, settings, round_num=0)
    return {name: w - update.delta[name] if name in update.delta else w for name, w in weights.items()}


def _inputs(device_dir: Path) -> tuple[Splits, Installed]:
    """The device's splits and installed version, or a PersonalizationError saying what is missing."""
    try:
        with Device(device_dir) as device:
            splits = learnable_splits(device)  # not what the person asked the device to forget
    except DeviceError as exc:
        raise PersonalizationError(str(exc)) from None
    current = installed(device_dir)
    if current is None:
        raise PersonalizationError(
            f"device {device_dir.name}: no installed model version to personalize; install one first")
    if len(splits.train) < MIN_TRAIN_SENTENCES:
        raise PersonalizationError(
            f"device {device_dir.name}: {len(splits.train)} train sentence(s), personalization needs at "
            f"least {MIN_TRAIN_SENTENCES}; type more first")
    return splits, current


def _scores(lm: NumpyLM, tok: Tokenizer, heldout: Sequence[str]) -> ModelScores:
    """Whole-word recall with the keyboard's own beam, as federated evaluation measures it."""
    counts = recall_counts(WordSuggester(lm, tok), heldout, ks=(1, 3))
    return ModelScores(counts.recall(1), counts.recall(3), counts.predictions)


def _write_personal(device_dir: Path, weights: Mapping[str, np.ndarray], config_text: str,
                    tokenizer_proto: bytes, source: Installed, created: str, metrics: Mapping[str, float],
                    details: Mapping[str, object]) -> dict:
    """Builds the personal version in a temporary folder, verifies it, then renames it into place."""
    files = {WEIGHTS: version_dir.npz_bytes(weights, np.float32), CONFIG: config_text.encode(),
             TOKENIZER: tokenizer_proto}
    manifest = {
        "version": PERSONAL_DIR, "round": source.manifest.get("round"), "created": created,
        "files": version_dir.file_hashes(files),
        "metrics": dict(metrics), "personalization": dict(details),
        # Both the name and the weights' hash: a re-seeded server may publish another "0001".
        "fine_tuned_from": source.version, "fine_tuned_from_sha256": source.manifest["files"][WEIGHTS],
    }
    # Between the two renames of a replacement there is no personal model, which
    # active_model_dir reads as "use the global one".
    version_dir.write(DeviceLayout(device_dir).personal, {**files, MANIFEST: version_dir.manifest_bytes(manifest)},
                      staging=device_dir / f".personal-tmp-{os.getpid()}", check=artifacts.verify, replace=True)
    return manifest


def active_model_dir(device_dir: Path, *, current: Installed | None = None) -> Path | None:
    """The model directory the keyboard should run: personal, else the installed global one, else None.

    The personal model is used only if it verifies, was fine-tuned from the currently installed
    global version, and the eval record judging exactly these weights says ``use_personal``.
    ``current`` is ``installed(device_dir)`` when the caller has just verified it (saves hashing twice).
    """
    device_dir = Path(device_dir)
    current = current or installed(device_dir)
    if current is None:
        return None
    personal = DeviceLayout(device_dir).personal
    if not personal.is_dir():
        return current.path
    try:
        manifest = artifacts.verify(personal)
        record = json.loads(DeviceLayout(device_dir).personalization.read_text())
    except (artifacts.ArtifactError, OSError, ValueError):
        return current.path
    usable = (
        isinstance(record, dict)
        and record.get("use_personal") is True
        and record.get("global_version") == current.version
        and record.get("personal_weights_sha256") == manifest["files"][WEIGHTS]
        and manifest.get("fine_tuned_from") == current.version
        and manifest.get("fine_tuned_from_sha256") == current.manifest["files"].get(WEIGHTS)
    )
    return personal if usable else current.path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keyboard.personalize --device-dir DIR [--epochs N]``: one JSON line, or one error line."""
    parser = argparse.ArgumentParser(prog="python -m keyboard.personalize", description=__doc__.split("\n")[0])
    parser.add_argument("--device-dir", type=Path, required=True, help="the device directory (holds log.sqlite)")
    add_config_arguments(parser, PersonalizationConfig, ("epochs",))
    args = parser.parse_args(argv)
    try:
        result = personalize(args.device_dir, epochs=args.epochs)
    except (PersonalizationError, TokenizerError, artifacts.ArtifactError, ValueError, OSError) as exc:
        print(f"personalize: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_record(), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported
    sys.exit(main())
