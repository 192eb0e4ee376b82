"""Nothing leaves the devices but what is declared: canary sentences never reach the server.

A population where a few devices each typed a unique canary sentence of made-up words goes
through the whole pipeline through the command line — seed, private vocabulary, private
n-grams, training (with DP and secure aggregation), rollout, evaluation with the centralized
references, report. Then every file under ``<home>/server/`` (state, versions, n-grams, metrics,
TensorBoard, logs, reports; gzip files decompressed) and the command output is searched: no
canary sentence, and no canary word the vocabulary did not learn, may appear in any of them.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys

import pytest

from tests.conftest import REPO, synthetic_corpus

pytestmark = pytest.mark.slow


def _canaries(n: int = 6) -> list[str]:
    rnd = random.Random(42)
    word = lambda: "".join(rnd.choice("bcdfghjklmnpqrstvwxz") for _ in range(9))  # noqa: E731
    return [" ".join(word() for _ in range(6)) for _ in range(n)]


def _fedkb(home, *args) -> str:
    out = subprocess.run([sys.executable, "-m", "fedkb.cli", "--home", str(home), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, (args, out.stderr[-3000:])
    return out.stdout + out.stderr


def test_no_canary_reaches_the_server(tmp_path):
    from tokenizer.vocab import Tokenizer

    corpus = synthetic_corpus(tmp_path / "corpus.jsonl", users=40, sentences=15)
    canaries = _canaries()
    with open(corpus, "a", encoding="utf-8") as f:
        for i, text in enumerate(canaries):
            f.write(json.dumps({"user": f"user{i:03d}", "text": text}) + "\n")
    home = tmp_path / "home"
    output = _fedkb(home, "population", "seed", "--corpus", str(corpus))
    output += _fedkb(home, "tokenizer", "train", "--vocab-size", "64", "--k-anonymity", "2")
    output += _fedkb(home, "ngrams", "gather", "--max-per-device", "30")
    output += _fedkb(home, "train", "--rounds", "2", "--preset", "tiny", "--clients-per-round", "4",
                     "--secure-agg", "--dp-noise", "0.3", "--dp-clip", "1.0", "--publish-every", "2")
    output += _fedkb(home, "rollout", "--devices", "20")
    output += _fedkb(home, "eval", "--devices", "20", "--json", str(home / "server" / "eval.json"))
    output += _fedkb(home, "report", "--html", str(home / "server" / "report.html"))

    # The canaries really are on the devices (the search below would find them there).
    assert any(canaries[0].encode() in p.read_bytes() for p in (home / "devices").rglob("*") if p.is_file())
    tok = Tokenizer.load(home / "server" / "tokenizer")
    vocabulary = {tok.piece(i).lstrip("▁") for i in range(tok.vocab_size)}
    secret_words = {w for c in canaries for w in c.split()} - vocabulary
    assert secret_words, "the test needs canary words the vocabulary did not learn"
    needles = [c.encode() for c in canaries] + [w.encode() for w in secret_words]
    files = [p for p in (home / "server").rglob("*") if p.is_file()]
    assert len(files) > 10
    assert any(p.name == "ngrams.tsv.gz" for p in files)  # gathered, and published with the version
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        for needle in needles:
            assert needle not in data, f"{needle.decode()!r} found in {path}"
    for needle in needles:
        assert needle.decode() not in output
    # The report says what left the devices, and the privacy spent.
    report = (home / "server" / "report.html").read_text()
    assert "what left the devices" in report and "masked by simulated secure aggregation" in report
    assert "heavy-hitter sketches" in report and "ε = " in report
