"""DP-FTRL: its settings, the minimum separation in the selection, the tree accountant, and training."""

from __future__ import annotations

import argparse
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federated import ftrl
from federated.privacy import PrivacyConfig, PrivacyError, RoundSample, spent

FTRL = dict(dp_mechanism="ftrl", dp_noise=2.0, dp_clip=0.5, min_separation=5)


# -- settings -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(FTRL, min_separation=None), "--min-separation B"),
    (dict(FTRL, min_separation=0), "--min-separation B"),
    (dict(FTRL, dp_noise=0.0), "--dp-noise Z > 0"),
    (dict(FTRL, dp_clip=None), "fixed --dp-clip C"),
    (dict(FTRL, dp_clip="adaptive"), "fixed --dp-clip C"),
    (dict(FTRL, secure_agg=True), "--secure-agg"),
    (dict(dp_noise=1.0, min_separation=5), "--min-separation belongs to --dp-mechanism ftrl"),
    (dict(FTRL, dp_mechanism="laplace"), "--dp-mechanism must be one of"),
])
def test_bad_ftrl_combinations_say_which_options(kwargs, message):
    with pytest.raises(PrivacyError, match=message):
        PrivacyConfig(**kwargs)


def test_gaussian_settings_are_recorded_as_before_ftrl_existed():
    # run.json of an older checkpoint has no mechanism keys; the same settings must still resume.
    assert "dp_mechanism" not in PrivacyConfig(dp_noise=1.0).as_dict()
    config = PrivacyConfig(**FTRL)
    assert config.ftrl and config.as_dict()["min_separation"] == 5
    assert PrivacyConfig.from_dict(config.as_dict()) == config


def _cli_args(*argv: str) -> argparse.Namespace:
    from fedkb.cli import build_parser

    return build_parser().parse_args(["train", "--rounds", "3", *argv])


@pytest.mark.parametrize("argv, message", [
    (("--dp-mechanism", "ftrl", "--dp-noise", "1", "--dp-clip", "0.5", "--min-separation", "4"),
     "--server-optimizer sgdm"),
    (("--dp-mechanism", "ftrl", "--dp-noise", "1", "--server-optimizer", "sgdm", "--min-separation", "4"),
     "fixed --dp-clip C"),
    (("--dp-mechanism", "ftrl", "--dp-noise", "1", "--dp-clip", "0.5", "--server-optimizer", "sgdm"),
     "--min-separation B"),
    (("--dp-noise", "1", "--min-separation", "4"), "belongs to --dp-mechanism ftrl"),
])
def test_cli_refuses_bad_combinations_with_a_user_error(argv, message):
    from fedkb.options import UserError, privacy_config_from

    with pytest.raises(UserError, match=message):
        privacy_config_from(_cli_args(*argv))


def test_cli_builds_the_ftrl_config():
    from fedkb.options import privacy_config_from

    args = _cli_args("--dp-mechanism", "ftrl", "--dp-noise", "1.5", "--dp-clip", "0.3", "--min-separation", "4",
                     "--server-optimizer", "sgdm")
    assert privacy_config_from(args) == PrivacyConfig(dp_mechanism="ftrl", dp_noise=1.5, dp_clip=0.3, min_separation=4)


# -- the tree accountant -------------------------------------------------------------------------
@pytest.mark.parametrize("rounds", [1, 7, 8, 30, 60])
def test_single_participation_matches_dp_accounting_tree_event(rounds):
    # With b ≥ T every device takes part once: dp_accounting's own single-epoch tree event applies.
    import dp_accounting
    from dp_accounting import rdp

    out = spent(PrivacyConfig(**dict(FTRL, min_separation=rounds), dp_delta=1e-10), [RoundSample(10, 100)] * rounds, 500)
    direct = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    direct.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(2.0, rounds))
    assert out["max_participations"] == 1 and out["mechanism"] == "ftrl"
    assert out["rho"] == pytest.approx(math.ceil(math.log2(rounds + 1)) / (2 * 2.0 ** 2))
    assert out["epsilon"] == pytest.approx(direct.get_epsilon(1e-10), rel=1e-9)


def test_repeated_participation_matches_the_tree_accountant_and_gaussian_conversion():
    import dp_accounting
    from dp_accounting import rdp
    from tensorflow_privacy.privacy.analysis import tree_aggregation_accountant as tree

    out = spent(PrivacyConfig(**dict(FTRL, dp_noise=4.0, min_separation=20), dp_delta=1e-10),
                [RoundSample(10, 100)] * 60, 500)
    rho = tree.compute_zcdp_single_tree(4.0, 60, 3, 19)  # ⌈60 / 20⌉ participations, 19 rounds between
    assert out["max_participations"] == 3 and out["rho"] == pytest.approx(rho)
    direct = rdp.RdpAccountant()
    direct.compose(dp_accounting.GaussianDpEvent(1 / math.sqrt(2 * rho)))
    assert out["epsilon"] == pytest.approx(direct.get_epsilon(1e-10))
    # ρ-zCDP ⇒ (ρ + 2√(ρ log 1/δ), δ)-DP (Bun & Steinke 2016): the conversion is at least that good
    assert out["epsilon"] <= rho + 2 * math.sqrt(rho * math.log(1e10))


def test_epsilon_falls_with_noise_and_separation_and_grows_with_rounds():
    def eps(**kw):
        rounds = kw.pop("rounds", 60)
        return spent(PrivacyConfig(**dict(FTRL, **kw), dp_delta=1e-10), [RoundSample(10, 100)] * rounds, 500)["epsilon"]

    assert eps(dp_noise=1.0) > eps(dp_noise=2.0) > eps(dp_noise=4.0)
    assert eps(min_separation=5) > eps(min_separation=10) > eps(min_separation=20)
    assert eps(rounds=30) < eps(rounds=60) < eps(rounds=120)


def test_no_rounds_spend_nothing():
    out = spent(PrivacyConfig(**FTRL), [], 500)
    assert out["epsilon"] is None and out["rho"] is None and out["rounds"] == 0


# -- minimum separation ---------------------------------------------------------------------------
def test_min_separation_holds_in_the_selection_over_many_rounds(seeded_home):
    from federated.population import availability_arrays, members, select_clients

    population = members(seeded_home)
    arrays = availability_arrays(population)
    participation = ftrl.Participation(seeded_home.state / ftrl.PARTICIPATION_FILE, min_separation=4)
    chosen_any = 0
    for round_num in range(1, 41):
        offered, offered_arrays = participation.offered(population, arrays, round_num)
        assert len(offered) < len(population) or round_num == 1
        selection = select_clients(seeded_home, offered, round_num, 5, seed=0, min_examples=5,
                                   arrays=offered_arrays)
        participation.record(round_num, selection.device_ids)
        chosen_any += len(selection.device_ids)
    assert chosen_any > 40  # rounds did select devices
    saved = json.loads((seeded_home.state / ftrl.PARTICIPATION_FILE).read_text())
    for device_id, rounds in saved["rounds"].items():
        assert all(b - a >= 4 for a, b in zip(rounds, rounds[1:])), (device_id, rounds)
        assert len(rounds) <= ftrl.max_participations(40, 4)


def test_record_refuses_a_device_inside_its_separation(tmp_path):
    participation = ftrl.Participation(tmp_path / ftrl.PARTICIPATION_FILE, min_separation=3)
    participation.record(1, ["a", "b"])
    participation.record(1, ["a"])  # the same round again is no new participation
    with pytest.raises(ftrl.FtrlError, match="device a took part in round 1 .* before round 4"):
        participation.record(3, ["a"])
    participation.record(4, ["a"])
    assert participation.rounds == {"a": [1, 4], "b": [1]}


def test_resume_drops_rounds_after_the_checkpoint(tmp_path):
    participation = ftrl.Participation(tmp_path / ftrl.PARTICIPATION_FILE, min_separation=2)
    participation.record(1, ["a"])
    participation.record(2, ["b"])
    participation.record(3, ["a", "c"])  # round 3's checkpoint never got written
    resumed = ftrl.Participation.load(tmp_path, 2, done=2)
    assert resumed.rounds == {"a": [1], "b": [2]}
    assert resumed.may_take_part("a", 3) and not resumed.may_take_part("b", 3)
    (tmp_path / ftrl.PARTICIPATION_FILE).write_text("{not json")
    with pytest.raises(ftrl.FtrlError, match="participation.json: unreadable"):
        ftrl.Participation.load(tmp_path, 2, done=2)


@given(st.integers(1, 6), st.lists(st.sets(st.sampled_from("abcdefgh"), max_size=4), min_size=1, max_size=30))
def test_offered_devices_never_break_the_separation(tmp_path_factory, b, wishes):
    from types import SimpleNamespace

    population = [SimpleNamespace(device_id=d) for d in "abcdefgh"]
    participation = ftrl.Participation(tmp_path_factory.mktemp("p") / ftrl.PARTICIPATION_FILE, min_separation=b)
    for round_num, wish in enumerate(wishes, start=1):
        offered = {m.device_id for m in participation.offered(population, None, round_num)[0]}
        participation.record(round_num, sorted(wish & offered))
    for rounds in participation.rounds.values():
        assert all(y - x >= b for x, y in zip(rounds, rounds[1:]))
