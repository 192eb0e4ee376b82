"""On-device personalization: a device's own phrase is learned, kept only when it helps, and checked on load."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys

import numpy as np
import pytest

from common import artifacts
from common.layout import DeviceLayout
from federated import registry
from federated.population import members, seed
from keyboard import personalize as pz
from keyboard.install import install
from keyboard.lm import NumpyLM
from keyboard.store import Device
from keyboard.suggest import WordSuggester
from lm.config import ModelConfig
from tests.conftest import REPO, synthetic_corpus
from tokenizer.vocab import Tokenizer, TokenizerConfig, train_from_counts

PHRASE = "see you at the zorblax cafe"
T0 = 1_700_000_000.0  # the seeded sentences have no timestamps, so they sort before these


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """A tiny vocabulary that knows every letter (coverage 1.0), so it can spell a word never counted."""
    words = [
        "the", "a", "cat", "dog", "sat", "ran", "on", "in", "to", "park", "mat", "ball", "red", "big",
        "small", "and", "then", "with", "my", "your", "good", "morning", "night", "love", "you", "thank",
        "see", "tomorrow",
    ]
    counts = {w: 50 for w in words} | {c: 1 for c in string.ascii_lowercase}
    # Other people's words that share pieces with "zorblax"; "zorblax" itself was never counted.
    counts |= {w: 20 for w in ["zorro", "zorba", "blaze", "blanket", "black", "relax", "tax", "axe"]}
    return Tokenizer(train_from_counts(counts, TokenizerConfig(vocab_size=64, character_coverage=1.0)))


def _publish_random(models_dir, tok: Tokenizer, seed: int = 0, round_num: int = 1) -> registry.Version:
    """A global version with freshly initialised CIFG weights: it knows nothing of anyone's phrases."""
    v, e, u = tok.vocab_size, 16, 32
    rng = np.random.default_rng(seed)
    weights = {
        "embedding/embeddings": rng.uniform(-0.05, 0.05, (v, e)).astype(np.float32),
        "rnn/cell/kernel": rng.normal(0, 0.2, (2 * e, 3 * u)).astype(np.float32),
        "rnn/cell/bias": np.r_[np.full(u, -1.0), np.zeros(2 * u)].astype(np.float32),
        "rnn/cell/projection": rng.normal(0, 0.2, (u, e)).astype(np.float32),
        "output_bias": np.zeros(v, np.float32),
    }
    config = ModelConfig(vocab_size=v, embedding_dim=e, lstm_units=u, sequence_length=16)
    return registry.publish(models_dir, weights=weights, config=config, tokenizer_proto=tok.model_proto,
                            round_num=round_num, metrics={})


@pytest.fixture
def device(tmp_path, home, tokenizer):
    """A seeded device (12 everyday sentences) with a random global version and PHRASE typed 30 times.

    42 sentences: the newest 8 (all PHRASE) are held out; 12 everyday + 22 PHRASE are train.
    """
    seed(home, synthetic_corpus(tmp_path / "corpus.jsonl", users=2, sentences=12))
    device_dir = home.device(members(home)[0].device_id)
    version = _publish_random(home.models, tokenizer)
    install(device_dir, version.path)
    with Device(device_dir) as dev:
        for i in range(30):
            dev.append(PHRASE, timestamp=T0 + 60 * i)
        splits = dev.splits()
    assert (len(splits.train), len(splits.heldout)) == (34, 8)
    assert splits.train.count(PHRASE) == 22 and set(splits.heldout) == {PHRASE}
    return device_dir, version


def _suggester(version_dir) -> WordSuggester:
    return WordSuggester(NumpyLM.load(version_dir), Tokenizer.load(version_dir / "spm.model"))


@pytest.fixture
def fake_training(monkeypatch, tokenizer):
    """Replaces Keras with a 'personal' model that always says "the" (right once per held-out PHRASE)."""
    (the,) = tokenizer.encode("the")

    def fine_tune(config, weights, examples, **_):
        out = {k: v.copy() for k, v in weights.items()}
        out["output_bias"][4:] -= 30.0  # every non-special piece down, "▁the" far up
        out["output_bias"][the] += 60.0
        return out

    monkeypatch.setattr(pz, "_fine_tune", fine_tune)


# -- the loop: type a phrase, personalize, see it suggested ---------------------------------------------


@pytest.mark.slow
def test_personal_model_learns_the_devices_own_phrase(device, tokenizer):
    device_dir, version = device
    global_model = _suggester(version.path)
    assert global_model.can_produce("zorblax") and len(tokenizer.encode("zorblax")) > 1  # spelled in pieces
    assert "zorblax" not in global_model.suggest("see you at the ", k=3)

    # The default rate, but more and smaller steps than a trained global model needs (5 epochs of
    # 16): this global model is untrained, so it must learn "see you at the" as well as "zorblax".
    result = pz.personalize(device_dir, epochs=30, batch_size=4)

    personal_dir = device_dir / pz.PERSONAL_DIR
    manifest = artifacts.verify(personal_dir)
    assert manifest["fine_tuned_from"] == version.name
    assert "zorblax" in _suggester(personal_dir).suggest("see you at the ", k=3)
    record = json.loads(DeviceLayout(device_dir).personalization.read_text())
    assert record == result.to_record()
    assert record["use_personal"] is True and record["global_version"] == version.name
    assert record["personal"]["recall_at_1"] > record["global"]["recall_at_1"]
    assert record["personal"]["predictions"] == record["global"]["predictions"] == 8 * 5
    assert (record["trained_on_sentences"], record["epochs"]) == (34, 30)
    assert pz.active_model_dir(device_dir) == personal_dir


@pytest.mark.slow
def test_command_line_prints_one_json_line(device):
    device_dir, _ = device
    run = subprocess.run([sys.executable, "-m", "keyboard.personalize", "--device-dir", str(device_dir),
                          "--epochs", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (line,) = run.stdout.splitlines()
    assert json.loads(line)["epochs"] == 1 and (device_dir / pz.PERSONAL_DIR / "manifest.json").is_file()


# -- the personal version and the record (Keras replaced by a stand-in) ---------------------------------


def test_personal_version_is_verifiable_and_replaced_atomically(device, fake_training):
    device_dir, version = device
    first = pz.personalize(device_dir)
    assert first.use_personal and first.personal_scores.recall_at_1 == pytest.approx(1 / 5)
    assert first.global_scores.recall_at_1 < first.personal_scores.recall_at_1
    manifest = artifacts.verify(device_dir / pz.PERSONAL_DIR)
    assert manifest["fine_tuned_from_sha256"] == version.manifest["files"]["weights.npz"]
    assert manifest["personalization"]["train_sentences"] == 34
    assert first.personal_weights_sha256 == manifest["files"]["weights.npz"]

    again = pz.personalize(device_dir, epochs=2)
    assert again.epochs == 2 and json.loads(DeviceLayout(device_dir).personalization.read_text())["epochs"] == 2
    assert sorted(p.name for p in device_dir.iterdir() if "personal" in p.name) == [pz.PERSONAL_DIR]
    assert pz.active_model_dir(device_dir) == device_dir / pz.PERSONAL_DIR


@pytest.mark.parametrize("damage", ["weights", "record_says_no", "record_for_other_weights", "no_record"])
def test_active_model_falls_back_to_global_when_personal_cannot_be_trusted(device, fake_training, damage):
    device_dir, version = device
    pz.personalize(device_dir)
    record_path = DeviceLayout(device_dir).personalization
    record = json.loads(record_path.read_text())
    if damage == "weights":
        weights = device_dir / pz.PERSONAL_DIR / "weights.npz"
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "no_record":
        record_path.unlink()
    else:
        key, value = ("use_personal", False) if damage == "record_says_no" else ("personal_weights_sha256", "0" * 64)
        record_path.write_text(json.dumps({**record, key: value}))
    assert pz.active_model_dir(device_dir) == device_dir / "model" / version.name


def test_personal_model_of_an_older_global_version_is_not_used(device, fake_training, home, tokenizer):
    device_dir, _ = device
    pz.personalize(device_dir)
    newer = _publish_random(home.models, tokenizer, seed=1, round_num=2)
    install(device_dir, newer.path)
    assert pz.active_model_dir(device_dir) == device_dir / "model" / newer.name


def test_no_model_at_all(tmp_path):
    with Device(tmp_path / "dev", create=True) as dev:
        dev.append("hello there")
    assert pz.active_model_dir(tmp_path / "dev") is None
    with pytest.raises(pz.PersonalizationError, match="no installed model version"):
        pz.personalize(tmp_path / "dev")
    with pytest.raises(pz.PersonalizationError, match="no device"):
        pz.personalize(tmp_path / "missing")


def test_too_few_train_sentences(tmp_path, tokenizer):
    version = _publish_random(tmp_path / "models", tokenizer)
    with Device(tmp_path / "dev", create=True) as dev:
        dev.append("see you tomorrow")  # one sentence: none held out, one to train on
    install(tmp_path / "dev", version.path)
    with pytest.raises(pz.PersonalizationError, match="1 train sentence.*at least 2"):
        pz.personalize(tmp_path / "dev")


def test_command_line_without_a_model_fails_with_one_line(tmp_path):
    with Device(tmp_path / "dev", create=True) as dev:
        dev.append("hello there")
    run = subprocess.run([sys.executable, "-m", "keyboard.personalize", "--device-dir", str(tmp_path / "dev")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert "no installed model version" in line


def test_keyboard_side_never_imports_tensorflow(tmp_path):
    code = ("import sys; from keyboard.personalize import active_model_dir; active_model_dir(sys.argv[1]); "
            "assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


# -- the aggregate the server may see --------------------------------------------------------------------


