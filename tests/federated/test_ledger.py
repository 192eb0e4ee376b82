"""The privacy ledger: every release counted (re-runs twice), ε for what ran, parts and total."""

from __future__ import annotations

import json

import dp_accounting
import pytest
from dp_accounting import rdp

from federated import ledger
from tests.cli_runner import fedkb


def _round(n, *, q=0.02, noise=1.0, sampling="poisson-secret", run="r1", clients=10, metrics_released=False):
    return {"kind": "round", "run_id": run, "round": n, "q": q, "noise": noise, "sampling": sampling,
            "clients": clients, "population": 1000, "metrics_released": metrics_released, "metrics": {"loss": 5.0 - n}}


def test_default_delta_is_one_over_n_to_the_1_1():
    assert ledger.default_delta(146) == pytest.approx(146 ** -1.1)
    assert ledger.default_delta(146) < 1 / 146 and ledger.default_delta(0) == 1.0


def test_secret_poisson_rounds_match_dp_accounting():
    # Noise 1.0, q = 20/1000, 100 rounds, δ = 1e-5: RDP gives ε ≈ 1.84 (../shared/TFF-0.87-NOTES.md §2).
    out = ledger.training_spent([_round(n) for n in range(1, 101)], delta=1e-5)
    assert out["epsilon"] == out["epsilon_amplified"] == pytest.approx(1.84, abs=0.02)
    assert out["rounds"] == 100 and out["reruns"] == 0 and out["rounds_amplified"] == 100
    plain = rdp.RdpAccountant().compose(dp_accounting.GaussianDpEvent(1.0), 100).get_epsilon(1e-5)
    assert out["epsilon_without_amplification"] == pytest.approx(plain)


def test_public_sampling_reports_the_unamplified_epsilon_as_the_one_that_holds():
    out = ledger.training_spent([_round(n, sampling="poisson-public") for n in range(1, 61)], delta=1e-5)
    assert out["epsilon"] == out["epsilon_without_amplification"] > out["epsilon_amplified"]
    assert out["rounds_amplified"] == 0


def test_first_come_live_rounds_are_not_amplified():
    mixed = [_round(1), _round(2, sampling="first-come", q=1.0)]
    out = ledger.training_spent(mixed, delta=1e-5)
    only_secret = ledger.training_spent([_round(1), _round(2)], delta=1e-5)
    assert out["epsilon"] > only_secret["epsilon"]


def test_a_round_re_run_after_a_crash_is_counted_twice(tmp_path):
    for entry in [_round(1), _round(2), _round(2), _round(3)]:  # round 2 ran, crashed, ran again
        ledger.append(tmp_path, entry)
    rounds = ledger.entries(tmp_path, "round")
    out = ledger.training_spent(rounds, delta=1e-5)
    once = ledger.training_spent([_round(1), _round(2), _round(3)], delta=1e-5)
    assert out["rounds"] == 4 and out["reruns"] == 1 and out["epsilon"] > once["epsilon"]
    assert [m["round"] for m in ledger.round_metrics(tmp_path)] == [1, 2, 3]


def test_a_round_without_noise_leaves_epsilon_unbounded():
    out = ledger.training_spent([_round(1), _round(2, noise=0.0)], delta=1e-5)
    assert out["epsilon"] is None


def test_total_adds_vocabulary_and_training_and_lists_releases_outside_epsilon(tmp_path):
    ledger.append(tmp_path, {"kind": "vocabulary", "method": "heavy_hitters", "epsilon": 2.0, "delta": 1e-6})
    for n in range(1, 11):
        ledger.append(tmp_path, _round(n))
    ledger.append(tmp_path, {"kind": "evaluation", "version": "0001", "devices": 25, "live": False})
    total = ledger.total(tmp_path, dp_delta=1e-5)
    training = ledger.training_spent([_round(n) for n in range(1, 11)], delta=1e-5)["epsilon"]
    assert total["epsilon"] == pytest.approx(2.0 + training)
    assert total["delta"] == pytest.approx(1e-6 + 1e-5)
    assert [p["part"] for p in total["parts"]] == ["vocabulary", "training"]
    assert [o["part"] for o in total["outside_epsilon"]] == ["per-round metrics", "evaluation sums"]
    assert total["outside_epsilon"][0]["withheld"] == 10
    lines = ledger.describe(total)
    assert lines[0].startswith("privacy ledger: total ε = ") and "add or remove one device" in lines[0]
    assert any("vocabulary: ε = 2" in line for line in lines) and any("training: ε = " in line for line in lines)
    assert any("evaluation sums: 1 released" in line and "(fewest 25)" in line for line in lines)


def test_vocabulary_without_dp_makes_the_total_unbounded(tmp_path):
    ledger.append(tmp_path, {"kind": "vocabulary", "method": "plain_sum", "epsilon": None, "delta": 0.0})
    ledger.append(tmp_path, _round(1))
    total = ledger.total(tmp_path)
    assert total["epsilon"] is None and "unbounded" in total["note"]
    assert "unbounded (no DP)" in ledger.describe(total)[0]


def test_a_torn_last_line_is_skipped_and_a_bad_line_inside_is_named(tmp_path):
    ledger.append(tmp_path, _round(1))
    path = tmp_path / "state" / ledger.LEDGER_FILE
    with open(path, "a") as f:
        f.write('{"kind": "rou')
    assert len(ledger.entries(tmp_path)) == 1
    with open(path, "a") as f:
        f.write("\n" + json.dumps(_round(2)) + "\n")
    with pytest.raises(ledger.LedgerError, match=r"ledger.jsonl, line 2"):
        ledger.entries(tmp_path)


@pytest.mark.parametrize("metrics, noise, expect", [
    ({"loss": 4.0, "num_tokens": 900.0, "clients": 25, "round_seconds": 2.0}, 0.0,
     {"loss", "num_tokens", "clients", "round_seconds"}),
    ({"loss": 4.0, "num_tokens": 900.0, "clients": 19, "round_seconds": 2.0, "eligible_devices": 80}, 0.0,
     {"round_seconds", "eligible_devices"}),
    ({"loss": 4.0, "clients": 40, "round_seconds": 2.0, "aggregator/dp/clip": 0.1}, 1.0,
     {"round_seconds", "aggregator/dp/clip"}),
])
def test_round_metrics_are_released_only_from_enough_devices_and_never_from_a_dp_round(metrics, noise, expect):
    assert set(ledger.releasable_metrics(metrics, dp_noise=noise)) == expect


def test_eval_below_the_minimum_of_devices_is_refused_before_anything_runs(home):
    out = fedkb(home.root, "eval", "--devices", "1")
    assert out.returncode == 1
    assert "--devices 1: evaluation sums are released only from at least 20 devices" in out.stderr


def test_the_simulations_evaluation_refuses_fewer_than_20_devices(seeded_home):
    from federated.evaluation import TooFewDevices, check_min_devices, evaluate

    check_min_devices(20, "x")
    with pytest.raises(TooFewDevices, match="evaluating version 0001: 5 device"):
        evaluate(seeded_home, [f"d{i}" for i in range(5)], "0001", seeded_home.models / "0001")


def test_gathering_the_vocabulary_enters_the_ledger(seeded_home):
    # seeded_home's tokenizer was trained from the devices' plain word counts: no DP.
    (entry,) = ledger.entries(seeded_home.server, "vocabulary")
    assert entry["method"] == "plain_sum" and entry["epsilon"] is None and entry["devices"] == 60
    assert ledger.total(seeded_home.server)["parts"][0]["what"] == "vocabulary counts: plain_sum, no DP"


def test_dp_ftrl_rounds_are_accounted_by_the_tree_accountant_without_amplification(tmp_path):
    from federated import ftrl

    rounds = [{**_round(n, noise=4.0), "mechanism": "ftrl", "min_separation": 10} for n in range(1, 31)]
    out = ledger.training_spent(rounds, delta=1e-10)
    rho = ftrl.zcdp(4.0, 30, 10)
    assert out["rho"] == pytest.approx(rho) and out["min_separation"] == 10
    assert out["epsilon"] == out["epsilon_without_amplification"] == pytest.approx(ftrl.epsilon_from_zcdp(rho, 1e-10))
    assert out["rounds_amplified"] == 0  # Poisson-drawn or not, no amplification is claimed
    # DP-FedAvg rounds in the same ledger add by basic composition, with their own δ.
    mixed = ledger.training_spent([*rounds, _round(31)], delta=1e-10)
    assert mixed["epsilon"] > out["epsilon"] and mixed["delta"] == pytest.approx(2e-10)
    for entry in rounds:
        ledger.append(tmp_path, entry)
    lines = " ".join(ledger.describe(ledger.total(tmp_path, dp_delta=1e-10)))
    assert f"ρ = {rho:.3g} (zCDP)" in lines and "at most once every 10 rounds" in lines
