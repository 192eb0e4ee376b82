"""Poisson sampling of the eligible devices from a secret key kept in the server's private state."""

from __future__ import annotations

import stat

import pytest

from federated import sampling
from federated.population import available, members, poisson_select, round_conditions
from keyboard.store import Device


def test_a_secret_key_is_made_once_in_private_state_with_mode_0600(tmp_path):
    key = sampling.load_or_create(tmp_path / "state", None)
    path = tmp_path / "state" / sampling.SAMPLING_FILE
    assert not key.public and len(key.key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sampling.load_or_create(tmp_path / "state", None) == key  # a resumed run reads it back
    assert sampling.load_or_create(tmp_path / "state", None, fresh=True) != key  # a fresh run draws a new one
    assert "secret key" in key.assumption and "never published" in key.assumption


def test_a_seeded_key_is_public_reproducible_and_labelled(tmp_path):
    a = sampling.load_or_create(tmp_path / "a", 7)
    b = sampling.load_or_create(tmp_path / "b", 7)
    assert a == b == sampling.seeded_key(7) and a.public
    assert sampling.seeded_key(8) != a
    assert "public --seed" in a.assumption and "does not hold" in a.assumption


def test_switching_between_seeded_and_secret_sampling_mid_run_is_refused(tmp_path):
    sampling.load_or_create(tmp_path / "s", None)
    with pytest.raises(sampling.SamplingError, match="secret key"):
        sampling.load_or_create(tmp_path / "s", 3)
    sampling.load_or_create(tmp_path / "p", 3)
    with pytest.raises(sampling.SamplingError, match="public --seed"):
        sampling.load_or_create(tmp_path / "p", None)
    with pytest.raises(sampling.SamplingError, match="another --seed"):
        sampling.load_or_create(tmp_path / "p", 4)
    (tmp_path / "p" / sampling.SAMPLING_FILE).write_text("{not json")
    with pytest.raises(sampling.SamplingError, match="sampling.json: unreadable"):
        sampling.load_or_create(tmp_path / "p", 3)


def test_rate_is_k_over_eligible_at_most_one():
    assert sampling.rate(10, 146) == pytest.approx(10 / 146)
    assert sampling.rate(10, 4) == 1.0 and sampling.rate(10, 0) == 0.0


def test_poisson_draw_is_bernoulli_q_per_device_and_depends_on_key_round_and_draw():
    key, ids = sampling.seeded_key(1), [f"d{i}" for i in range(20000)]
    chosen = sampling.poisson(key, ids, 0.1, round_num=1)
    # Binomial(20000, 0.1): mean 2000, sd 42.4; ±5 sd.
    assert abs(len(chosen) - 2000) < 212
    assert chosen == sampling.poisson(key, ids, 0.1, round_num=1)
    assert chosen != sampling.poisson(key, ids, 0.1, round_num=2)
    assert chosen != sampling.poisson(key, ids, 0.1, round_num=1, draw=1)
    assert chosen != sampling.poisson(sampling.seeded_key(2), ids, 0.1, round_num=1)
    # Each device's draw is its own: a device's presence does not change the others' draws.
    assert sampling.poisson(key, ids[1:], 0.1, round_num=1) == [d for d in chosen if d != "d0"]
    assert sampling.poisson(key, ids[:50], 0.0, round_num=1) == []
    assert len(sampling.poisson(key, ids[:50], 1.0, 1)) == 50


def test_poisson_select_draws_only_eligible_devices_at_rate_k_over_eligible(seeded_home):
    population = members(seeded_home)
    key = sampling.load_or_create(seeded_home.state, None)
    for round_num in range(1, 9):
        sel = poisson_select(seeded_home, population, round_num, 4, key=key, seed=0, min_examples=9)
        eligible = []
        ok = available(round_conditions(population, round_num, 0))
        for i, m in enumerate(population):
            with Device(seeded_home.device(m.device_id)) as device:
                if ok[i] and device.status()["train_sentences"] >= 9:
                    eligible.append(m.device_id)
        assert sel.eligible == len(eligible) and sel.available == int(ok.sum())
        assert sel.rate == pytest.approx(sampling.rate(4, len(eligible)))
        assert set(sel.device_ids) <= set(eligible)
        # The draw is a function of the private key: reading the key back gives the same clients.
        again = poisson_select(seeded_home, population, round_num, 4,
                               key=sampling.load_or_create(seeded_home.state, None), seed=0, min_examples=9)
        assert again.device_ids == sel.device_ids
