"""Damaged or tampered published versions: detected, named, and never taking a device's working model.

Two kinds of damage: files that no longer match the manifest (truncated, altered, missing), and
files that match a manifest rewritten to fit them but do not belong together (a tokenizer of
another model). Devices keep their working version; ``fedkb eval`` and ``fedkb rollout`` refuse
with an error that names the file and that the command line prints without a traceback.
"""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from common import artifacts
from common.errors import FedkbError
from common.layout import DeviceLayout
from federated import registry
from keyboard import install
from keyboard.app import KeyboardApp
from keyboard.mix import ProductPredictor
from keyboard.predictor import FrequencyPredictor, load_predictor
from keyboard.store import Device
from keyboard.updates import fetch_update
from tests.fakes import resign
from tests.keyboard.helpers import WORDS, publish_random
from tokenizer.vocab import TokenizerConfig, train_from_counts


def _damage(version: Path, name: str, how: str) -> None:
    path = version / name
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":  # one byte in the middle: the file still has its size and usually parses
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0x5A]) + data[mid + 1:])
    elif how == "delete":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise ValueError(how)


def _replace_and_resign(version: Path, name: str, data: bytes) -> None:
    """Puts ``data`` in place of ``name`` and rewrites the manifest to match: only coherence checks can tell."""
    (version / name).write_bytes(data)
    manifest_path = version / artifacts.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    resign(version)  # signed by the coordinator's own key: only the coherence checks can tell


def _other_tokenizer(vocab_size: int = 40) -> bytes:
    counts = collections.Counter({w: 3 + i for i, w in enumerate(reversed(WORDS))})
    return train_from_counts(counts, TokenizerConfig(vocab_size=vocab_size))


@pytest.fixture
def device_with_v1(tmp_path):
    """A device running version 0001; the server has just published 0002."""
    models, device_dir = tmp_path / "models", tmp_path / "devices" / "d1"
    v1 = publish_random(models, seed=1)
    v2 = publish_random(models, seed=2, promote=False)
    Device(device_dir, create=True).close()
    install.install(device_dir, v1.path)
    return models, device_dir, v1, v2


def _assert_keeps_v1(device_dir: Path) -> None:
    current = install.installed(device_dir)
    assert current.version == "0001" and not current.fell_back
    assert install.read_pointer(device_dir)["current"] == "0001"
    assert not [p for p in (device_dir / "model").iterdir() if p.name.startswith(".incoming")]
    predictor = load_predictor(device_dir)
    assert isinstance(predictor, ProductPredictor) and predictor.version == "0001"
    assert isinstance(predictor.suggest("the ", 3), list)


def _listed(version) -> list[str]:
    return [n for n in (*artifacts.FILES, *artifacts.OPTIONAL_FILES) if n in version.manifest["files"]]


# -- files that no longer match the manifest -----------------------------------------------------------
@pytest.mark.parametrize("how", ["truncate", "flip", "delete", "empty"])
def test_a_damaged_file_is_refused_naming_it_and_the_device_keeps_its_version(device_with_v1, how):
    _models, device_dir, _, v2 = device_with_v1
    for name in _listed(v2):
        backup = (v2.path / name).read_bytes()
        _damage(v2.path, name, how)
        with pytest.raises(artifacts.ArtifactError, match=f"{v2.path / name}: "):
            install.install(device_dir, v2.path)
        _assert_keeps_v1(device_dir)
        (v2.path / name).write_bytes(backup)
    assert install.install(device_dir, v2.path).version == "0002"  # undamaged, it installs


@pytest.mark.parametrize("manifest", [None, "", "{not json", "[]", '{"files": []}', '{"files": {}}'],
                         ids=["missing", "empty", "not-json", "a-list", "files-not-a-map", "no-entries"])
def test_a_missing_or_broken_manifest_is_refused_naming_it(device_with_v1, manifest):
    _, device_dir, _, v2 = device_with_v1
    path = v2.path / artifacts.MANIFEST
    if manifest is None:
        path.unlink()
    else:
        path.write_text(manifest)
    with pytest.raises(artifacts.ArtifactError, match=str(path)):
        install.install(device_dir, v2.path)
    _assert_keeps_v1(device_dir)


def test_the_keyboard_keeps_suggesting_from_its_version_when_the_promoted_one_is_damaged(device_with_v1):
    import asyncio

    models, device_dir, _, v2 = device_with_v1
    registry.record_decision(models, v2.name, promoted=True, reason="test")
    _damage(v2.path, artifacts.WEIGHTS, "flip")
    with pytest.raises(artifacts.ArtifactError, match="weights.npz"):
        fetch_update(device_dir, models)
    _assert_keeps_v1(device_dir)

    async def session() -> list[str]:
        with Device(device_dir) as device:
            app = KeyboardApp(device, load_predictor(device_dir), predictor_factory=load_predictor,
                              models_dir=models, charging=lambda: None, train_command=None)
            async with app.run_test(notifications=True) as pilot:
                await pilot.press("ctrl+r")
                for _ in range(3):
                    await app.workers.wait_for_complete()
                    await pilot.pause()
                assert app.predictor.version == "0001"
                await pilot.press(*"the cat", "enter")
                await pilot.pause()
                return [n.message for n in app._notifications if n.title == "Model update failed"]

    notices = asyncio.run(session())
    assert notices and "weights.npz" in notices[0]
    _assert_keeps_v1(device_dir)


# -- files that match a rewritten manifest but do not belong together -------------------------------
def test_a_tokenizer_of_another_model_is_refused(device_with_v1):
    _, device_dir, _, v2 = device_with_v1
    _replace_and_resign(v2.path, artifacts.TOKENIZER, _other_tokenizer())
    with pytest.raises(artifacts.ArtifactError, match=r"spm\.model: has 40 pieces but .*model\.json gives the model"):
        install.install(device_dir, v2.path)
    _assert_keeps_v1(device_dir)


@pytest.mark.parametrize("name, data, message", [
    (artifacts.TOKENIZER, b"not a sentencepiece model", "not a SentencePiece model"),
    (artifacts.CONFIG, b"{not json", "unreadable model config"),
    (artifacts.CONFIG, b'{"embedding_dim": 8}', "unreadable model config"),
    (artifacts.WEIGHTS, b"PK\x03\x04 truncated zip", "unreadable weights"),
])
def test_resigned_garbage_is_refused_naming_the_file(device_with_v1, name, data, message):
    _, device_dir, _, v2 = device_with_v1
    _replace_and_resign(v2.path, name, data)
    with pytest.raises(artifacts.ArtifactError, match=f"{v2.path / name}: .*{message}"):
        install.install(device_dir, v2.path)
    _assert_keeps_v1(device_dir)


def test_weights_of_another_vocabulary_are_refused(device_with_v1):
    _, device_dir, _, v2 = device_with_v1
    with np.load(v2.path / artifacts.WEIGHTS) as npz:
        weights = {k: npz[k] for k in npz.files}
    weights["embedding/embeddings"] = np.zeros((7, weights["embedding/embeddings"].shape[1]), np.float32)
    import io

    buf = io.BytesIO()
    np.savez(buf, **weights)
    _replace_and_resign(v2.path, artifacts.WEIGHTS, buf.getvalue())
    with pytest.raises(artifacts.ArtifactError, match=r"weights\.npz: embedding/embeddings has shape \(7, 8\)"):
        install.install(device_dir, v2.path)
    _assert_keeps_v1(device_dir)


# -- the copies on the device ----------------------------------------------------------------------
def test_a_damaged_installed_copy_falls_back_and_then_to_word_counts(device_with_v1):
    _, device_dir, _, v2 = device_with_v1
    install.install(device_dir, v2.path)
    _damage(device_dir / "model" / "0002", artifacts.WEIGHTS, "truncate")
    got = install.installed(device_dir)
    assert got.version == "0001" and got.fell_back
    assert load_predictor(device_dir).version == "0001"
    (device_dir / "model" / "0001" / artifacts.MANIFEST).unlink()
    assert install.installed(device_dir) is None
    fallback = load_predictor(device_dir)
    assert isinstance(fallback, FrequencyPredictor)
    # Reinstalling the good server copy repairs the device.
    assert install.install(device_dir, v2.path).version == "0002"
    assert install.installed(device_dir).version == "0002" and not install.installed(device_dir).fell_back


@pytest.mark.parametrize("pointer", [b"", b"{not json", b"\xff\xfe", b"[]", b'{"current": 7}',
                                     b'{"current": "../../../etc"}', b'{"current": "0009"}'],
                         ids=["empty", "not-json", "not-utf8", "a-list", "a-number", "outside", "not-installed"])
def test_a_damaged_pointer_reads_as_nothing_installed_and_a_reinstall_repairs_it(device_with_v1, pointer):
    _, device_dir, _, v2 = device_with_v1
    DeviceLayout(device_dir).installed_pointer.write_bytes(pointer)
    assert install.installed(device_dir) is None
    assert isinstance(load_predictor(device_dir), FrequencyPredictor)  # typing goes on without a model
    assert install.install(device_dir, v2.path).version == "0002"
    assert install.installed(device_dir).version == "0002"


# -- fedkb eval and fedkb rollout ---------------------------------------------------------------------
@pytest.fixture
def no_tff(monkeypatch):
    """Refusals come before any federated computation; reaching one would start TFF's own worker."""
    from federated import evaluation

    def refuse(vectors):
        raise AssertionError("a damaged version reached federated evaluation")

    monkeypatch.setattr(evaluation, "federated_sum", refuse)


@pytest.fixture(scope="module")
def _rolled_out_home(tmp_path_factory) -> Path:
    """Built once: 60 seeded devices, version 0001 promoted and installed on every one of them."""
    from common.layout import Home
    from federated.population import seed
    from federated.rollout import rollout
    from federated.vocabulary import train_tokenizer
    from tests.conftest import synthetic_corpus

    root = tmp_path_factory.mktemp("rolled-out")
    home = Home(root / "home")
    seed(home, synthetic_corpus(root / "synthetic.jsonl"))
    train_tokenizer(home, TokenizerConfig(vocab_size=64))
    publish_random(home.models, seed=1, proto=(home.tokenizer / "spm.model").read_bytes())
    report = rollout(home, devices=5)  # nothing undecided: installs latest, no evaluation
    assert report.latest == "0001" and not report.failed
    return home.root


@pytest.fixture
def eval_home(_rolled_out_home, tmp_path, no_tff):
    """A copy of the rolled-out home, with 0002 published and not yet decided."""
    import shutil

    from common.layout import Home

    home = Home(tmp_path / "home")
    shutil.copytree(_rolled_out_home, home.root)
    v2 = publish_random(home.models, seed=2, promote=False, proto=(home.tokenizer / "spm.model").read_bytes())
    return home, registry.verify(home.models / "0001"), v2


@pytest.mark.parametrize("name, how", [(artifacts.WEIGHTS, "truncate"), (artifacts.WEIGHTS, "flip"),
                                       (artifacts.MANIFEST, "delete"), (artifacts.TOKENIZER, "flip"),
                                       (artifacts.CONFIG, "empty")])
def test_eval_refuses_a_damaged_version_naming_the_file(eval_home, name, how):
    from federated.rollout import run_eval

    home, _, v2 = eval_home
    _damage(v2.path, name, how)
    with pytest.raises(registry.RegistryError, match=str(v2.path / name)) as info:
        run_eval(home, version=v2.name)
    assert isinstance(info.value, FedkbError)
    assert not (home.server / "evals" / f"{v2.name}.json").exists()


def test_eval_refuses_a_version_whose_tokenizer_is_of_another_model(eval_home):
    from federated.rollout import run_eval

    home, _, v2 = eval_home
    _replace_and_resign(v2.path, artifacts.TOKENIZER, _other_tokenizer())
    with pytest.raises(Exception, match=str(v2.path / artifacts.TOKENIZER)) as info:
        run_eval(home, version=v2.name)
    assert isinstance(info.value, FedkbError), repr(info.value)


def test_rollout_refuses_a_damaged_candidate_and_devices_keep_latest(eval_home):
    from federated.population import members
    from federated.rollout import rollout

    home, _v1, v2 = eval_home
    _damage(v2.path, artifacts.WEIGHTS, "flip")
    with pytest.raises(Exception, match=str(v2.path / artifacts.WEIGHTS)) as info:
        rollout(home, devices=5)
    assert isinstance(info.value, FedkbError)
    assert registry.read_registry(home.models)["latest"] == "0001"
    for m in members(home)[:5]:
        assert install.installed(home.device(m.device_id)).version == "0001"


@pytest.mark.parametrize("damage", ["flip", "foreign-tokenizer"])
def test_rollout_never_promotes_a_damaged_first_version(seeded_home, no_tff, damage):
    from federated.rollout import RolloutError, rollout

    v1 = publish_random(seeded_home.models, seed=1, promote=False,
                        proto=(seeded_home.tokenizer / "spm.model").read_bytes())
    if damage == "flip":
        _damage(v1.path, artifacts.WEIGHTS, "flip")
    else:
        _replace_and_resign(v1.path, artifacts.TOKENIZER, _other_tokenizer())
    with pytest.raises((registry.RegistryError, RolloutError, artifacts.ArtifactError), match=str(v1.path)) as info:
        rollout(seeded_home, devices=5)
    assert isinstance(info.value, FedkbError)
    assert registry.read_registry(seeded_home.models)["latest"] is None


# -- the same refusals through the command line: one line on stderr, exit code 1, no traceback ----------
@pytest.mark.slow
@pytest.mark.parametrize("command, damage", [
    (["eval", "--version", "0002", "--no-baselines"], "flip-weights"),
    (["eval", "--version", "0002", "--no-baselines"], "delete-manifest"),
    (["eval", "--version", "0002", "--no-baselines"], "foreign-tokenizer"),
    (["rollout", "--devices", "20"], "flip-weights"),
])
def test_fedkb_eval_and_rollout_refuse_naming_the_file(eval_home, command, damage):
    from tests.cli_runner import fedkb

    home, _, v2 = eval_home
    if damage == "flip-weights":
        _damage(v2.path, artifacts.WEIGHTS, "flip")
        named = v2.path / artifacts.WEIGHTS
    elif damage == "delete-manifest":
        _damage(v2.path, artifacts.MANIFEST, "delete")
        named = v2.path / artifacts.MANIFEST
    else:
        _replace_and_resign(v2.path, artifacts.TOKENIZER, _other_tokenizer())
        named = v2.path / artifacts.TOKENIZER
    proc = fedkb(home.root, *command)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("fedkb: error: ") and str(named) in proc.stderr, proc.stderr[-2000:]
    assert registry.read_registry(home.models)["latest"] == "0001"


# -- rollbacks --------------------------------------------------------------------------------------
def _two_versions_installed(seeded_home):
    v1 = publish_random(seeded_home.models, seed=1)
    v2 = publish_random(seeded_home.models, seed=2)
    from keyboard.store import list_device_dirs

    device_dir = next(iter(list_device_dirs(seeded_home.devices)))
    install.install(device_dir, v1.path)
    install.install(device_dir, v2.path)
    return device_dir, v1, v2


def test_a_device_refuses_an_older_version_unless_the_registry_records_a_signed_rollback(seeded_home):
    device_dir, v1, v2 = _two_versions_installed(seeded_home)
    # Someone points latest back at the older (validly signed) version: the device keeps 0002.
    reg = registry.read_registry(seeded_home.models)
    (seeded_home.models / "registry.json").write_text(json.dumps({**reg, "latest": v1.name}))
    with pytest.raises(artifacts.ArtifactError, match="refused to roll back from version 0002 to 0001: the registry "
                                                      "records no rollback"):
        fetch_update(device_dir, seeded_home.models)
    assert install.installed(device_dir).version == "0002"
    # A forged record (signed by another key) is refused too.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from common import signing

    forged = signing.sign_rollback(Ed25519PrivateKey.generate(), v1.name, v2.name)
    (seeded_home.models / "registry.json").write_text(json.dumps({**reg, "latest": v1.name,
                                                                  "rollbacks": {v1.name: forged}}))
    with pytest.raises(artifacts.ArtifactError, match="not signed by the coordinator key pinned"):
        fetch_update(device_dir, seeded_home.models)
    assert install.installed(device_dir).version == "0002"
    # The coordinator's own rollback installs.
    (seeded_home.models / "registry.json").write_text(json.dumps(reg))
    record = registry.roll_back(seeded_home.models, v1.name, reason="test")
    assert record["from"] == v2.name and record["upto"] == v2.name
    assert fetch_update(device_dir, seeded_home.models).version == "0001"


def test_a_signed_rollback_cannot_be_replayed_against_a_version_published_after_it(seeded_home):
    device_dir, v1, _v2 = _two_versions_installed(seeded_home)
    registry.roll_back(seeded_home.models, v1.name, reason="test")
    v3 = publish_random(seeded_home.models, seed=3)  # promoted: latest is 0003
    assert fetch_update(device_dir, seeded_home.models).version == "0003"
    reg = registry.read_registry(seeded_home.models)
    (seeded_home.models / "registry.json").write_text(json.dumps({**reg, "latest": v1.name}))  # replay
    with pytest.raises(artifacts.ArtifactError, match="covers versions up to 0002 only, and this device runs the "
                                                      "newer 0003"):
        fetch_update(device_dir, seeded_home.models)
    assert install.installed(device_dir).version == v3.name


def test_roll_back_only_goes_back(seeded_home):
    v1 = publish_random(seeded_home.models, seed=1)
    with pytest.raises(registry.RegistryError, match="not older than latest"):
        registry.roll_back(seeded_home.models, v1.name, reason="")
    with pytest.raises(registry.RegistryError, match="rollbacks"):
        reg = registry.read_registry(seeded_home.models)
        (seeded_home.models / "registry.json").write_text(json.dumps({**reg, "rollbacks": {"../x": {}}}))
        registry.read_registry(seeded_home.models)
