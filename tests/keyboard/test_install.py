"""Devices install published versions only when every file matches the manifest, keeping the previous one."""

import numpy as np
import pytest

from fedkb import artifacts
from federated import registry
from federated.model_config import ModelConfig
from keyboard import install
from tests.keyboard.helpers import tiny_tokenizer_proto
from tokenizer.vocab import Tokenizer


def _publish(models_dir, round_num, fill=0.0):
    proto = tiny_tokenizer_proto()
    vocab = Tokenizer(proto).vocab_size  # the files must belong together to install
    config = ModelConfig(vocab_size=vocab, embedding_dim=2, lstm_units=3)
    weights = {"embedding/embeddings": np.full((vocab, 2), fill, np.float32)}
    return registry.publish(models_dir, weights=weights, config=config, tokenizer_proto=proto,
                            round_num=round_num, metrics={"loss": 1.0})


def test_install_verifies_and_keeps_previous(tmp_path):
    models, device = tmp_path / "models", tmp_path / "device"
    v1, v2 = _publish(models, 1), _publish(models, 2, fill=1.0)
    assert (v1.name, v2.name) == ("0001", "0002")
    assert install.installed(device) is None
    assert install.install(device, v1.path).version == "0001"
    assert install.install(device, v2.path).version == "0002"
    assert install.read_pointer(device) == {"current": "0002", "previous": "0001"}
    assert sorted(p.name for p in (device / "model").iterdir() if p.is_dir()) == ["0001", "0002"]
    v3 = _publish(models, 3)
    install.install(device, v3.path)
    assert sorted(p.name for p in (device / "model").iterdir() if p.is_dir()) == ["0002", "0003"]


@pytest.mark.parametrize("damage", ["alter", "truncate", "delete", "manifest"])
def test_tampered_version_is_refused_and_device_keeps_its_version(tmp_path, damage):
    models, device = tmp_path / "models", tmp_path / "device"
    good, bad = _publish(models, 1), _publish(models, 2, fill=3.0)
    install.install(device, good.path)
    target = bad.path / ("manifest.json" if damage == "manifest" else "weights.npz")
    if damage == "alter":
        data = bytearray(target.read_bytes())
        data[-10] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "delete":
        target.unlink()
    else:
        target.write_text("{not json")
    with pytest.raises(artifacts.ArtifactError, match="manifest.json" if damage == "manifest" else "weights.npz"):
        install.install(device, bad.path)
    assert install.installed(device).version == "0001"
    assert not any(p.name.startswith(".incoming") for p in (device / "model").iterdir())


def test_damaged_current_copy_falls_back_to_previous(tmp_path):
    models, device = tmp_path / "models", tmp_path / "device"
    install.install(device, _publish(models, 1).path)
    install.install(device, _publish(models, 2, fill=1.0).path)
    (device / "model" / "0002" / "weights.npz").write_bytes(b"garbage")
    got = install.installed(device)
    assert got.version == "0001" and got.fell_back


def test_registry_promotion_records_why(tmp_path):
    models = tmp_path / "models"
    _publish(models, 1)
    _publish(models, 2)
    assert registry.latest(models) is None and registry.undecided(models) == ["0001", "0002"]
    registry.record_decision(models, "0001", promoted=True, reason="first version")
    registry.record_decision(models, "0002", promoted=False, reason="recall@1 fell 0.8 points")
    assert registry.latest(models).name == "0001"
    assert registry.read_registry(models)["decisions"]["0002"]["reason"] == "recall@1 fell 0.8 points"
    assert registry.undecided(models) == []


def test_eval_refuses_a_tampered_version_naming_the_file(seeded_home):
    from federated.rollout import run_eval

    version = _publish(seeded_home.models, 1)
    (version.path / "spm.model").write_bytes(b"other tokenizer")
    with pytest.raises(registry.RegistryError, match=r"spm.model: sha256 does not match"):
        run_eval(seeded_home, version="0001")
