"""The federated benchmarks' own machinery: resampled populations, memory sampling, the JSON line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import fedbench


def test_resampled_corpus_has_the_asked_devices_each_copying_one_role(tmp_path):
    from federated.corpus import read_records, resolve_corpus

    path = fedbench.resampled_corpus(tmp_path / "r.jsonl", 25, seed=3)
    records = read_records(path)
    users = {r.user for r in records}
    assert len(users) == 25
    speeches_of = {}
    for r in read_records(resolve_corpus("shakespeare")):
        speeches_of.setdefault(r.text, set()).add(r.user)
    for user in list(users)[:5]:
        texts = [r.text for r in records if r.user == user]
        assert len(texts) >= 10
        common = set.intersection(*(speeches_of[t] for t in texts))
        assert common, f"{user}'s sentences do not all come from one speaking role"


def test_peak_rss_counts_children(tmp_path):
    # A child that holds 200 MiB (written, so resident) until its stdin closes.
    child = subprocess.Popen([sys.executable, "-c", "import sys; b = bytearray(b'x' * (200 * 2**20)); "
                              "print('held', flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with fedbench.PeakRss(interval=0.05) as rss:
            pass  # one sample at exit at least: the child holds its memory until we close its stdin
        assert rss.peak_bytes > 200 * 2**20 and rss.peak_mb > 200
    finally:
        child.stdin.close()
        child.wait(timeout=30)


@pytest.mark.slow
def test_train_throughput_pairs_on_a_tiny_model(seeded_home, capsys):
    import train_throughput

    fig = train_throughput.bench_pair_series(seeded_home, "tiny", 3, 1, print)
    for key in ("preset", "clients_per_round", "federated_tokens_per_s", "centralized_tokens_per_s", "ratio_median"):
        assert key in fig
    assert fig["tokens_per_round"] > 0 and fig["federated_tokens_per_s"] > 0
    assert set(fig["breakdown"]) == {"client_data_s", "transfer_s", "broadcast_aggregation_s", "client_training_s"}
    json.dumps(fig)  # the figures go into the benchmark's JSON line
