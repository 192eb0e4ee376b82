"""Devices install published versions only when every file matches the manifest, keeping the previous one."""

import numpy as np
import pytest

from common import artifacts
from federated import registry
from keyboard import install
from lm.config import ModelConfig
from tests.fakes import resign
from tests.keyboard.helpers import tiny_tokenizer_proto
from tokenizer.vocab import Tokenizer


def _publish(models_dir, round_num, fill=0.0, ngrams=None):
    proto = tiny_tokenizer_proto()
    vocab = Tokenizer(proto).vocab_size  # the files must belong together to install
    config = ModelConfig(vocab_size=vocab, embedding_dim=2, lstm_units=3)
    weights = {"embedding/embeddings": np.full((vocab, 2), fill, np.float32)}
    return registry.publish(models_dir, weights=weights, config=config, tokenizer_proto=proto,
                            round_num=round_num, metrics={"loss": 1.0}, ngrams=ngrams)


NGRAM_TABLE = {1: {("the",): 5, ("cat",): 2}, 2: {("<s>", "the"): 3, ("the", "cat"): 2}, 3: {("<s>", "the", "cat"): 2}}


def test_a_version_with_ngrams_installs_them_verified(tmp_path):
    models, device = tmp_path / "models", tmp_path / "device"
    data = artifacts.ngrams_to_bytes(NGRAM_TABLE)
    version = _publish(models, 1, ngrams=data)
    assert artifacts.NGRAMS in version.manifest["files"] and (version.path / artifacts.NGRAMS).read_bytes() == data
    assert artifacts.NGRAMS not in _publish(models, 2).manifest["files"]  # optional: versions without it stay valid
    done = install.install(device, version.path)
    assert artifacts.read_ngrams(done.path / artifacts.NGRAMS) == NGRAM_TABLE
    assert install.installed(device).version == "0001"


@pytest.mark.parametrize("damage", ["alter", "delete", "rehashed_garbage"])
def test_a_tampered_ngram_table_is_refused(tmp_path, damage):
    import hashlib
    import json

    models, device = tmp_path / "models", tmp_path / "device"
    good = _publish(models, 1)
    install.install(device, good.path)
    bad = _publish(models, 2, ngrams=artifacts.ngrams_to_bytes(NGRAM_TABLE))
    table = bad.path / artifacts.NGRAMS
    if damage == "alter":
        table.write_bytes(artifacts.ngrams_to_bytes({1: {("the",): 500}}))
        match = "ngrams.tsv.gz: sha256 does not match"
    elif damage == "delete":
        table.unlink()
        match = "ngrams.tsv.gz: missing"
    else:  # the manifest is rewritten to fit a table that does not parse: refused by line
        import gzip

        table.write_bytes(gzip.compress(b"1\tthe\t5\n2\tthe\t2\n"))
        manifest = json.loads((bad.path / artifacts.MANIFEST).read_text())
        manifest["files"][artifacts.NGRAMS] = hashlib.sha256(table.read_bytes()).hexdigest()
        (bad.path / artifacts.MANIFEST).write_text(json.dumps(manifest))
        resign(bad.path)  # as a server with a bug would publish it: signed, and still refused
        match = "ngrams.tsv.gz, line 2: expected 2 words"
    with pytest.raises(artifacts.ArtifactError, match=match):
        install.install(device, bad.path)
    assert install.installed(device).version == "0001"


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


def test_a_version_rehashed_by_someone_without_the_key_is_refused_and_the_device_keeps_its_own(tmp_path):
    import hashlib
    import json

    from common import signing

    models, device = tmp_path / "models", tmp_path / "device"
    good = _publish(models, 1)
    install.install(device, good.path)
    assert signing.pinned(device) == (tmp_path / "keys" / signing.PUBLIC_KEY).read_bytes()  # pinned at first install
    bad = _publish(models, 2)
    (bad.path / artifacts.CONFIG).write_text((bad.path / artifacts.CONFIG).read_text() + " ")
    manifest = json.loads((bad.path / artifacts.MANIFEST).read_text())
    manifest["files"][artifacts.CONFIG] = hashlib.sha256((bad.path / artifacts.CONFIG).read_bytes()).hexdigest()
    (bad.path / artifacts.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(artifacts.ArtifactError, match="manifest.sig: not the coordinator's signature"):
        install.install(device, bad.path)
    assert install.installed(device).version == good.name

    # Someone who also replaces the registry's key pair signs versions that a pinned device still refuses.
    other = tmp_path / "other-keys"
    key = signing.load_or_create(other)
    for f in (signing.PRIVATE_KEY, signing.PUBLIC_KEY):
        (tmp_path / "keys" / f).write_bytes((other / f).read_bytes())
    (bad.path / signing.SIGNATURE).write_bytes(signing.sign(key, (bad.path / artifacts.MANIFEST).read_bytes()))
    with pytest.raises(artifacts.ArtifactError, match="the key pinned on this device"):
        install.install(device, bad.path)
    (bad.path / signing.SIGNATURE).unlink()
    with pytest.raises(artifacts.ArtifactError, match="manifest.sig: missing; the version is not signed"):
        install.install(device, bad.path)
    assert install.installed(device).version == good.name


def test_enrolment_pins_the_coordinator_key_on_every_seeded_device(seeded_home):
    from common import signing
    from keyboard.store import list_device_dirs

    key = (seeded_home.keys / signing.PUBLIC_KEY).read_bytes()
    assert all(signing.pinned(d) == key for d in list_device_dirs(seeded_home.devices))
    assert oct((seeded_home.keys / signing.PRIVATE_KEY).stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("name", ["..", "../../devices", "0001/..", "", "1e3", "٣"])
def test_a_version_name_that_is_not_digits_is_refused_everywhere_and_no_device_file_is_touched(seeded_home, name):
    import json

    from common.layout import DeviceLayout
    from federated.rollout import rollout
    from keyboard.store import list_device_dirs
    from keyboard.updates import UpdateError, fetch_update

    _publish(seeded_home.models, 1)
    registry.record_decision(seeded_home.models, "0001", promoted=True, reason="first version")
    device = next(iter(list_device_dirs(seeded_home.devices)))
    install.install(device, seeded_home.models / "0001")
    before = {p.name: p.read_bytes() for p in device.iterdir() if p.is_file()}
    reg = json.loads((seeded_home.models / "registry.json").read_text())
    (seeded_home.models / "registry.json").write_text(json.dumps({**reg, "latest": name}))

    with pytest.raises(registry.RegistryError, match="is not a version name"):
        rollout(seeded_home, devices=None)  # it once deleted a device's log.sqlite with "latest": ".."
    with pytest.raises(UpdateError, match="is not a version name"):
        fetch_update(device, seeded_home.models)
    with pytest.raises(artifacts.ArtifactError, match="is not a version name"):
        install.install(device, seeded_home.models / name)
    with pytest.raises(registry.RegistryError, match="is not a version name"):
        registry.record_decision(seeded_home.models, name, promoted=True, reason="")
    assert DeviceLayout(device).db.is_file()
    assert {p.name: p.read_bytes() for p in device.iterdir() if p.is_file()} == before
    assert install.installed(device).version == "0001"
