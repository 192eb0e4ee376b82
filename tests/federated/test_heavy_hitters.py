"""Private heavy hitters through TFF's IBLT computation, on populations small enough to check by hand."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from federated import heavy_hitters
from federated.heavy_hitters import HeavyHittersConfig, HeavyHittersError, discover, initial_capacity
from tests import cli_runner
from tests.conftest import synthetic_corpus
from tokenizer.private_counts import device_words

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt
    assert rt.worker.process.poll() is not None  # no worker_binary left behind


K1 = HeavyHittersConfig(k_anonymity=1)


def test_decoded_counts_are_exact_within_capacity():
    lists = [["the", "cat", "sat"], ["the", "dog"], ["the", "cat"], ["a", "dog", "ran", "the"], ["zebra"]]
    found = discover(lists, K1)
    assert found.counts == collections.Counter(w for words in lists for w in words)
    assert found.devices == 5 and found.attempts == 1 and found.decoded == len(found.counts)
    assert found.capacity == initial_capacity(K1, 5) == 5 * 200  # devices * m bounds the distinct words
    assert found.mechanism is None


def test_a_device_contributes_at_most_m_words_each_once():
    many = [f"w{i:02d}" for i in range(40)]
    lists = [many + many, ["w00", "other"]]  # the first device repeats all 40 words
    found = discover(lists, HeavyHittersConfig(max_words_per_device=10, k_anonymity=1))
    # The computation's own cap (max_words_per_user) holds even if a device hands over more:
    # device 1 adds 1 to exactly 10 of its words, device 2 adds 1 to both of its own.
    assert sum(found.counts.get(w, 0) for w in many) - 1 == 10  # minus device 2's "w00"
    assert found.counts["other"] == 1
    assert all(c <= 2 for c in found.counts.values())


def test_a_word_only_one_device_has_is_withheld_under_k_anonymity():
    lists = [["the", "cat", "secret"], ["the", "cat"], ["the"]]
    assert discover(lists, HeavyHittersConfig(k_anonymity=2)).counts == {"the": 3, "cat": 2}
    assert discover(lists, HeavyHittersConfig(k_anonymity=3)).counts == {"the": 3}
    assert discover(lists, K1).counts["secret"] == 1


def test_empty_devices_contribute_nothing():
    found = discover([[], ["a", "b"], [], ["a"]], K1)
    assert found.counts == {"a": 2, "b": 1} and found.devices == 4
    nothing = discover([[], []], K1)
    assert nothing.counts == {} and nothing.devices == 2
    with pytest.raises(HeavyHittersError, match="no devices"):
        discover([], K1)


def test_non_ascii_words_decode_exactly_and_long_words_are_not_contributed():
    exact_limit = "é" * 16  # 32 UTF-8 bytes: the longest word that fits
    long_ascii, long_accented = "b" * 40, "a" * 31 + "è"  # 40 and 33 bytes
    counts = {"blessèd": 3, "日本語": 2, "naïve": 2, "👍": 1, "Ça": 1, exact_limit: 1, long_ascii: 9, long_accented: 9}
    words = device_words(counts, 200, 32)
    assert long_ascii not in words and long_accented not in words  # skipped on the device rather than cut
    found = discover([words, words], K1)
    assert found.counts == {w: 2 for w in counts if w not in (long_ascii, long_accented)}
    # Handed over anyway, TFF cuts a word to its first 32 bytes: an ASCII word comes back as a prefix
    # nobody typed, one cut inside "è" is not valid UTF-8 and is dropped. The device filter avoids both.
    cut = discover([[long_ascii, long_accented], [long_ascii, long_accented]], K1)
    assert cut.counts == {"b" * 32: 2} and cut.decoded == 1


def test_capacity_grows_until_the_sketch_decodes(monkeypatch):
    lists = [[f"word{i}" for i in range(j, 200, 3)] for j in range(3)]  # 200 distinct words
    monkeypatch.setattr(heavy_hitters, "DEFAULT_CAPACITY", 100)
    found = discover(lists, K1)
    assert found.attempts == 2 and found.capacity == 200
    assert found.counts == {f"word{i}": 1 for i in range(200)}
    with pytest.raises(HeavyHittersError, match="did not decode at capacity 50"):
        discover(lists, HeavyHittersConfig(k_anonymity=1, capacity=50))  # a fixed capacity is not grown


def test_dp_release_keeps_common_words_and_drops_rare_ones():
    lists = [["common", f"rare{i}"] for i in range(40)]
    config = HeavyHittersConfig(max_words_per_device=2, k_anonymity=1, dp_epsilon=8.0, dp_delta=1e-3)
    found = discover(lists, config, rng=np.random.default_rng(0))
    assert set(found.counts) == {"common"} and abs(found.counts["common"] - 40) < 6
    assert found.decoded == 41  # what the sketch held before the threshold
    mech = found.mechanism
    assert mech is not None and 1 < mech.threshold < 40 and mech.max_words_per_device == 2
    record = found.provenance(config)
    assert record["dp"]["epsilon"] == 8.0 and record["words_recovered"] == 1 and record["count_per_word"] == 1
    assert record["words_decoded"] is None  # the exact pre-threshold size is not DP, so it is not recorded


def test_tokenizer_train_private_from_the_command_line(tmp_path):
    corpus = synthetic_corpus(tmp_path / "c.jsonl", users=8, sentences=12)
    home = tmp_path / "home"

    def fedkb(*args):
        return cli_runner.fedkb(home, *args)

    assert fedkb("population", "seed", "--corpus", str(corpus)).returncode == 0
    done = fedkb("tokenizer", "train", "--private", "--vocab-size", "64", "--max-words-per-device", "20")
    assert done.returncode == 0, done.stderr
    assert "from private heavy hitters of 8 devices" in done.stdout
    meta = json.loads((home / "server" / "tokenizer" / "tokenizer.json").read_text())
    g = meta["gathering"]
    assert g["method"] == "heavy_hitters" and g["max_words_per_device"] == 20 and g["k_anonymity"] == 2
    assert g["dp"] is None and g["words_recovered"] == meta["distinct_words"] > 4
    assert meta["config"]["character_coverage"] == 1.0 and meta["devices"] == 8

    plain = fedkb("tokenizer", "train", "--plain", "--vocab-size", "64")
    assert plain.returncode == 0 and "summed word counts of 8 devices" in plain.stdout
    meta = json.loads((home / "server" / "tokenizer" / "tokenizer.json").read_text())
    assert meta["gathering"] == {"method": "plain_sum", "pieces": "devices"}
    assert meta["config"]["character_coverage"] == 0.9995

    mixed = fedkb("tokenizer", "train", "--plain", "--k-anonymity", "3")
    assert mixed.returncode == 1 and "--k-anonymity" in mixed.stderr
