"""The set-up of ``bench/suggest_latency.py``: a published model version with its n-gram table,
installed on a scratch device with a log, and the held-out text to replay (see that bench's
docstring for what is built and why). Also used by ``bench/typing_replay.py``.

Run as a script with a JSON spec, this module is the child process that trains the preset
centrally (``train_worker``), so the bench's own process never imports TensorFlow.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fedbench import Home, shakespeare_home  # first: puts the repo on sys.path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setup:
    """A published model version (with n-grams) installed on a scratch device with a log, and the text to replay."""

    preset: str
    version_dir: Path
    device_dir: Path
    replay: list[str]  # held-out sentences typed key by key
    recall: list[str]  # held-out sentences for recall@1
    weights: str  # where the weights came from


def heldout_sentences(home: Home, limit: int, *, skip: str | None = None) -> list[str]:
    """Up to ``limit`` held-out sentences (each device's newest 20 %), devices in index order, ``skip`` left out."""
    from federated.population import members
    from keyboard.store import Device

    out: list[str] = []
    for member in members(home):
        if member.device_id == skip:
            continue
        with Device(home.device(member.device_id)) as device:
            out += device.splits().heldout
        if len(out) >= limit:
            break
    return out[:limit]


def keystrokes(sentences: list[str], at_least: int) -> list[str]:
    """The text after each keystroke of whole sentences, until at least ``at_least`` keystrokes."""
    texts: list[str] = []
    for sentence in sentences:
        texts += [sentence[: i + 1] for i in range(len(sentence))]
        if len(texts) >= at_least:
            return texts
    raise SystemExit(f"only {len(texts)} keystrokes in the held-out sentences; {at_least} were asked for")


def ngram_table(home: Home) -> bytes:
    """``ngrams.tsv.gz`` bytes: what ``fedkb ngrams gather`` releases without DP, computed without TFF (see above)."""
    from common import artifacts
    from federated.ngrams import NgramConfig, exact_table
    from federated.population import members
    from keyboard.store import Device

    train_splits = []
    for member in members(home):
        with Device(home.device(member.device_id)) as device:
            train_splits.append(device.splits().train)
    return artifacts.ngrams_to_bytes(exact_table(train_splits, NgramConfig()))


def busiest_device(home: Home) -> str:
    """The population's device with the most logged sentences (ties: the first in index order)."""
    from federated.population import members
    from keyboard.store import Device

    best, most = None, -1
    for member in members(home):
        with Device(home.device(member.device_id)) as device:
            n = device.count()
        if n > most:
            best, most = member.device_id, n
    if best is None:
        raise SystemExit(f"no devices in {home.devices}")
    return best


def publish_model(home: Home, preset: str, models_dir: Path, *, train_tokens: int, seed: int) -> Path:
    """The newest version in ``models_dir``, or a new one trained in a child process (TensorFlow stays there)."""
    from federated import registry

    version = registry.newest(models_dir)
    if version is None:
        table = models_dir.parent / "ngrams.tsv.gz"
        table.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        table.write_bytes(ngram_table(home))
        print(f"  n-gram table {table.stat().st_size:,} bytes in {time.perf_counter() - started:.1f} s", flush=True)
        cmd = [sys.executable, __file__, json.dumps(
            {"home": str(home.root), "preset": preset, "models": str(models_dir), "tokens": train_tokens, "seed": seed,
             "ngrams": str(table)})]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"training {preset} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        print(f"  trained {preset} on {train_tokens:,} tokens in {time.perf_counter() - started:.0f} s", flush=True)
        version = registry.newest(models_dir)
    return version.path


def train_worker(spec: dict) -> None:
    """Child process: the preset trained centrally with Keras (or its initial weights), then published with the table.
    """
    from eval.centralized import train_centralized
    from federated import registry
    from federated.population import members
    from keyboard.store import Device
    from lm.config import preset
    from lm.examples import encode_examples
    from lm.model import build_model, named_weights
    from tokenizer.vocab import Tokenizer

    home = Home(Path(spec["home"]))
    tokenizer = Tokenizer.load(home.tokenizer)
    config = preset(spec["preset"], vocab_size=tokenizer.vocab_size)
    if spec["tokens"] > 0:
        pooled = []
        for member in members(home):
            with Device(home.device(member.device_id)) as device:
                pooled += device.splits().train
        examples = encode_examples(tokenizer.encode, pooled, config.sequence_length)
        weights = train_centralized(config, examples, spec["tokens"], seed=spec["seed"])
    else:
        weights = named_weights(build_model(config, seed=spec["seed"]))
    registry.publish(Path(spec["models"]), weights=weights, config=config, tokenizer_proto=tokenizer.model_proto,
                     round_num=0, metrics={"train_tokens": spec["tokens"]},
                     extra={"kind": "centralized_lstm", "by": "bench/suggest_latency.py",
                            "ngrams": "federated.ngrams.exact_table, default NgramConfig"},
                     ngrams=Path(spec["ngrams"]).read_bytes())


def install_on_scratch_device(version_dir: Path, device_dir: Path, log: list[str] = ()) -> Path:
    """A device of its own (not one of the population) with ``log`` as its log and ``version_dir`` installed."""
    from keyboard.install import install
    from keyboard.store import Device

    with Device(device_dir, create=not device_dir.is_dir()) as device:
        if device.sentences() != list(log):
            device.delete_log()
            device.append_many((None, s) for s in log)
    install(device_dir, version_dir)
    return device_dir


def prepare(work: Path, preset: str, *, train_tokens: int, seed: int, keys: int, recall_sentences: int) -> Setup:
    from keyboard.store import Device
    from lm.config import PRESETS

    home = shakespeare_home(work, vocab_size=PRESETS[preset].vocab_size)
    # "-mix": versions published with the n-gram table (the directories of earlier runs have none).
    own = work / "suggest-latency" / f"{preset}-{home.root.name}-t{train_tokens}-s{seed}-mix"
    version_dir = publish_model(home, preset, own / "models", train_tokens=train_tokens, seed=seed)
    source = busiest_device(home)
    with Device(home.device(source)) as device:
        log = device.sentences()
    sentences = heldout_sentences(home, 10**9, skip=source)
    replay = keystrokes(sentences, keys)
    weights = (f"centrally trained (Keras, {train_tokens:,} tokens, seed {seed})" if train_tokens
               else f"seeded initial weights (seed {seed})")
    return Setup(preset, version_dir, install_on_scratch_device(version_dir, own / "device", log), replay,
                 sentences[:recall_sentences], weights)


if __name__ == "__main__":
    train_worker(json.loads(sys.argv[1]))
