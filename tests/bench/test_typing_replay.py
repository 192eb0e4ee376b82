"""The typing-replay benchmark on a tiny home: the real app and replay() agree, every predictor is reported,
and the home it reads is left as it was. No figure's size is asserted, only what each one is."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import typing_replay as bench

from keyboard.install import install
from keyboard.store import Device
from tests.keyboard.helpers import publish_random
from tokenizer.vocab import Tokenizer
from tokenizer.words import words


def test_app_and_replay_agree_and_every_predictor_is_reported(tmp_path, seeded_home, capsys):
    version = publish_random(seeded_home.models, proto=Tokenizer.load(seeded_home.tokenizer).model_proto)
    chosen = bench.chosen_devices(seeded_home, 2)
    for device_id, _, _ in chosen:
        install(seeded_home.device(device_id), version.path)
    logs_before = {d: Device(seeded_home.device(d)).sentences() for d, _, _ in chosen}

    bench.main(["--home", str(seeded_home.root), "--devices", "2", "--sentences", "3", "--app-devices", "1",
                "--app-sentences", "2", "--work", str(tmp_path / "work")])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    check = figures["app_check"]["devices"]
    assert [row["device"] for row in check] == [chosen[0][0]] and figures["app_check"]["all_equal"]
    assert check[0]["app"]["words"] == len(words(" ".join(chosen[0][2][:2]))) > 0
    typed_words = sum(len(words(s)) for _, _, heldout in chosen for s in heldout[:3])
    assert set(figures["predictors"]) == set(bench.PREDICTORS)
    for name, f in figures["predictors"].items():
        assert f["counts"]["words"] == f["words"] == typed_words, name
        assert f["keystroke_savings"] == pytest.approx(f["counts"]["letters_saved"] / f["counts"]["letters"], abs=1e-5)
        assert list(f["by_version"]) == (["none"] if name == "frequency" else [version.name]), name
    for device_id, log in logs_before.items():  # the bench typed on scratch copies only
        with Device(seeded_home.device(device_id)) as device:
            assert device.sentences() == log and device.live_counts() == {}


def test_a_home_without_installed_models_is_refused_by_name(tmp_path, seeded_home):
    with pytest.raises(SystemExit, match="has no model installed"):
        bench.main(["--home", str(seeded_home.root), "--devices", "1", "--app-devices", "0",
                    "--work", str(tmp_path / "work")])
