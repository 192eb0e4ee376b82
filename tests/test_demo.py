"""End to end through the command line: demo (twice) and the report."""

import json

import pytest

from tests.cli_runner import fedkb
from tests.conftest import synthetic_corpus

pytestmark = [pytest.mark.slow, pytest.mark.long]


def test_demo_runs_the_whole_story_and_can_run_again(tmp_path):
    corpus = synthetic_corpus(tmp_path / "c.jsonl", users=40, sentences=15)
    home = tmp_path / "home"
    args = ["demo", "--corpus", str(corpus), "--preset", "tiny", "--rounds", "2", "--publish-every", "1",
            "--clients-per-round", "3", "--eval-devices", "20", "--vocab-size", "64", "--pretrain-seconds", "1"]
    first = fedkb(home, *args, "--references")  # in this process: TFF is imported once
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    for text in ("seeded 40 devices", "round    2", "promoted", "installed on 40 devices", "recall@1",
                 "unigram (pooled reference)", "KN trigram (pooled reference)", "LSTM, central (pooled reference)",
                 "raw text: POOLED for the references", "HTML report", "Pretrained the tiny model",
                 "+ private n-grams = product"):
        assert text in out, text
    assert (home / "references" / "evals" / "0002.json").is_file() and not (home / "server" / "baselines").exists()
    html = home / "server" / "reports" / "report.html"
    assert html.is_file() and html.read_text().count("data:image/png;base64,") >= 3
    assert (home / "server" / "evals" / "0002.json").is_file()
    assert "typed on ≥ 2 devices" in out and (home / "server" / "models" / "0002" / "ngrams.tsv.gz").is_file()
    # Simulated typists on the 20 evaluating devices, whose live counts are summed and released.
    assert "20 devices typed" in out and "live metrics: how the suggestions did while typing" in out
    live = json.loads((home / "server" / "live_metrics.json").read_text())
    assert json.dumps(live).count('"replayed"') >= 1 and "withheld" not in json.dumps(live), live

    again = fedkb(home, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing the 40 devices" in again.stdout and "reusing the tokenizer" in again.stdout
    assert "reusing the n-grams" in again.stdout and "reusing the pretrained model" in again.stdout
    assert "Already at round 2" in again.stdout
    assert "pooled reference" in again.stdout  # the first run's references are still there, and shown as such


# `fedkb serve` (rounds when devices are eligible, publish, roll out) is checked on the same command
# that tests/keyboard/test_serve_loop.py runs while a keyboard is open.
