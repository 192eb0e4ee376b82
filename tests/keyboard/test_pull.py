"""Devices pull signed versions from the coordinator and install them only if the pinned key signed them."""

from __future__ import annotations

import numpy as np
import pytest

from common import artifacts, messages, signing, version_message
from common.layout import DeviceLayout
from federated.live_eval import LiveEvaluation
from keyboard import install, pull
from tests.keyboard.helpers import publish_random


def _server(tmp_path, min_devices=1):
    return LiveEvaluation(tmp_path / "server" / "models", tmp_path / "server" / "evals", min_devices=min_devices,
                          deadline=5.0, threshold_points=0.5)


def _ask(ev):
    return lambda header: messages.unpack(ev.version(messages.pack(header), lambda device_id: None))


def _enrolled(tmp_path, name="dev-1"):
    device = tmp_path / "devices" / name
    device.mkdir(parents=True)
    signing.pin(device, signing.public_key(tmp_path / "server" / "keys"))
    return device


def test_the_version_message_round_trips_and_a_version_the_device_has_is_not_resent(tmp_path):
    models = tmp_path / "server" / "models"
    v1 = publish_random(models)
    ev, device = _server(tmp_path), _enrolled(tmp_path)
    reply, arrays = _ask(ev)(pull.request(device))
    assert reply == {"latest": v1.name, "version": v1.name}
    files = version_message.files_from(arrays, "test")
    assert sorted(files) == sorted((*artifacts.listed_files(v1.manifest), artifacts.MANIFEST, signing.SIGNATURE))
    assert all(files[n] == (v1.path / n).read_bytes() for n in files)

    latest, now = pull.pull_latest(device, _ask(ev))
    assert latest == v1.name and now.version == v1.name and install.installed(device).version == v1.name
    assert not (DeviceLayout(device).incoming).exists()
    reply, arrays = _ask(ev)(pull.request(device))  # the device has it: only the name comes back
    assert reply == {"latest": v1.name, "version": None} and arrays == {}


def _reply_for(tmp_path, models):
    ev = _server(tmp_path)
    return messages.unpack(ev.version(messages.pack({"device_id": "dev-1", "have": None, "want": None}),
                                      lambda d: None))


@pytest.mark.parametrize("how", ["altered file", "other key", "unsigned", "extra file", "no pinned key"])
def test_a_tampered_or_missigned_pulled_version_is_refused_and_the_device_keeps_its_own(tmp_path, how):
    models = tmp_path / "server" / "models"
    v1 = publish_random(models)
    device = _enrolled(tmp_path)
    install.install(device, v1.path)
    publish_random(models, seed=1, round_num=2)
    from federated import registry

    registry.record_decision(models, "0002", promoted=True, reason="test")
    reply, arrays = _reply_for(tmp_path, models)
    assert reply["version"] == "0002"
    expected = "sha256 does not match"
    if how == "altered file":
        data = arrays[artifacts.CONFIG].tobytes().replace(b"}", b" }")
        arrays[artifacts.CONFIG] = np.frombuffer(data, np.uint8)
    elif how == "other key":
        other = signing.load_or_create(tmp_path / "other-keys")
        sig = signing.sign(other, arrays[artifacts.MANIFEST].tobytes())
        arrays[signing.SIGNATURE] = np.frombuffer(sig, np.uint8)
        expected = "the key pinned on this device"
    elif how == "unsigned":
        del arrays[signing.SIGNATURE]
        expected = "expected the files"
    elif how == "extra file":
        arrays["../../evil.sh"] = np.frombuffer(b"rm -rf /", np.uint8)
        expected = "expected the files"
    else:
        (device / signing.PINNED).unlink()
        expected = "no coordinator key is pinned"
    with pytest.raises(pull.PullRefused, match=expected) as err:
        pull.pull_latest(device, lambda header: (reply, arrays))
    assert "dev-1" in str(err.value)
    assert install.installed(device).version == v1.name
    assert not (DeviceLayout(device).incoming).exists() and not (tmp_path / "evil.sh").exists()


@pytest.mark.parametrize("name", ["..", "../x", "0001/../../x", "", "1e3", None, 7])
def test_a_version_name_that_is_not_digits_is_refused_by_the_device_and_by_the_coordinator(tmp_path, name):
    models = tmp_path / "server" / "models"
    v1 = publish_random(models)
    device = _enrolled(tmp_path)
    arrays = version_message.file_arrays(v1.path)
    if name is not None:
        with pytest.raises(pull.PullRefused, match="is not a version name"):
            pull.receive(device, {"latest": name, "version": name}, arrays, DeviceLayout(device).incoming)
        reply, _ = messages.unpack(_server(tmp_path).version(
            messages.pack({"device_id": "dev-1", "have": None, "want": name}), lambda d: None))
        assert "is not a version name" in reply["error"] and reply["version"] is None
    else:
        with pytest.raises(pull.PullRefused, match="files arrived without a version name"):
            pull.receive(device, {"latest": None, "version": None}, arrays, DeviceLayout(device).incoming)
    assert not (tmp_path / "x").exists() and install.installed(device) is None


def test_the_coordinator_offers_only_latest_and_the_version_under_evaluation(tmp_path):
    models = tmp_path / "server" / "models"
    publish_random(models)
    publish_random(models, seed=1, round_num=2, promote=False)
    reply, arrays = messages.unpack(_server(tmp_path).version(
        messages.pack({"device_id": "dev-1", "have": None, "want": "0002"}), lambda d: None))
    assert "version 0002 is not offered" in reply["error"] and arrays == {}


def test_an_evaluated_candidate_is_fetched_into_scratch_verified_and_not_installed(tmp_path):
    from federated.live_eval import EvalTask

    models = tmp_path / "server" / "models"
    v1 = publish_random(models)
    v2 = publish_random(models, seed=1, round_num=2, promote=False)
    device = _enrolled(tmp_path)
    install.install(device, v1.path)
    ev = _server(tmp_path)
    ev.task = EvalTask("e1", v2.name, v1.name)
    path = pull.fetch(device, _ask(ev), v2.name)
    assert path == device / pull.SCRATCH / v2.name and artifacts.verify(path) == v2.manifest
    assert pull.fetch(device, _ask(ev), v1.name) == install.installed(device).path  # the installed copy
    pull.discard(device)
    assert not (device / pull.SCRATCH).exists() and install.installed(device).version == v1.name
