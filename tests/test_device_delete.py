"""`fedkb device delete` (the command line's F8) and the references options, without TensorFlow."""

from __future__ import annotations

import subprocess

from common.layout import Home
from keyboard.store import Device, new_device_id
from tests.cli_runner import fedkb


def _fedkb(home: Home, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return fedkb(home.root, *args, stdin=stdin)


def _device_with_references(home: Home) -> str:
    device_id = new_device_id()
    with Device(home.device(device_id), create=True) as device:
        device.set(user="Ada Lovelace")
        device.append("a sentence to forget")
    (home.device(device_id) / "personal").mkdir()
    (home.references / "centralized_lstm").mkdir(parents=True)
    (home.references / "pooled.json").write_text('{"devices": 1}')
    return device_id


def test_delete_asks_first_and_a_no_keeps_everything(tmp_path):
    home = Home(tmp_path / "home")
    device_id = _device_with_references(home)
    out = _fedkb(home, "device", "delete", "--device", device_id, stdin="n\n")
    assert out.returncode == 0, out.stderr
    assert "Delete all 1 sentence" in out.stdout and str(home.references) in out.stdout
    assert "Nothing was deleted" in out.stdout and home.references.exists()
    with Device(home.device(device_id)) as device:
        assert device.count() == 1


def test_delete_by_user_removes_the_log_personal_model_and_references(tmp_path):
    home = Home(tmp_path / "home")
    device_id = _device_with_references(home)
    out = _fedkb(home, "device", "delete", "--user", "Ada Lovelace", stdin="y\n")
    assert out.returncode == 0, out.stderr
    assert f"device {device_id}: deleted 1 sentences, its personal model and the references" in out.stdout
    assert not home.references.exists() and not (home.device(device_id) / "personal").exists()
    with Device(home.device(device_id)) as device:
        assert device.count() == 0 and device.get("user") == "Ada Lovelace"


def test_delete_names_an_unknown_user_or_device(tmp_path):
    home = Home(tmp_path / "home")
    _device_with_references(home)
    out = _fedkb(home, "device", "delete", "--user", "nobody", "--yes")
    assert out.returncode == 1 and "no device under" in out.stderr and "'nobody'" in out.stderr
    out = _fedkb(home, "device", "delete", "--device", "dev-0000000000000000", "--yes")
    assert out.returncode == 1 and "no device at" in out.stderr and home.references.exists()


def test_references_are_off_by_default_in_eval_and_demo():
    from fedkb.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["eval"]).references is False
    assert parser.parse_args(["eval", "--references"]).references is True
    assert parser.parse_args(["demo"]).references is False
    assert parser.parse_args(["demo", "--references"]).references is True
    assert parser.parse_args(["eval", "--no-baselines"]).references is False  # old scripts still run
