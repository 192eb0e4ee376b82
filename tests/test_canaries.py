"""Memorization measured: canaries a model can learn, planted on a few devices; DP lowers their exposure.

``fedkb audit`` plants canary sentences made of in-vocabulary words (single pieces of the home's
tokenizer, so the model *can* learn them) many times on a few devices of a small population, in a
scratch copy of the home, trains once without DP and once with DP-FedAvg (noise multiplier 1),
and ranks each canary among all |R| candidates of its format in every published version
(exposure, Carlini et al. 2019). Without DP the model memorizes the canaries (exposure well above
the ~1.4 bits of a model that learned nothing of them); with DP their exposure stays at chance.
The home itself is only read: its device logs are byte for byte the same afterwards. And no file
the training wrote under its server folder holds a planted sentence's bytes (a weaker check, kept
because a sentence copied into a log or a manifest would show there).
"""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from tests.cli_runner import fedkb

pytestmark = [pytest.mark.slow, pytest.mark.long]


def _fedkb(home, *args) -> str:
    out = fedkb(home, *args)  # in this process: TFF is imported once, not once per command
    assert out.returncode == 0, (args, out.stderr[-3000:])
    return out.stdout + out.stderr


def _digest(root) -> dict[str, str]:
    """sha256 of every file but SQLite's shared-memory index and an empty WAL, which any reader may create."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith("-shm")
            and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


def test_dp_lowers_the_exposure_of_planted_canaries(tmp_path):
    # 10 devices, 4 a round, 20 rounds, each canary 40 times on its devices: a round with a canary
    # device in it weighs it more than 8 of 16 would, so half the rounds memorize it. Measured with
    # seeds 0-5: exposure without DP 9.2-13.8 bits (controls 0.3-4.1), with DP 0.7-1.5 bits.
    from common.layout import Home
    from federated.corpus import resolve_corpus
    from federated.population import seed
    from federated.vocabulary import train_tokenizer
    from keyboard.store import Device
    from tokenizer.vocab import TokenizerConfig

    home = Home(tmp_path / "home")
    seed(home, resolve_corpus("shakespeare"), max_devices=10, min_sentences=60)
    train_tokenizer(home, TokenizerConfig(vocab_size=1000))  # the devices' summed word counts
    devices_before = _digest(home.devices)
    work = tmp_path / "work"
    out = _fedkb(home.root, "audit", "--work", work, "--preset", "small", "--rounds", 20, "--publish-every", 10,
                 "--clients-per-round", 4, "--canaries", 3, "--canary-devices", 3, "--repeats", 40,
                 "--secret-words", 2, "--space", 200, "--dp-noise", 1.0, "--seed", 0)
    result = json.loads((home.server / "audit.json").read_text())
    assert json.loads(out.strip().splitlines()[-1])["space"] == result["space"] == 200 ** 2

    # The canaries were planted in the scratch copy only, on devices that took part in training.
    assert _digest(home.devices) == devices_before
    texts = [c["text"] for c in result["canaries"]]
    for c in result["canaries"]:
        for d in c["devices"]:
            with Device(home.device(d)) as device:
                assert c["text"] not in device.sentences()
            with Device(work / "planted" / "devices" / d) as device:
                assert device.splits().train.count(c["text"]) == 40
    no_dp, dp = result["runs"]
    assert (no_dp["name"], dp["name"]) == ("no-dp", "dp-z1")
    assert all(n >= 3 for n in no_dp["rounds_with_canary_device"]), no_dp["rounds_with_canary_device"]

    # Without DP the canaries are memorized; with DP they are not.
    undefended, defended = no_dp["versions"][-1]["mean_exposure"], dp["versions"][-1]["mean_exposure"]
    control = no_dp["versions"][-1]["mean_control_exposure"]
    print(f"mean exposure of the last version: no DP {undefended:.2f} bits (unplanted controls {control:.2f}), "
          f"DP {defended:.2f} bits (max {result['max_exposure']:.2f})")
    assert undefended >= 6.0, (undefended, texts)  # a model that learned nothing: 1.44 bits on average
    assert undefended >= control + 4.0, (undefended, control)  # memorized, not merely likely English
    assert defended <= undefended - 4.0, (defended, undefended)
    assert dp["versions"][-1]["privacy"]["epsilon"] > 0

    # No file a run's server wrote (state, versions, metrics, TensorBoard, logs) holds a planted sentence.
    server_files = [p for p in (work / "no-dp" / "server").rglob("*") if p.is_file()]
    assert len(server_files) > 10
    for path in server_files:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        assert not any(t.encode() in data for t in texts), path

    report = _fedkb(home.root, "report")
    assert "Canary exposure" in report and texts[0] in report
