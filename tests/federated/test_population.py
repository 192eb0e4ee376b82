"""Seeding devices from a corpus (all or nothing), availability, and picking a round's clients."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from federated.corpus import CorpusError
from federated.population import (
    INDEX_NAME,
    Availability,
    Member,
    PopulationError,
    available,
    conditions_now,
    members,
    round_conditions,
    seed,
)
from keyboard.store import DEVICE_ID_PATTERN, Device, devices_of_users, heldout_count
from tests.conftest import write_jsonl
from tests.fakes import select_clients
from tests.fresh_imports import imported_after


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _device_dirs(home) -> list[str]:
    if not home.devices.is_dir():
        return []
    return sorted(p.name for p in home.devices.iterdir() if p.is_dir())


def _users(home) -> list[str]:
    """The user of each member, in seeding order, as each device's own status record names it."""
    out = []
    for m in members(home):
        with Device(home.device(m.device_id)) as device:
            out.append(device.get("user"))
    return out


def _snapshot(home) -> dict:
    """Everything observable about a population: index rows, device dirs, each log and status."""
    state = {"members": members(home), "dirs": _device_dirs(home), "devices": {}}
    for m in state["members"]:
        with Device(home.device(m.device_id)) as d:
            state["devices"][m.device_id] = (d.sentences(), d.status())
    return state


# -- seeding -------------------------------------------------------------------------------------
def test_seed_creates_devices_for_users_with_enough_sentences(home, small_corpus):
    report = seed(home, small_corpus)
    assert _users(home) == ["alice", "bob", "carol"]  # dave (3) dropped, file order kept
    assert report.records == 36 and report.users == 4
    assert report.devices_created == 3 and report.devices_appended == 0
    assert report.sentences_written == 12 + 11 + 10
    assert report.dropped_small_users == 1
    assert _device_dirs(home) == sorted(m.device_id for m in members(home))
    assert all(DEVICE_ID_PATTERN.fullmatch(m.device_id) for m in members(home))
    assert (home.devices / INDEX_NAME).is_file()


def test_seed_min_sentences_and_max_devices(home, small_corpus):
    report = seed(home, small_corpus, min_sentences=3, max_devices=2)
    assert _users(home) == ["alice", "bob"]
    assert report.devices_created == 2 and report.dropped_small_users == 0
    assert _device_dirs(home) == sorted(m.device_id for m in members(home))


def test_seed_with_low_min_keeps_small_users(home, small_corpus):
    seed(home, small_corpus, min_sentences=3)
    assert _users(home) == ["alice", "bob", "carol", "dave"]


def test_each_device_holds_its_users_sentences_in_order_and_meta(home, small_corpus):
    seed(home, small_corpus, seed=7)
    by_user: dict[str, list[str]] = {}
    for r in _records(small_corpus):
        by_user.setdefault(r["user"], []).append(r["text"])
    for m, user in zip(members(home), _users(home), strict=True):
        with Device(home.device(m.device_id)) as device:
            assert device.sentences() == by_user[user]
            status = device.status()
            assert Availability(**status["availability"]) == m.availability
            assert status["source"] == str(small_corpus)
            n = len(by_user[user])
            assert status["sentences"] == n and status["heldout_sentences"] == heldout_count(n)


def test_seed_availability_depends_on_seed_only(tmp_path, small_corpus):
    from common.layout import Home

    a, b, c = (Home(tmp_path / name) for name in "abc")
    seed(a, small_corpus, seed=1)
    seed(b, small_corpus, seed=1)
    seed(c, small_corpus, seed=2)
    assert [m.availability for m in members(a)] == [m.availability for m in members(b)]
    assert [m.availability for m in members(a)] != [m.availability for m in members(c)]
    assert {m.device_id for m in members(a)}.isdisjoint(m.device_id for m in members(b))  # ids: random


def test_seeding_twice_without_append_is_refused_and_changes_nothing(home, small_corpus):
    seed(home, small_corpus)
    before = _snapshot(home)
    with pytest.raises(PopulationError, match="already holds 3 devices.*--append"):
        seed(home, small_corpus)
    assert _snapshot(home) == before


def test_seed_with_append_extends_existing_and_adds_new(home, small_corpus, tmp_path):
    seed(home, small_corpus)
    before = _snapshot(home)
    more = write_jsonl(
        tmp_path / "more.jsonl",
        [{"user": "alice", "text": f"alice again {i}"} for i in range(3)]
        + [{"user": "erin", "text": f"erin says {i}"} for i in range(3)]
        + [{"user": "frank", "text": "only once"}],
    )
    report = seed(home, more, min_sentences=3, append=True)
    assert report.devices_created == 1 and report.devices_appended == 1
    assert report.sentences_written == 6 and report.dropped_small_users == 1
    assert _users(home) == ["alice", "bob", "carol", "erin"]
    after = _snapshot(home)
    ids = devices_of_users(home.devices)
    alice = ids["alice"]
    assert after["devices"][alice][0] == before["devices"][alice][0] + [f"alice again {i}" for i in range(3)]
    for user in ("bob", "carol"):
        assert after["devices"][ids[user]] == before["devices"][ids[user]]
    assert after["devices"][ids["erin"]][0] == [f"erin says {i}" for i in range(3)]
    # The existing members' availability models are not resampled.
    assert after["members"][:3] == before["members"]


def _bad_at_the_end(tmp_path: Path, small_corpus: Path) -> Path:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(small_corpus.read_bytes() + b'{"user": "alice", "text": 5}\n')
    return bad


def test_bad_last_line_writes_nothing(home, small_corpus, tmp_path):
    bad = _bad_at_the_end(tmp_path, small_corpus)
    with pytest.raises(CorpusError, match=re.escape(f"{bad}:37: ")):
        seed(home, bad)
    assert _device_dirs(home) == []
    assert members(home) == []
    assert not (home.devices / INDEX_NAME).exists()
    # And the home is still usable afterwards.
    seed(home, small_corpus)
    assert len(members(home)) == 3


def test_bad_corpus_with_append_leaves_existing_devices_unchanged(home, small_corpus, tmp_path):
    seed(home, small_corpus)
    before = _snapshot(home)
    bad = _bad_at_the_end(tmp_path, small_corpus)
    with pytest.raises(CorpusError, match=re.escape(f"{bad}:37: ")):
        seed(home, bad, append=True)
    assert _snapshot(home) == before
    assert not any(name.startswith(".staging") for name in _device_dirs(home))


def test_mixed_timestamps_write_nothing(home, tmp_path):
    corpus = write_jsonl(
        tmp_path / "mixed.jsonl",
        [{"user": "a", "text": f"t {i}", "timestamp": f"2024-01-{i + 1:02d}"} for i in range(10)]
        + [{"user": "a", "text": "no time"}],
    )
    with pytest.raises(CorpusError, match="with and without"):
        seed(home, corpus)
    assert _device_dirs(home) == [] and members(home) == []


def test_failure_while_moving_into_place_rolls_back(home, small_corpus, monkeypatch):
    # A stray directory appears where bob's new device goes (ids fixed here; seeding avoids the
    # folders it sees, so only a race makes this happen): alice is moved in first, then bob fails.
    ids = iter(["dev-000000000000000a", "dev-000000000000000b", "dev-000000000000000c"])
    monkeypatch.setattr("federated.population.new_device_id", lambda taken=(): next(ids))
    stray = home.device("dev-000000000000000b")
    stray.mkdir(parents=True)
    with pytest.raises(PopulationError, match="exists but is not in the population index"):
        seed(home, small_corpus)
    assert _device_dirs(home) == [stray.name]  # only the stray one: alice was taken back out
    assert members(home) == []


def test_no_staging_folders_are_left(home, small_corpus, tmp_path):
    seed(home, small_corpus)
    seed(home, small_corpus, append=True)
    with pytest.raises(CorpusError):
        seed(home, _bad_at_the_end(tmp_path, small_corpus), append=True)
    assert [p.name for p in home.devices.iterdir() if p.name.startswith(".")] == []


def test_no_user_big_enough(home, small_corpus):
    with pytest.raises(PopulationError, match="no user has at least 100 records"):
        seed(home, small_corpus, min_sentences=100)
    assert _device_dirs(home) == [] and members(home) == []
    with pytest.raises(PopulationError, match="at least 1"):
        seed(home, small_corpus, min_sentences=0)


# -- availability --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic() -> list[Member]:
    rng = np.random.default_rng(123)
    return [Member(f"dev-{i:04d}", Availability.sample(rng)) for i in range(500)]


def test_round_conditions_are_deterministic(synthetic):
    a = round_conditions(synthetic, 5, seed=1)
    b = round_conditions(synthetic, 5, seed=1)
    assert set(a) == {"idle", "charging", "unmetered"}
    for key in a:
        assert a[key].shape == (500,) and a[key].dtype == bool
        np.testing.assert_array_equal(a[key], b[key])


def test_round_conditions_differ_across_rounds_and_seeds(synthetic):
    r5 = available(round_conditions(synthetic, 5, seed=1))
    r6 = available(round_conditions(synthetic, 6, seed=1))
    r29 = available(round_conditions(synthetic, 29, seed=1))  # same hour, other round: other draws
    other_seed = available(round_conditions(synthetic, 5, seed=2))
    assert not np.array_equal(r5, r6)
    assert not np.array_equal(r5, r29)
    assert not np.array_equal(r5, other_seed)


def test_available_share_is_realistic_and_varies_by_hour(synthetic):
    shares = np.array([available(round_conditions(synthetic, r, seed=0)).mean() for r in range(24)])
    assert np.all((shares >= 0.05) & (shares <= 0.60)), shares
    assert 0.05 <= shares.mean() <= 0.60
    assert shares.max() - shares.min() >= 0.05, shares  # day and night differ
    assert len(set(shares.round(3))) > 5


def test_available_requires_all_three_conditions():
    t, f = np.array([True]), np.array([False])
    assert available({"idle": t, "charging": t, "unmetered": t}).tolist() == [True]
    for missing in ("idle", "charging", "unmetered"):
        conditions = {"idle": t, "charging": t, "unmetered": t, missing: f}
        assert available(conditions).tolist() == [False]


def test_conditions_now_is_stable_within_an_hour(synthetic):
    import datetime as dt

    t1 = dt.datetime(2024, 5, 1, 14, 5, tzinfo=dt.UTC)
    t2 = t1.replace(minute=55)
    a, b = conditions_now(synthetic, t1), conditions_now(synthetic, t2)
    np.testing.assert_array_equal(available(a), available(b))


# -- selecting clients ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_home(tmp_path_factory):
    """60 devices with 10 to 19 sentences each (8 to 16 in the train split)."""
    from common.layout import Home

    root = tmp_path_factory.mktemp("big")
    records = []
    for u in range(60):
        records += [{"user": f"user{u:02d}", "text": f"user {u} says thing {i}"} for i in range(10 + u % 10)]
    home = Home(root / "home")
    seed(home, write_jsonl(root / "corpus.jsonl", records), seed=3)
    return home


def test_select_clients_picks_distinct_eligible_devices(big_home):
    population = members(big_home)
    assert len(population) == 60
    train = {}
    for m in population:
        with Device(big_home.device(m.device_id)) as d:
            train[m.device_id] = d.status()["train_sentences"]
    picked_any = 0
    for r in range(24):
        ok = available(round_conditions(population, r, seed=9))
        for min_examples in (1, 12):
            eligible = {m.device_id for m, a in zip(population, ok) if a and train[m.device_id] >= min_examples}
            sel = select_clients(big_home, population, r, 5, seed=9, min_examples=min_examples)
            assert sel.population == 60 and sel.available == int(ok.sum())
            assert len(sel.device_ids) == len(set(sel.device_ids)) == min(5, len(eligible))
            assert set(sel.device_ids) <= eligible
            picked_any += len(sel.device_ids)
    assert picked_any > 0


def test_select_clients_is_deterministic(big_home):
    population = members(big_home)
    a = [select_clients(big_home, population, r, 4, seed=5, min_examples=1).device_ids for r in range(12)]
    b = [select_clients(big_home, population, r, 4, seed=5, min_examples=1).device_ids for r in range(12)]
    c = [select_clients(big_home, population, r, 4, seed=6, min_examples=1).device_ids for r in range(12)]
    assert a == b
    assert a != c
    assert len({tuple(ids) for ids in a}) > 1  # who is picked changes from round to round


def test_select_clients_respects_min_examples(big_home):
    population = members(big_home)
    for r in range(6):
        sel = select_clients(big_home, population, r, 10, seed=0, min_examples=10**9)
        assert sel.device_ids == []
        assert sel.available == int(available(round_conditions(population, r, seed=0)).sum())


def test_modules_under_test_do_not_import_tensorflow():
    code = ("import keyboard.store, federated.corpus, federated.population, federated.vocabulary, lm.examples\n"
            "import tokenizer.vocab")
    out = imported_after(code, ("tensorflow", "tensorflow_federated"))
    assert out.strip() == "[]"


# -- user names stay on the devices --------------------------------------------------------------
def test_user_names_stay_in_the_devices_own_status_records(home, tmp_path):
    """No user name in the population index, in a device id or path, or in server/ after seeding."""
    names = ["Hamlet::HAMLET", "alice smith", "Zoë Quintrell"]
    corpus = write_jsonl(tmp_path / "c.jsonl",
                         [{"user": u, "text": f"the cat sat {i}"} for u in names for i in range(4)])
    seed(home, corpus, min_sentences=1)
    needles = {n for u in names for n in (u, u.lower(), *re.split(r"[^A-Za-zë]+", u.lower())) if len(n) >= 4}
    index = b"".join(p.read_bytes() for p in home.devices.iterdir() if p.name.startswith(INDEX_NAME))
    server = [p for p in home.server.rglob("*") if p.is_file()]
    for needle in needles:
        assert needle.encode() not in index.lower(), needle
        for m in members(home):
            assert DEVICE_ID_PATTERN.fullmatch(m.device_id) and needle not in m.device_id
        for path in server:
            assert needle.encode() not in path.read_bytes().lower() and needle not in str(path).lower(), (needle, path)
    assert len(members(home)) == 3 and sorted(devices_of_users(home.devices)) == sorted(names)  # on the devices


def test_an_index_from_before_random_ids_is_refused_with_what_to_do(home):
    import sqlite3

    home.devices.mkdir(parents=True)
    db = sqlite3.connect(home.devices / INDEX_NAME)
    db.execute("CREATE TABLE devices (device_id TEXT PRIMARY KEY, user TEXT NOT NULL, availability TEXT NOT NULL, "
               "position INTEGER NOT NULL)")
    db.commit()
    db.close()
    with pytest.raises(PopulationError, match=f"{re.escape(str(home.devices / INDEX_NAME))}.*older fedkb.*--home"):
        members(home)
