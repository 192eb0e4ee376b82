"""Public-data pretraining on the tiny preset: the saved model, its record, and when it is refused."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from federated import pretrain  # noqa: E402
from federated.pretrain import PretrainConfig, PretrainError  # noqa: E402
from lm.config import preset  # noqa: E402
from tokenizer.vocab import Tokenizer  # noqa: E402

TINY = PretrainConfig(preset="tiny", tokens=12_000, learning_rate=1e-2, batch_size=16)


def public_corpus(path: Path, lines: int = 300, seed: int = 1) -> Path:
    """Formal-ish sentences with a strong pattern ("the X of the Y"), gzip-compressed."""
    rnd = random.Random(seed)
    nouns = ["cat", "dog", "park", "mat", "ball", "night", "morning"]
    text = "".join(f"The {rnd.choice(nouns)} of the {rnd.choice(nouns)} sat on a red mat, and then ran.\n"
                   for _ in range(lines))
    path.write_bytes(gzip.compress(text.encode()))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return public_corpus(tmp_path / "public.txt.gz")


def _loss(weights, config, examples) -> float:
    from lm.model import MaskedCrossEntropy, assign_named_weights, build_model

    model = build_model(config)
    if weights is not None:
        assign_named_weights(model, weights)
    return float(MaskedCrossEntropy()(examples[:, 1:], model(examples[:, :-1])))


def test_pretraining_lowers_the_loss_on_the_public_text(seeded_home, corpus):
    from federated.central import fit
    from federated.public_text import read
    from lm.examples import encode_examples

    record = pretrain.pretrain(seeded_home, corpus, TINY)
    tok = Tokenizer.load(seeded_home.tokenizer)
    config = preset("tiny", vocab_size=tok.vocab_size)
    start = pretrain.starting_point(seeded_home, tok, config)
    examples = encode_examples(tok.encode, read(corpus).passages, config.sequence_length)
    untrained = fit(config, examples, batch_size=16, learning_rate=1e-2, seed=0, token_budget=1).weights
    before, after = _loss(untrained, config, examples), _loss(start.weights, config, examples)
    assert after < before - 1.0, (before, after)
    curve = record["loss_curve"]
    assert curve[-1][1] < curve[0][1] - 1.0 and curve[-1][0] == record["tokens_trained"] >= TINY.tokens
    assert record["stopped_by"] == "tokens" and record["tokenizer_sha256"] == tok.sha256
    assert record["corpus"]["path"] == str(corpus) and record["corpus"]["passages"] == 300
    assert record["model"]["vocab_size"] == tok.vocab_size


def test_the_saved_model_is_complete_and_checked(seeded_home, corpus):
    import hashlib

    from lm.config import ModelConfig
    from lm.model import build_model, named_weights

    pretrain.pretrain(seeded_home, corpus, TINY)
    files = sorted(p.name for p in seeded_home.pretrained.iterdir())
    assert files == ["model.json", "pretrain.json", "weights.npz"]
    record = json.loads((seeded_home.pretrained / "pretrain.json").read_text())
    for name in ("model.json", "weights.npz"):
        assert record["files"][name] == hashlib.sha256((seeded_home.pretrained / name).read_bytes()).hexdigest()
    config = ModelConfig.from_json((seeded_home.pretrained / "model.json").read_text())
    with np.load(seeded_home.pretrained / "weights.npz") as npz:
        assert set(npz.files) == set(named_weights(build_model(config)))
    assert not list(seeded_home.server.glob(".pretrained.*"))  # no temporary folder left behind
    # A damaged file is refused, not used.
    (seeded_home.pretrained / "weights.npz").write_bytes(b"not numpy")
    with pytest.raises(PretrainError, match="sha256 does not match"):
        pretrain.starting_point(seeded_home, Tokenizer.load(seeded_home.tokenizer), config)


def test_a_pretrained_model_is_refused_after_the_tokenizer_changed(seeded_home, corpus):
    from federated.vocabulary import train_tokenizer
    from tokenizer.vocab import TokenizerConfig

    pretrain.pretrain(seeded_home, corpus, TINY)
    assert pretrain.reusable(seeded_home, corpus, TINY) is not None
    train_tokenizer(seeded_home, TokenizerConfig(vocab_size=32))
    tok = Tokenizer.load(seeded_home.tokenizer)
    with pytest.raises(PretrainError, match="another tokenizer.*fedkb pretrain.*--no-pretrained"):
        pretrain.starting_point(seeded_home, tok, preset("tiny", vocab_size=tok.vocab_size))
    assert pretrain.reusable(seeded_home, corpus, TINY) is None
    record = pretrain.pretrain(seeded_home, corpus, TINY)  # pretraining again redoes it
    assert record["tokenizer_sha256"] == tok.sha256
    assert pretrain.starting_point(seeded_home, tok, preset("tiny", vocab_size=tok.vocab_size)) is not None


def test_a_pretrained_model_is_refused_for_another_model(seeded_home, corpus):
    pretrain.pretrain(seeded_home, corpus, TINY)
    tok = Tokenizer.load(seeded_home.tokenizer)
    with pytest.raises(PretrainError, match="another model.*embedding_dim 16 vs 64.*--preset"):
        pretrain.starting_point(seeded_home, tok, preset("small", vocab_size=tok.vocab_size))
    assert pretrain.reusable(seeded_home, corpus, PretrainConfig(preset="small")) is None


def test_no_pretrained_model_means_random_init(seeded_home):
    tok = Tokenizer.load(seeded_home.tokenizer)
    assert pretrain.starting_point(seeded_home, tok, preset("tiny", vocab_size=tok.vocab_size)) is None


def test_an_interrupted_swap_is_not_mistaken_for_no_pretraining(seeded_home):
    (seeded_home.server / ".pretrained.old-123").mkdir(parents=True)
    with pytest.raises(PretrainError, match="interrupted"):
        pretrain.read_record(seeded_home)


def test_refuses_without_a_tokenizer(home, corpus):
    with pytest.raises(PretrainError, match="no tokenizer.*fedkb tokenizer train"):
        pretrain.pretrain(home, corpus, TINY)


def test_bad_corpus_is_refused_before_training(seeded_home, tmp_path):
    from federated.public_text import PublicTextError

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\nbad \xff line\n")
    with pytest.raises(PublicTextError, match=r"bad\.txt:2: invalid UTF-8"):
        pretrain.pretrain(seeded_home, bad, TINY)
    assert not seeded_home.pretrained.exists()


def test_a_wall_clock_budget_stops_training(seeded_home, corpus):
    record = pretrain.pretrain(seeded_home, corpus, PretrainConfig(preset="tiny", tokens=None, seconds=1.5))
    assert record["stopped_by"] == "seconds" and 1.5 <= record["seconds"] < 10
    assert record["tokens_trained"] > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"tokens": None, "seconds": None}, "needs a token budget"),
    ({"tokens": 0}, "token budget must be at least 1"),
    ({"seconds": -1.0}, "wall-clock budget must be positive"),
    ({"learning_rate": 0.0}, "learning rate must be positive"),
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"preset": "huge"}, "unknown preset"),
])
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PretrainConfig(**kwargs)
