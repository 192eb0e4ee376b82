"""The canary audit's parts without TensorFlow: exposure, exact ranking, planting in a scratch copy.

The end-to-end audit (training with and without DP) is ``tests/test_canaries.py`` (slow).
"""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
import pytest

from eval.audit import (
    AuditError,
    Canary,
    canary_exposure,
    candidate_words,
    check_enumerable,
    draw_canaries,
    exposure,
    rank_of,
    secret_scores,
)
from keyboard.lm import NumpyLM
from tokenizer.specials import BOS_ID
from tokenizer.vocab import Tokenizer, TokenizerConfig, train_from_counts

WORDS = [
    "the", "and", "to", "of", "my", "you", "is", "that", "in", "it", "not", "me", "your", "have", "be",
    "he", "his", "this", "with", "for", "but", "what", "lord", "king", "love", "good", "sword", "night",
    "heart", "death",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    counts = {w: 1000 - 10 * i for i, w in enumerate(WORDS)}
    return Tokenizer(train_from_counts(counts, TokenizerConfig(vocab_size=80)))


def random_lm(vocab_size: int, seed: int = 0, scale: float = 1.0) -> NumpyLM:
    rng = np.random.default_rng(seed)
    e, u = 6, 8
    weights = {"embedding/embeddings": rng.normal(0, scale, (vocab_size, e)),
               "rnn/cell/kernel": rng.normal(0, scale, (2 * e, 3 * u)), "rnn/cell/bias": rng.normal(0, 0.1, 3 * u),
               "rnn/cell/projection": rng.normal(0, scale, (u, e)), "output_bias": rng.normal(0, 1, vocab_size)}
    return NumpyLM({"cifg": True}, weights)


def test_exposure_by_hand():
    assert exposure(1, 8) == 3.0  # the most likely of 8: log2 8
    assert exposure(8, 8) == 0.0
    assert exposure(4, 1024) == 8.0
    assert exposure(2.5, 10) == pytest.approx(math.log2(4))
    with pytest.raises(ValueError, match="rank must be in 1..8"):
        exposure(0, 8)
    with pytest.raises(ValueError, match="rank must be in 1..8"):
        exposure(9, 8)


def test_rank_counts_more_likely_candidates_and_half_the_ties():
    scores = np.array([3.0, 1.0, 2.0, 2.0, 5.0])  # log-perplexities; the canary scores 2.0
    assert rank_of(2.0, scores) == 1 + 1 + 0.5  # 1.0 beats it, one other ties
    assert rank_of(1.0, scores) == 1
    assert rank_of(5.0, scores) == 5
    assert rank_of(7.0, np.full(8, 7.0)) == 4.5  # a model that tells nothing apart ranks it in the middle


def test_candidate_words_are_single_piece_words(tok):
    ids = candidate_words(tok, 10)
    assert len(ids) == 10
    for i in ids:
        word = tok.piece(i)[1:]
        assert tok.encode(word) == [i] and word.isalpha()
    assert len(candidate_words(tok, 10_000)) < 10_000  # no more than the tokenizer has


def test_canaries_are_drawn_from_the_candidates_deterministically(tok):
    ids = candidate_words(tok, 12)
    words = {tok.piece(i)[1:] for i in ids}
    a = draw_canaries(tok, ids, 5, prefix_words=3, secret_words=2, rng=np.random.default_rng(7))
    b = draw_canaries(tok, ids, 5, prefix_words=3, secret_words=2, rng=np.random.default_rng(7))
    assert a == b and len({c.prefix for c in a}) == 5
    assert all(len(c.prefix) == 3 and len(c.secret) == 2 and set(c.prefix + c.secret) <= words for c in a)
    assert a[0].text == " ".join(a[0].prefix + a[0].secret)


def test_secret_scores_enumerate_every_candidate_as_a_full_run_would(tok):
    """Each candidate's score is -log p(secret | <s> prefix) from running the whole sentence."""
    lm = random_lm(tok.vocab_size)
    ids = candidate_words(tok, 5)
    prefix = tok.encode("my good lord")
    scores = secret_scores(lm, prefix, ids, 3, chunk=7)  # a chunk that splits the levels unevenly
    assert scores.shape == (125,)
    for k, combo in enumerate(itertools.product(range(5), repeat=3)):
        secret = [ids[i] for i in combo]
        logp, _ = lm.run(prefix + secret)  # log-probs after <s>, after each prefix piece, ...
        expected = -sum(logp[len(prefix) + j][secret[j]] for j in range(3))
        assert scores[k] == pytest.approx(expected, rel=1e-5), combo


class BigramLM:
    """A stand-in for the numpy LM whose next-piece log-probs depend only on the last piece fed."""

    def __init__(self, table: np.ndarray):
        self.table = table  # [V, V] log-probs

    def zero_state(self, batch):
        return np.full((batch, 1), BOS_ID, np.int64), np.zeros((batch, 1))

    def cell(self, tokens, state):
        return np.asarray(tokens, np.int64).reshape(-1, 1), state[1][: np.size(tokens)]

    def log_probs(self, h):
        return self.table[h[:, 0]]


def test_a_memorized_canary_has_the_largest_exposure_and_a_blind_model_about_one_bit(tok):
    ids = candidate_words(tok, 16)
    canary = draw_canaries(tok, ids, 1, prefix_words=2, secret_words=2, rng=np.random.default_rng(1))[0]
    v = tok.vocab_size
    uniform = np.full((v, v), -np.log(v))
    blind = canary_exposure(BigramLM(uniform), tok, canary, ids)
    space = len(ids) ** 2
    assert blind["space"] == space and blind["exposure"] == pytest.approx(math.log2(space) - math.log2((space + 1) / 2))
    memorized = uniform.copy()
    last = tok.encode(" ".join(canary.prefix))[-1]
    first, second = (tok.encode(w)[0] for w in canary.secret)
    memorized[last, first] = memorized[first, second] = -0.1  # the canary's secret follows its prefix
    seen = canary_exposure(BigramLM(memorized), tok, canary, ids)
    assert seen["rank"] == 1 and seen["exposure"] == pytest.approx(math.log2(space))


def test_a_secret_outside_the_candidates_is_refused(tok):
    ids = candidate_words(tok, 4)
    with pytest.raises(AuditError, match="'zebra' is not among the candidate words"):
        canary_exposure(random_lm(tok.vocab_size), tok, Canary(("the",), ("zebra",)), ids)


def test_a_space_too_large_to_enumerate_is_refused():
    check_enumerable(300, 2)
    with pytest.raises(AuditError, match="lower --space or --secret-words"):
        check_enumerable(1000, 3)


# -- planting, in a scratch copy only ------------------------------------------------------------
def _digest(root) -> dict[str, str]:
    """Every file's sha256, but SQLite's shared-memory index and an empty write-ahead log, which
    any reader of a WAL database may create (they hold no data)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith("-shm")
            and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


def test_planting_writes_only_the_scratch_copy(seeded_home, tmp_path):
    from federated.audit import AuditConfig, plant, scratch_population
    from keyboard.store import Device

    before = _digest(seeded_home.root)
    scratch, device_ids = scratch_population(seeded_home, tmp_path / "work", devices=12)
    assert len(device_ids) == 12 and scratch.root == tmp_path / "work" / "planted"
    canaries = [Canary(("the", "red"), ("ball", "park")), Canary(("my", "big"), ("dog", "cat"))]
    config = AuditConfig(canaries=2, canary_devices=3, repeats=4)
    where = plant(scratch, canaries, device_ids, config, min_examples=5, rng=np.random.default_rng(0))
    assert _digest(seeded_home.root) == before  # the home, devices and server alike, is unchanged
    assert sorted(len(d) for d in where.values()) == [3, 3] and len({d for ds in where.values() for d in ds}) == 6
    for canary in canaries:
        for d in device_ids:
            with Device(scratch.device(d)) as device:
                splits = device.splits()
            expected = config.repeats if d in where[canary.text] else 0
            assert splits.train.count(canary.text) == expected and canary.text not in splits.heldout
            assert splits.train[:expected] == [canary.text] * expected  # planted as the oldest sentences
    from federated.population import members

    assert [m.device_id for m in members(scratch)] == device_ids
    assert (scratch.tokenizer / "spm.model").read_bytes() == (seeded_home.tokenizer / "spm.model").read_bytes()


def test_planting_needs_enough_devices(seeded_home, tmp_path):
    from federated.audit import AuditConfig, plant, scratch_population

    scratch, device_ids = scratch_population(seeded_home, tmp_path / "work", devices=3)
    with pytest.raises(AuditError, match="2 canaries on 2 devices each need 4 devices .* has 3"):
        plant(scratch, [Canary(("a",), ("b",)), Canary(("c",), ("d",))], device_ids,
              AuditConfig(canaries=2, canary_devices=2), min_examples=5, rng=np.random.default_rng(0))


def test_audit_settings_are_checked():
    from federated.audit import AuditConfig

    with pytest.raises(AuditError, match="--repeats must be at least 1, got 0"):
        AuditConfig(repeats=0)
    with pytest.raises(AuditError, match="--devices must be at least 2"):
        AuditConfig(devices=1)


# -- the command refuses bad input before TensorFlow starts --------------------------------------
@pytest.mark.parametrize("extra, message", [
    ([], "has only {found} pieces that are whole words, fewer than --space 300; lower --space"),
    (["--space", "4", "--dp-noise", "0"], "--dp-noise: every level must be > 0"),
    (["--space", "4", "--work", "{home}/server/w"], "is inside the home"),
    (["--space", "4", "--work", "{full}"], "must be a new or empty folder"),
    (["--space", "4", "--dp-noise", "1,x"], "not a comma-separated list of numbers"),
    (["--space", "4", "--repeats", "0"], "--repeats must be at least 1, got 0"),
])
def test_bad_audit_options_are_refused_with_what_and_where(seeded_home, tmp_path, capsys, extra, message):
    from fedkb.cli import main

    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    found = len(candidate_words(Tokenizer.load(seeded_home.tokenizer), 300))
    args = [a.format(home=seeded_home.root, full=full) for a in extra]
    try:
        code = main(["--home", str(seeded_home.root), "audit", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code in (1, 2)
    assert message.format(found=found) in capsys.readouterr().err


def test_an_audit_of_an_empty_home_says_what_to_run_first(tmp_path, capsys):
    from fedkb.cli import main

    assert main(["--home", str(tmp_path / "nothing"), "audit"]) == 1
    assert "no devices in" in capsys.readouterr().err


def test_the_table_shows_each_canary_the_mean_and_the_unplanted_controls(tmp_path):
    import io
    import json

    from rich.console import Console

    from eval.audit import RESULT_FILE, load_result, render_terminal, summary_table

    result = {
        "runs": [{"name": "no-dp", "rounds_with_canary_device": [3, 4],
                  "versions": [{"version": "0001", "round": 10, "exposures": [12.0, 9.5], "mean_exposure": 10.75,
                                "mean_control_exposure": 1.25, "loss": 5.0, "privacy": None}]},
                 {"name": "dp-z1", "rounds_with_canary_device": [3, 4],
                  "versions": [{"version": "0001", "round": 10, "exposures": [1.0, 2.0], "mean_exposure": 1.5,
                                "mean_control_exposure": 1.0, "loss": 6.0,
                                "privacy": {"epsilon": 3.5, "delta": 1e-3}}]}],
        "canaries": [{"text": "a b c", "secret": "c", "devices": ["d1"]},
                     {"text": "d e f", "secret": "f", "devices": ["d2"]}],
        "controls": [{"text": "g h i", "secret": "i"}, {"text": "j k l", "secret": "l"}],
        "config": {"repeats": 10}, "max_exposure": 16.5, "space": 90000, "population": 20, "rounds": 10,
        "train": {"clients_per_round": 5, "preset": "small"}, "method": "exact",
    }
    assert summary_table(result) == [("no-dp", "0001", "10", "12.0", "9.5", "10.8", "1.2"),
                                     ("dp-z1", "0001", "10", "1.0", "2.0", "1.5", "1.0")]
    out = io.StringIO()
    render_terminal(result, Console(file=out, width=200))
    assert "'a b c' (secret 'c') × 10 on 1 device(s)" in out.getvalue() and "ε = 3.50" in out.getvalue()
    assert load_result(tmp_path) is None
    (tmp_path / RESULT_FILE).write_text(json.dumps(result))
    assert load_result(tmp_path) == result
    (tmp_path / RESULT_FILE).write_text("[1, 2]")
    with pytest.raises(AuditError, match="audit.json: unreadable .*not an audit result"):
        load_result(tmp_path)
