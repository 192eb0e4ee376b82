"""DP-FTRL: its settings, the minimum separation in the selection, the tree accountant, and training."""

from __future__ import annotations

import argparse
import itertools
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
    assert PrivacyConfig(**config.as_dict()) == config


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

    out = spent(PrivacyConfig(**dict(FTRL, min_separation=rounds), dp_delta=1e-10),
                [RoundSample(10, 100)] * rounds, 500)
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
    from federated.population import availability_arrays, members
    from tests.fakes import select_clients

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
        assert all(b - a >= 4 for a, b in itertools.pairwise(rounds)), (device_id, rounds)
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
        assert all(y - x >= b for x, y in itertools.pairwise(rounds))


# -- what the report and the disclosure say ------------------------------------------------------
def test_report_and_disclosure_name_dp_ftrl_with_rho_and_epsilon(tmp_path):
    import shutil

    from eval.disclosure import updates_line
    from eval.report_load import load_report_data
    from tests.eval.test_report import FIXTURE, terminal_text

    privacy = PrivacyConfig(**FTRL, dp_delta=1e-10)
    p = spent(privacy, [RoundSample(10, 100)] * 20, 500)
    server = tmp_path / "server"
    shutil.copytree(FIXTURE, server)
    (server / "state").mkdir(exist_ok=True)
    (server / "state" / "run.json").write_text(json.dumps({"privacy": privacy.as_dict()}))
    line = updates_line(server, p)
    assert "tree of cumulative sums" in line and "at most once every 5 rounds" in line
    assert f"ρ = {p['rho']:.3g} (zCDP)" in line and f"ε = {p['epsilon']:.2f}, δ = 1e-10" in line
    path = server / "evals" / "0002.json"
    raw = json.loads(path.read_text())
    raw["privacy"] = p
    path.write_text(json.dumps(raw))
    text = terminal_text(load_report_data(server))
    assert f"ε = {p['epsilon']:g} (δ = 1e-10, zcdp-tree, ρ = {p['rho']:.3g}, DP-FTRL" in text


# -- training (TensorFlow Federated) --------------------------------------------------------------
@pytest.fixture(scope="module")
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt


@pytest.mark.slow
def test_ftrl_trains_its_noise_moves_the_weights_and_its_tree_resumes(runtime, seeded_home):
    import numpy as np
    import tensorflow as tf

    from federated import program, training
    from federated.training import TrainConfig
    from keyboard import client_work

    z, clip, k, lr = 1.0, 0.5, 3, 1.0
    train = TrainConfig(preset="tiny", clients_per_round=k, server_optimizer="sgdm", server_lr=lr, server_momentum=0.0)
    privacy = PrivacyConfig(dp_mechanism="ftrl", dp_noise=z, dp_clip=clip, min_separation=3)
    session = program.Session(seeded_home, train, privacy=privacy, publish_every=100)
    start = session.state
    first = session.run_round(total_rounds=4)
    for _ in range(2):
        session.run_round(total_rounds=4)
    assert session.done == 3
    rounds = json.loads((seeded_home.state / ftrl.PARTICIPATION_FILE).read_text())["rounds"]
    assert sorted(d for d, rs in rounds.items() if 1 in rs) == sorted(first.clients)
    assert all(y - x >= 3 for rs in rounds.values() for x, y in itertools.pairwise(rs))
    p = session.privacy_spent(3)
    assert p["mechanism"] == "ftrl" and p["rho"] > 0 and p["epsilon"] > 0 and p["max_participations"] == 1

    # The same round-1 clients through a tree with no noise: the difference is the round's noise.
    data = [training.client_dataset(program.client_examples(seeded_home, d, session.tokenizer, session.model_config,
                                                             train, 1), train, shuffle_seed=1)
            for d in first.clients]
    quiet = training.build_process(session.model_config, train, privacy=privacy, model_aggregator=ftrl.tree_aggregator(
        noise=0.0, clip=clip, clients_per_round=k,
        specs=ftrl.record_specs(training.model_fn_for(session.model_config, seed=train.seed))))
    noisy = session.process.process  # the session's own FedAvg (Rounds wraps it): no second build
    w0 = [np.asarray(w) for w in noisy.get_model_weights(start).trainable]
    quiet_w = [np.asarray(w) for w in quiet.get_model_weights(quiet.next(quiet.set_model_weights(
        quiet.initialize(), noisy.get_model_weights(start)), data).state).trainable]
    noisy_w = [np.asarray(w) for w in noisy.get_model_weights(noisy.next(start, data).state).trainable]
    assert any(not np.allclose(a, b) for a, b in zip(quiet_w, w0))  # training moved the model
    diff = np.concatenate([(a - b).ravel() for a, b in zip(noisy_w, quiet_w)])
    # The first leaf's noise: std z × clip per coordinate, divided by K, times the server's SGD step.
    assert np.std(diff) == pytest.approx(lr * z * clip / k, rel=0.1)

    # A new session resumes the tree from the checkpoint: its next round equals the one that went on.
    resumed = program.Session(seeded_home, train, privacy=privacy, publish_every=100)
    assert resumed.done == 3 and resumed.participation.rounds == session.participation.rounds
    for a, b in zip(tf.nest.flatten(resumed.state.aggregator), tf.nest.flatten(session.state.aggregator)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    after_resume = resumed.run_round(total_rounds=4)
    # the clients the first session would take for round 4, further availability draws included: with the
    # run's secret sampling key (new each run), the first draw of a small population can be empty
    assert after_resume.clients == session._select_waiting(4).device_ids
    seed = client_work.shuffle_seed(training.local_training(train), 4)
    data = [training.client_dataset(program.client_examples(seeded_home, d, session.tokenizer, session.model_config,
                                                             train, 4), train, shuffle_seed=seed)
            for d in after_resume.clients]
    went_on = session.process.next(session.state, data).state  # the first session's round 4, not saved
    for a, b in zip(resumed.global_weights().values(), session.global_weights(went_on).values()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_live_rounds_refuse_ftrl(home):
    from federated.program import Session
    from federated.run_setup import TrainError
    from federated.training import TrainConfig

    with pytest.raises(TrainError, match="--dp-mechanism ftrl runs in the simulation only"):
        Session(home, TrainConfig(server_optimizer="sgdm"), privacy=PrivacyConfig(**FTRL), live=True)
