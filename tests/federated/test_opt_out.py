"""A device whose owner turned federated participation off is in no simulated round, evaluation or count."""

from __future__ import annotations

import pytest

from common.layout import Home
from federated import sampling
from federated.population import available, members, poisson_select, round_conditions, seed, taking_part
from federated.rollout import eval_devices, pooled_train_sentences
from federated.vocabulary import summed_word_counts
from keyboard import controls
from keyboard.store import Device
from tests.conftest import write_jsonl


@pytest.fixture
def home(tmp_path):
    """12 devices of 10 sentences (8 train, 2 held out); every even-numbered one opted out."""
    records = [{"user": f"user{u:02d}", "text": f"word{u} says thing {i}"} for u in range(12) for i in range(10)]
    home = Home(tmp_path / "home")
    seed(home, write_jsonl(tmp_path / "corpus.jsonl", records), seed=3)
    for i, m in enumerate(members(home)):
        if i % 2 == 0:
            with Device(home.device(m.device_id)) as device:
                controls.set_federated(device, False)
    return home


def _opted_out(home: Home) -> set[str]:
    return {m.device_id for i, m in enumerate(members(home)) if i % 2 == 0}


def test_takes_part_defaults_to_yes_and_only_false_opts_out():
    assert controls.takes_part({}) and controls.takes_part({"federated": True})
    assert not controls.takes_part({"federated": False})


def test_poisson_selection_counts_and_draws_only_devices_that_take_part(home):
    population, out = members(home), _opted_out(home)
    key = sampling.load_or_create(home.state, 0)
    for r in range(1, 25):
        ok = available(round_conditions(population, r, 0))
        sel = poisson_select(home, population, r, 3, key=key, seed=0, min_examples=1)
        assert sel.eligible == len({m.device_id for m, a in zip(population, ok) if a} - out)
        assert not set(sel.device_ids) & out


def test_evaluation_references_and_vocabulary_leave_opted_out_devices_out(home):
    out = _opted_out(home)
    ids = eval_devices(home, None, seed=0)
    assert len(ids) == 6 and not set(ids) & out
    sentences, devices = pooled_train_sentences(home)
    assert devices == 6 and len(sentences) == 6 * 8
    assert {m.device_id for m in taking_part(home, members(home))} == {m.device_id for m in members(home)} - out
    counts, counted = summed_word_counts(home)
    assert counted == 6 and counts["says"] == 6 * 8
    for device_id in out:  # each user's own word ("word7") is absent when that user opted out
        with Device(home.device(device_id)) as device:
            own = device.sentences()[0].split()[0]
        assert counts[own] == 0
    assert sum(counts.values()) == 6 * 8 * 4
