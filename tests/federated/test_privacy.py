"""Privacy settings, the ε accountant, and DP-FedAvg rounds."""

from __future__ import annotations

import json

import pytest

from federated.privacy import PrivacyConfig, PrivacyError, RoundSample, spent
from tests import cli_runner


def test_noise_defaults_to_adaptive_clipping_and_a_number_clip_is_parsed():
    assert PrivacyConfig(dp_noise=1.0).dp_clip == "adaptive"
    assert PrivacyConfig(dp_clip="2.5").dp_clip == 2.5
    assert PrivacyConfig().dp is False and PrivacyConfig(dp_clip=1.0).dp is True


@pytest.mark.parametrize("kwargs", [{"dp_noise": -1}, {"dp_noise": float("nan")}, {"dp_clip": "often"},
                                    {"dp_clip": 0}, {"dp_clip": "-3"}, {"dp_delta": 1.5}])
def test_bad_settings_say_which_option(kwargs):
    with pytest.raises(PrivacyError, match="--dp-"):
        PrivacyConfig(**kwargs)


def test_no_noise_spends_no_accounted_epsilon():
    out = spent(PrivacyConfig(dp_clip=1.0), [RoundSample(10, 100)] * 5, 584)
    assert out["epsilon"] is None and out["delta"] == pytest.approx(1 / 584) and out["rounds"] == 5


def test_epsilon_matches_dp_accounting_for_a_known_setting():
    # Noise 1.0, q = 20/1000, 100 rounds, δ = 1e-5: RDP gives ε ≈ 1.84 (../shared/TFF-0.87-NOTES.md §2).
    out = spent(PrivacyConfig(dp_noise=1.0, dp_delta=1e-5), [RoundSample(20, 1000)] * 100, 1000)
    assert out["epsilon"] == pytest.approx(1.84, abs=0.02)
    assert out["accountant"] == "rdp" and out["noise_multiplier"] == 1.0 and out["rounds"] == 100
    assert out["epsilon_fixed_size"] > out["epsilon"]  # replace-one with sensitivity 2C is stricter


def test_epsilon_grows_with_rounds_and_sampling_and_shrinks_with_noise():
    base = spent(PrivacyConfig(dp_noise=1.0), [RoundSample(10, 200)] * 20, 584)["epsilon"]
    assert spent(PrivacyConfig(dp_noise=1.0), [RoundSample(10, 200)] * 40, 584)["epsilon"] > base
    assert spent(PrivacyConfig(dp_noise=1.0), [RoundSample(20, 200)] * 20, 584)["epsilon"] > base
    assert spent(PrivacyConfig(dp_noise=2.0), [RoundSample(10, 200)] * 20, 584)["epsilon"] < base


@pytest.mark.slow
def test_dp_training_reports_epsilon_in_the_version_eval_json_and_report(seeded_home, tmp_path):
    def fedkb(*args):
        return cli_runner.fedkb(seeded_home.root, *args)

    out = fedkb("train", "--rounds", "3", "--preset", "tiny", "--clients-per-round", "4", "--dp-noise", "0.5",
                "--publish-every", "3")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ε =" in out.stdout
    header = (seeded_home.metrics_csv).read_text().splitlines()[0]
    assert "aggregator/" in header and "clip" in header  # the adaptive clip norm, per round
    # A resumed run must keep the privacy settings.
    refused = fedkb("train", "--rounds", "4", "--preset", "tiny", "--clients-per-round", "4")
    assert refused.returncode == 1 and "dp_noise" in refused.stderr
    out = fedkb("eval", "--version", "0001", "--devices", "20", "--no-baselines", "--json", str(tmp_path / "eval.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    privacy = result["privacy"]
    assert privacy["epsilon"] > 0 and privacy["noise_multiplier"] == 0.5 and privacy["rounds"] == 3
    assert privacy["delta"] == pytest.approx(60 ** -1.1) and "RDP" in privacy["accountant"]
    assert "secret key" in privacy["sampling"] and "add or remove one device" in privacy["adjacency"]
    ledger = result["privacy_ledger"]
    assert ledger["epsilon"] is None  # the bundled tokenizer's vocabulary was a plain sum here: no DP bound
    assert [p["part"] for p in ledger["outside_epsilon"]] == ["per-round metrics", "evaluation sums"]
    report = fedkb("report")
    assert report.returncode == 0 and "ε = " in report.stdout and "privacy ledger: total" in report.stdout


def test_secure_aggregation_with_adaptive_clipping_is_refused_with_the_fix():
    with pytest.raises(PrivacyError, match="--dp-clip"):
        PrivacyConfig(dp_noise=1.0, secure_agg=True)
    assert PrivacyConfig(dp_noise=1.0, dp_clip=0.5, secure_agg=True).dp_clip == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--dp-noise", "0.5", "--dp-clip", "0.5"]], ids=["secure", "secure+dp"])
def test_fedkb_train_with_secure_aggregation(seeded_home, extra):

    out = cli_runner.fedkb(seeded_home.root, "train", "--rounds", "2", "--preset", "tiny", "--clients-per-round", "4",
                           "--secure-agg", *extra)
    assert out.returncode == 0, out.stderr[-3000:]
    from federated import ledger

    rows = ledger.round_metrics(seeded_home.server)
    assert [int(r["round"]) for r in rows] == [1, 2] and all(float(r["loss"]) > 0 for r in rows)
    run = json.loads((seeded_home.state / "run.json").read_text())
    assert run["privacy"]["secure_agg"] is True
