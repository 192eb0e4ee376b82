"""Federated rounds end to end on a tiny model: metrics, checkpoints, resume, publishing, errors."""

import csv
import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt


def _config(**overrides):
    from federated.training import TrainConfig

    return TrainConfig(**{"preset": "tiny", "clients_per_round": 3, "client_lr": 0.5, "server_lr": 0.05, **overrides})


def _final_weights(home):
    from federated import registry

    return registry.load_weights(registry.newest(home.models))


def test_rounds_write_metrics_checkpoints_and_versions(runtime, seeded_home):
    from federated import ledger, program, registry

    summary = program.run(seeded_home, _config(), rounds=4, publish_every=2)
    assert [r.round_num for r in summary.rounds] == [1, 2, 3, 4]
    assert summary.published == ["0001", "0002"]
    with open(seeded_home.metrics_csv) as metrics:
        rows = list(csv.DictReader(metrics))
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4]
    assert not {"loss", "clients", "num_tokens"} & set(rows[0])  # sums over 3 devices are not released
    private = ledger.round_metrics(seeded_home.server)  # the server's own view, in its private state
    # Poisson sampling at q = 3 / eligible: about 3 devices a round, as many as were drawn
    assert [int(r["clients"]) for r in private] == [len(r.clients) for r in summary.rounds]
    assert all(int(r["clients"]) > 0 and float(r["loss"]) > 0 for r in private)
    assert any(p.name.startswith("events") for p in seeded_home.tensorboard.rglob("*"))
    version = registry.newest(seeded_home.models)
    assert version.name == "0002" and version.round == 4
    assert set(version.manifest["files"]) == {"weights.npz", "ondevice.npz", "model.json", "spm.model"}
    from tokenizer.vocab import Tokenizer

    assert version.model_config().vocab_size == Tokenizer.load(seeded_home.tokenizer).vocab_size
    # Devices that took part know it; the others do not.
    from keyboard.store import Device

    joined = {d for r in summary.rounds for d in r.clients}
    with Device(seeded_home.device(sorted(joined)[0])) as device:
        assert 1 <= device.get("last_round") <= 4


def test_versions_carry_the_private_ngrams_once_gathered(runtime, seeded_home):
    from common import artifacts
    from federated import ngrams, program, registry
    from keyboard import install

    program.run(seeded_home, _config(), rounds=1, publish_every=1)
    assert artifacts.NGRAMS not in registry.newest(seeded_home.models).manifest["files"]
    table = ngrams.NgramTable({1: {("the",): 9}, 2: {("<s>", "the"): 4}}, 60,
                              (ngrams.OrderRound(1, 1, 1000, 1, 1, 0.1), ngrams.OrderRound(2, 1, 1000, 1, 1, 0.1)),
                              None, 0.2)
    ngrams.save(seeded_home, table, ngrams.NgramConfig(max_order=2))
    program.run(seeded_home, _config(), rounds=2, publish_every=1)
    version = registry.newest(seeded_home.models)
    assert version.name == "0002" and version.manifest["files"][artifacts.NGRAMS] == \
        ngrams.read_record(seeded_home)["sha256"]
    done = install.install(seeded_home.device("x"), version.path)
    assert artifacts.read_ngrams(done.path / artifacts.NGRAMS) == table.counts


def test_resume_continues_and_matches_an_uninterrupted_run(runtime, seeded_home, tmp_path):
    import shutil

    from federated import program

    other = type(seeded_home)(tmp_path / "other")
    shutil.copytree(seeded_home.root, other.root)

    seeded = _config(seed=1, public_sampling=True)  # two homes draw the same clients only from a public seed
    first = program.run(seeded_home, seeded, rounds=2)
    assert [r.round_num for r in first.rounds] == [1, 2]
    resumed = program.run(seeded_home, seeded, rounds=4)
    assert [r.round_num for r in resumed.rounds] == [3, 4]
    assert program.run(seeded_home, seeded, rounds=4).rounds == []  # already done

    straight = program.run(other, seeded, rounds=4)
    assert [r.clients for r in straight.rounds[2:]] == [r.clients for r in resumed.rounds]
    a, b = _final_weights(seeded_home), _final_weights(other)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7)
    with open(seeded_home.metrics_csv) as metrics:
        rows = list(csv.DictReader(metrics))
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4]


def test_incompatible_checkpoint_is_refused_with_what_differs(runtime, seeded_home):
    from federated import program, run_setup

    program.run(seeded_home, _config(), rounds=1)
    with pytest.raises(run_setup.TrainError, match=r"clients_per_round: checkpoint 3, now 5.*--fresh"):
        program.run(seeded_home, _config(clients_per_round=5), rounds=2)
    summary = program.run(seeded_home, _config(clients_per_round=5), rounds=1, fresh=True)
    assert [r.round_num for r in summary.rounds] == [1]
    assert json.loads((seeded_home.state / "run.json").read_text())["train"]["clients_per_round"] == 5


def test_missing_population_or_tokenizer_says_what_to_run(home, tmp_path):
    from federated import run_setup
    from federated.population import seed
    from tests.conftest import synthetic_corpus

    with pytest.raises(run_setup.TrainError, match="fedkb population seed"):
        run_setup.prepare(home, _config())
    seed(home, synthetic_corpus(tmp_path / "c.jsonl", users=3))
    with pytest.raises(run_setup.TrainError, match="fedkb tokenizer train"):
        run_setup.prepare(home, _config())


def test_a_round_waits_through_later_draws_until_enough_devices_are_eligible():
    from types import SimpleNamespace

    from federated import program

    calls = []

    def select(round_num, *, utc_hour=None, draw=0):
        calls.append((utc_hour, draw))
        return SimpleNamespace(device_ids=["d1", "d2"][: max(0, draw - 2)], population=5)

    # without secure aggregation one eligible device is enough: draw 3 has one
    fake = SimpleNamespace(privacy=SimpleNamespace(secure_agg=False), train=_config(), select=select)
    assert program.Session._select_waiting(fake, 7).device_ids == ["d1"]
    assert calls == [(None, 0), (8, 1), (9, 2), (10, 3)]
    # secure aggregation needs two: one more draw, an hour later
    calls.clear()
    fake.privacy.secure_agg = True
    assert program.Session._select_waiting(fake, 23).device_ids == ["d1", "d2"]
    assert calls[-1] == (3, 4)
    # nobody ever eligible: it gives up after MAX_DRAWS and returns the empty selection for the error
    calls.clear()
    fake.select = lambda round_num, *, utc_hour=None, draw=0: (
        calls.append(draw) or SimpleNamespace(device_ids=[], population=5))
    assert program.Session._select_waiting(fake, 1).device_ids == []
    assert calls == list(range(program.MAX_DRAWS))


def _published_files(home):
    return [p for p in [home.metrics_csv, *home.models.rglob("*"), *home.tensorboard.rglob("*")] if p.is_file()]


def test_the_secret_draw_stays_in_private_state_and_a_resumed_session_redraws_it(runtime, seeded_home):
    from federated import ledger, program, registry, sampling
    from federated.privacy import PrivacyConfig

    privacy = PrivacyConfig(dp_noise=0.5)
    summary = program.run(seeded_home, _config(clients_per_round=4), rounds=2, publish_every=2, privacy=privacy)
    key = sampling.load_or_create(seeded_home.state, None)
    assert not key.public
    drawn = {d for r in summary.rounds for d in r.clients}
    assert drawn
    for path in _published_files(seeded_home):
        data = path.read_bytes()
        assert key.key.hex().encode() not in data and key.key not in data, path
        assert not [d for d in drawn if d.encode() in data], path
    events = b"".join(p.read_bytes() for p in seeded_home.tensorboard.rglob("*") if p.is_file())
    assert b"aggregator/" in events and b"loss" not in events and b"num_tokens" not in events  # a DP round's sums
    p = registry.newest(seeded_home.models).manifest["privacy"]
    assert "secret key" in p["sampling"] and "add or remove one device" in p["adjacency"] and "RDP" in p["accountant"]
    assert p["epsilon"] == p["epsilon_amplified"] < p["epsilon_without_amplification"]
    assert p["delta"] == pytest.approx(60 ** -1.1) and p["sampling_public"] is False
    assert "clients" not in p and not {"loss", "clients"} & set(registry.newest(seeded_home.models).manifest["metrics"])
    # A new session (as after a crash) reads the key back from server/state and draws the same devices.
    session = program.Session(seeded_home, _config(clients_per_round=4), privacy=privacy)
    assert session.done == 2
    reselected = [session._select_waiting(r.round_num).device_ids for r in summary.rounds]
    assert reselected == [r.clients for r in summary.rounds]
    assert len(ledger.entries(seeded_home.server, "round")) == 2


def test_a_seeded_run_is_reproducible_and_says_its_sampling_is_public(runtime, seeded_home, tmp_path):
    import shutil

    from federated import program, registry
    from federated.privacy import PrivacyConfig

    other = type(seeded_home)(tmp_path / "other")
    shutil.copytree(seeded_home.root, other.root)
    privacy, config = PrivacyConfig(dp_noise=0.5), _config(clients_per_round=4, seed=3, public_sampling=True)
    a = program.run(seeded_home, config, rounds=2, publish_every=2, privacy=privacy)
    b = program.run(other, config, rounds=2, publish_every=2, privacy=privacy)
    assert [r.clients for r in a.rounds] == [r.clients for r in b.rounds]
    p = registry.newest(seeded_home.models).manifest["privacy"]
    assert p["sampling_public"] is True and "public --seed" in p["sampling"]
    assert p["epsilon"] == p["epsilon_without_amplification"] > p["epsilon_amplified"]
