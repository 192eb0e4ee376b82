"""The int8 on-device weights: the arithmetic by hand, the size, and the published-version format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common import artifacts, ondevice
from keyboard import install
from keyboard.lm import NumpyLM
from keyboard.suggest import WordSuggester
from lm.config import preset
from tests.fakes import resign
from tests.keyboard.helpers import publish_random
from tokenizer.vocab import Tokenizer


def test_one_scale_per_output_column_by_hand():
    w = np.array([[1.0, -0.5], [0.25, 2.0]], np.float32)
    q, scale = ondevice.quantize_matrix(w, axis=1)
    # Column 0: |max| 1 -> scale 1/127, 0.25 -> 31.75 -> 32. Column 1: |max| 2 -> scale 2/127, -0.5 -> -32.
    assert q.dtype == np.int8 and q.tolist() == [[127, -32], [32, 127]]
    assert scale.shape == (1, 2) and np.allclose(scale.astype(np.float64), [[1 / 127, 2 / 127]], rtol=1e-3)


def test_the_embedding_gets_one_scale_per_piece():
    w = np.array([[0.1, -0.2, 0.05], [4.0, 1.0, -2.0]], np.float32)  # two pieces of very different size
    stored = ondevice.quantize({"embedding/embeddings": w, "output_bias": np.array([0.5, -1.25], np.float32)})
    assert stored["embedding/embeddings.scale"].shape == (2, 1)
    assert stored["embedding/embeddings.int8"].tolist() == [[64, -127, 32], [127, 32, -64]]  # 63.5, 31.75 round up
    back = ondevice.dequantize(stored)
    assert back["output_bias"].tolist() == [0.5, -1.25] and back["output_bias"].dtype == np.float32
    assert np.abs(back["embedding/embeddings"] - w).max() <= 0.2 / 127 / 2 * 1.01 * (4.0 / 0.2)


def test_rounding_error_is_at_most_half_a_step_per_channel():
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(50, 30)) * rng.uniform(0.01, 3.0, size=30)).astype(np.float32)  # columns of all sizes
    q, scale = ondevice.quantize_matrix(w, axis=1)
    step = scale.astype(np.float32)
    assert np.all(np.abs(q.astype(np.float32) * step - w) <= step / 2 * 1.001 + 1e-7)


def test_gboard_on_device_file_is_under_1_5_mb_whatever_the_weights():
    config = preset("gboard")
    v, e, u, g = config.vocab_size, config.embedding_dim, config.lstm_units, config.gates
    rng = np.random.default_rng(0)
    shapes = {"embedding/embeddings": (v, e), "rnn/cell/kernel": (2 * e, g * u), "rnn/cell/bias": (g * u,),
              "rnn/cell/projection": (u, e), "output_bias": (v,)}
    weights = {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
    assert sum(w.size for w in weights.values()) == config.parameter_count()
    size = len(ondevice.to_bytes(weights))
    assert size < 1_500_000 and size < 0.26 * config.parameter_count() * 4


def test_published_version_carries_verified_on_device_weights(tmp_path):
    version = publish_random(tmp_path / "models", seed=1)
    assert artifacts.ONDEVICE in version.manifest["files"] and version.manifest["ondevice"] == ondevice.FORMAT
    device = tmp_path / "device"
    installed = install.install(device, version.path)
    assert (installed.path / artifacts.ONDEVICE).read_bytes() == (version.path / artifacts.ONDEVICE).read_bytes()
    lm = NumpyLM.load(installed.path)
    stored = ondevice.load(installed.path / artifacts.ONDEVICE)
    assert np.array_equal(lm.embedding, stored["embedding/embeddings"])
    assert not np.array_equal(lm.embedding, NumpyLM.load(installed.path, on_device=False).embedding)
    # A damaged on-device file is refused, naming it; the device keeps what it had.
    other = publish_random(tmp_path / "models", seed=2)
    data = bytearray((other.path / artifacts.ONDEVICE).read_bytes())
    data[-20] ^= 0xFF
    (other.path / artifacts.ONDEVICE).write_bytes(bytes(data))
    with pytest.raises(artifacts.ArtifactError, match="ondevice.npz"):
        install.install(device, other.path)
    assert install.installed(device).version == version.name


def test_versions_published_before_the_on_device_file_still_install_and_run(tmp_path):
    version = publish_random(tmp_path / "models", seed=3)
    manifest = json.loads((version.path / artifacts.MANIFEST).read_text())
    del manifest["files"][artifacts.ONDEVICE], manifest["ondevice"]
    (version.path / artifacts.MANIFEST).write_text(json.dumps(manifest))
    (version.path / artifacts.ONDEVICE).unlink()
    resign(version.path)  # such a version is signed as it stands
    installed = install.install(tmp_path / "device", version.path)
    assert not (installed.path / artifacts.ONDEVICE).exists()
    lm = NumpyLM.load(installed.path)
    with np.load(installed.path / artifacts.WEIGHTS) as npz:
        assert np.array_equal(lm.embedding, npz["embedding/embeddings"])


def test_an_unlisted_on_device_file_is_never_loaded(tmp_path):
    version = publish_random(tmp_path / "models", seed=4)
    manifest = json.loads((version.path / artifacts.MANIFEST).read_text())
    del manifest["files"][artifacts.ONDEVICE]
    (version.path / artifacts.MANIFEST).write_text(json.dumps(manifest))
    lm = NumpyLM.load(version.path)  # the file is there but unverified: the float weights run
    with np.load(version.path / artifacts.WEIGHTS) as npz:
        assert np.array_equal(lm.embedding, npz["embedding/embeddings"])


@pytest.mark.slow
def test_a_trained_models_int8_copy_keeps_its_recall(tmp_path):
    """The tiny preset trained with Keras on bundled Shakespeare: float and int8 on held-out words.

    (Random weights are no test of this: a random LSTM is chaotic, so any rounding grows along
    the sentence; a trained one is not.)
    """
    import collections

    from eval.centralized import train_centralized
    from federated import registry
    from federated.corpus import read_records, resolve_corpus
    from lm.examples import encode_examples
    from lm.recall import recall_counts
    from tokenizer.vocab import TokenizerConfig, train_from_counts

    texts = [r.text for r in read_records(resolve_corpus("shakespeare"))[:4000]]
    train, heldout = texts[:3500], texts[3500:]
    tok = Tokenizer(train_from_counts(collections.Counter(w for t in train for w in t.split()),
                                      TokenizerConfig(vocab_size=preset("tiny").vocab_size)))  # 256 pieces
    config = preset("tiny", vocab_size=tok.vocab_size)
    weights = train_centralized(config, encode_examples(tok.encode, train, config.sequence_length), 300_000, seed=0)
    version = registry.publish(tmp_path / "models", weights=weights, config=config,
                               tokenizer_proto=tok.model_proto, round_num=1, metrics={})
    float_beam = WordSuggester(NumpyLM.load(version.path, on_device=False), tok)
    int8_beam = WordSuggester(NumpyLM.load(version.path), tok)
    r_float, r_int8 = recall_counts(float_beam, heldout), recall_counts(int8_beam, heldout)
    counts = collections.Counter(w for t in train for w in t.split())
    most_common = counts.most_common(1)[0][0]
    baseline = np.mean([w == most_common for t in heldout for w in t.split()[1:]])
    assert r_float.predictions > 3000 and r_float.recall(1) > baseline + 0.005  # it learned more than "I"
    assert abs(r_float.recall(1) - r_int8.recall(1)) <= 0.005
    words = [s.split() for s in heldout if len(s.split()) > 1]
    pairs = [(x[0], y[0])
             for sa, sb in zip(float_beam.suggest_sentences(words, 1), int8_beam.suggest_sentences(words, 1))
             for x, y in zip(sa, sb) if x and y]
    assert np.mean([x == y for x, y in pairs]) > 0.97
