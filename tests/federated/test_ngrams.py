"""Private n-grams: the settings, the saved table and record, and (slow) TFF rounds checked against true counts."""

from __future__ import annotations

import collections
import hashlib
import json

import numpy as np
import pytest

from common import artifacts
from common.layout import Home
from federated import ngrams
from federated.ngrams import NgramConfig, NgramTable, OrderRound, initial_capacity, subrounds
from tests.cli_runner import fedkb
from tests.conftest import synthetic_corpus, write_jsonl
from tokenizer.private_counts import device_ngram_counts


# -- fast ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [dict(max_per_device=0), dict(max_count=0), dict(k_anonymity=0), dict(max_order=0),
                                 dict(max_order=6), dict(max_bytes=0), dict(capacity=0), dict(dp_epsilon=0.0),
                                 dict(dp_delta=1.0)])
def test_config_refuses_bad_settings(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        NgramConfig(**bad)


def test_first_capacity_is_the_expected_distinct_count_and_never_more_than_the_slots():
    config = NgramConfig(max_per_device=100)
    assert initial_capacity(config, 2, 500) == 0.4 * 500 * 100
    assert initial_capacity(config, 1, 500) == 0.12 * 500 * 100
    assert initial_capacity(config, 3, 5) == 500  # 1,000 at least, but devices * M is always enough
    assert initial_capacity(NgramConfig(capacity=777), 2, 500) == 777


def test_subrounds_bound_the_sketches_held_at_once():
    assert subrounds(1_000, 32, 10) == 1
    many = subrounds(40_000, 32, 584)
    per_device = 1.1 * 1.222 * 40_000 * (32 / 3 + 3) * 8
    assert (584 / many) * per_device <= ngrams.SUBROUND_SKETCH_BYTES < (584 / (many - 1)) * per_device
    assert subrounds(10**7, 32, 3) == 3  # never more groups than devices


def test_one_dp_release_covers_every_order():
    mech = ngrams.mechanism_for(NgramConfig(max_per_device=50, max_count=4, dp_epsilon=2.0))
    assert mech.max_words_per_device == 150 and mech.max_count == 4 and mech.min_devices == 2
    assert ngrams.mechanism_for(NgramConfig()) is None


def _table():
    counts = {1: {("the",): 7}, 2: {("<s>", "the"): 3}, 3: {}}
    return NgramTable(counts, 9, tuple(OrderRound(o, len(counts[o]), 1000, 1, 1, 0.5) for o in (1, 2, 3)), None, 2.0)


def test_save_writes_the_table_and_its_record(tmp_path):
    home = Home(tmp_path)
    assert ngrams.read_record(home) is None and ngrams.current_table(home) is None
    ngrams.save(home, _table(), NgramConfig())
    data = (home.ngrams / artifacts.NGRAMS).read_bytes()
    assert artifacts.read_ngrams(home.ngrams / artifacts.NGRAMS) == {1: {("the",): 7}, 2: {("<s>", "the"): 3}}
    record = ngrams.read_record(home)
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["devices"] == 9
    assert record["counts_per_order"] == {"1": 1, "2": 1, "3": 0} and record["seconds"] == 2.0
    assert record["config"]["max_per_device"] == NgramConfig.max_per_device
    assert record["privacy"]["k_anonymity_counts"] == "devices" and record["privacy"]["dp"] is None
    assert [r["order"] for r in record["rounds"]] == [1, 2, 3]
    assert ngrams.current_table(home) == data
    (home.ngrams / artifacts.NGRAMS).write_bytes(artifacts.ngrams_to_bytes({1: {("x",): 1}}))
    assert ngrams.current_table(home) is None  # not the table the record describes: not published


def test_disclosure_states_the_ngram_sketches(tmp_path):
    from eval import disclosure

    home = Home(tmp_path)
    assert "n-grams: none gathered" in disclosure.statement(home.server)
    ngrams.save(home, _table(), NgramConfig())
    line = disclosure.ngrams_line(home.server)
    assert f"top {NgramConfig.max_per_device} n-grams of orders 1-3" in line
    assert "≥ 2 devices" in line and "no DP" in line


def test_cli_defaults_come_from_the_config():
    from fedkb.cli import build_parser

    args = build_parser().parse_args(["ngrams", "gather"])
    from fedkb.cmd_ngrams import config_from

    assert config_from(args) == NgramConfig()
    args = build_parser().parse_args(["ngrams", "gather", "--max-per-device", "20", "--k-anonymity", "3",
                                      "--dp-epsilon", "4"])
    assert config_from(args) == NgramConfig(max_per_device=20, k_anonymity=3, dp_epsilon=4.0)
    with pytest.raises(ValueError, match="--dp-delta needs --dp-epsilon"):
        config_from(build_parser().parse_args(["ngrams", "gather", "--dp-delta", "1e-5"]))


# -- slow: TFF rounds ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt


def _run(runtime, lists, config, order=2, **kw):
    return ngrams.discover_order(lists, config, order, target=runtime.worker.target, **kw)


@pytest.mark.slow
def test_counts_are_summed_capped_counts_and_k_counts_devices(runtime):
    config = NgramConfig(k_anonymity=2, max_count=3)
    lists = [{"the cat": 3, "a dog": 1}, {"the cat": 1, "a dog": 1}, {"the cat": 2, "my secret": 3}]
    decoded, result = _run(runtime, lists, config)
    # "my secret" has a count of 3 but only one device: k-anonymity is by devices, not by count.
    assert decoded == {"the cat": 6, "a dog": 2}
    assert result.attempts == 1 and result.subrounds == 1 and result.order == 2
    decoded, _ = _run(runtime, lists, NgramConfig(k_anonymity=3, max_count=3))
    assert decoded == {"the cat": 6}


@pytest.mark.slow
def test_an_ngram_of_one_device_is_withheld_though_its_words_are_common(runtime):
    sentences = [["the cat sat", "the dog ran"], ["the cat ran", "the dog sat"], ["the cat sat", "sat the dog"]]
    config = NgramConfig(max_per_device=10, max_count=4)
    known = {"the", "cat", "sat", "dog", "ran"}
    lists = [device_ngram_counts(s, 2, 10, max_count=4, known=known) for s in sentences]
    assert "sat the" in lists[2]  # typed on one device only, made of released words
    decoded, _ = _run(runtime, lists, config)
    assert "sat the" not in decoded and decoded["the cat"] == 3 and decoded["<s> the"] == 5
    one = NgramConfig(max_per_device=10, max_count=4, k_anonymity=1)
    assert _run(runtime, lists, one)[0]["sat the"] == 1


@pytest.mark.slow
def test_subrounds_and_a_grown_capacity_give_the_same_counts(runtime, monkeypatch):
    rng = np.random.default_rng(0)
    lists = [{f"w{i} v{i % 5}": int(c) for i, c in zip(rng.choice(300, 40, replace=False), rng.integers(1, 5, 40))}
             for _ in range(12)]
    config = NgramConfig(max_per_device=40, k_anonymity=1)
    plain, result = _run(runtime, lists, config)
    assert result.subrounds == 1
    truth = collections.Counter()
    for c in lists:
        truth.update(c)
    assert plain == dict(truth)
    monkeypatch.setattr(ngrams, "SUBROUND_SKETCH_BYTES", 1 << 17)  # a device's sketch is ~70 kB here
    grouped, result = _run(runtime, lists, config)
    assert grouped == plain and result.subrounds > 1
    small = NgramConfig(max_per_device=40, k_anonymity=1, capacity=60)
    with pytest.raises(ngrams.NgramError, match="did not decode at capacity 60"):
        _run(runtime, lists, small)
    monkeypatch.setattr(ngrams, "initial_capacity", lambda *a: 100)
    grown, result = _run(runtime, lists, config)
    assert grown == plain and result.attempts > 1 and result.capacity >= 200


@pytest.mark.slow
def test_gathered_table_equals_the_true_counts_from_the_command_line(tmp_path):
    from federated.population import members, seed
    from keyboard.store import Device

    corpus = synthetic_corpus(tmp_path / "c.jsonl", users=10, sentences=14)
    home = Home(tmp_path / "home")
    seed(home, corpus)
    done = fedkb(home.root, "ngrams", "gather", "--max-per-device", "25")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "from 10 devices" in done.stdout and "typed on ≥ 2 devices" in done.stdout
    sentences = []
    for member in members(home):
        with Device(home.device(member.device_id)) as device:
            sentences.append(device.splits().train)
    config = NgramConfig(max_per_device=25)
    truth = ngrams.exact_table(sentences, config)
    assert all(truth[o] for o in (1, 2, 3))
    assert artifacts.read_ngrams(home.ngrams / artifacts.NGRAMS) == {o: t for o, t in truth.items() if t}
    record = json.loads((home.ngrams / ngrams.RECORD).read_text())
    assert record["counts_per_order"] == {str(o): len(truth[o]) for o in (1, 2, 3)} and record["devices"] == 10


@pytest.mark.slow
def test_dp_release_keeps_what_many_devices_type(tmp_path):
    from federated.population import seed

    records = [{"user": f"u{u}", "text": text} for u in range(30)
               for text in ["good morning to you", "thank you", f"secret number {u}"] * 8]
    home = Home(tmp_path / "home")
    seed(home, write_jsonl(tmp_path / "c.jsonl", records))
    config = NgramConfig(max_per_device=8, dp_epsilon=8.0, dp_delta=1e-3)
    table = ngrams.gather_ngrams(home, config, rng=np.random.default_rng(0))
    assert ("<s>", "good", "morning") in table.counts[3] and ("thank", "you") in table.counts[2]
    assert not any(w.isdigit() for order in table.counts.values() for g in order for w in g)  # one device's each
    mech = table.mechanism
    assert mech.max_words_per_device == 24 and mech.max_count == 4
    assert ngrams.read_record(home)["privacy"]["dp"]["epsilon"] == 8.0
