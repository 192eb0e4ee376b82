"""Federated training starts from the pretrained weights, and a resumed run must agree on them (TFF)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.federated.test_pretrain import TINY, public_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt


def _train_config():
    from federated.training import TrainConfig

    return TrainConfig(preset="tiny", clients_per_round=3)


def _round0_weights(session) -> dict[str, np.ndarray]:
    from lm.model import build_model, named_weights

    model = build_model(session.model_config)
    session.process.get_model_weights(session.state).assign_weights_to(model)
    return named_weights(model)


def test_training_starts_from_the_pretrained_weights(runtime, seeded_home, tmp_path):
    from federated import pretrain, program, run_setup

    pretrain.pretrain(seeded_home, public_corpus(tmp_path / "public.txt.gz"), TINY)
    _, tokenizer, model = run_setup.prepare(seeded_home, _train_config())
    start = pretrain.starting_point(seeded_home, tokenizer, model)
    session = program.Session(seeded_home, _train_config())
    round0 = _round0_weights(session)
    assert set(round0) == set(start.weights)
    for name, value in start.weights.items():
        np.testing.assert_array_equal(round0[name], value, err_msg=name)
    init = json.loads(seeded_home.run_json.read_text())["init"]
    assert init == start.init_record and init["from"] == "pretrained"

    session.run_round()
    # Resuming must agree on where the run started; --no-pretrained is another run.
    with pytest.raises(run_setup.TrainError, match="started from pretrained weights .* now random weights"):
        program.Session(seeded_home, _train_config(), pretrained=False)
    assert program.Session(seeded_home, _train_config()).done == 1

    fresh = program.Session(seeded_home, _train_config(), pretrained=False, fresh=True)
    random0 = _round0_weights(fresh)
    assert not np.array_equal(random0["embedding/embeddings"], start.weights["embedding/embeddings"])
    assert json.loads(seeded_home.run_json.read_text())["init"] == {"from": "random"}


def test_a_run_is_refused_when_the_pretrained_model_no_longer_matches(runtime, seeded_home, tmp_path):
    from federated import program
    from federated.pretrain import PretrainError, pretrain
    from federated.vocabulary import train_tokenizer
    from tokenizer.vocab import TokenizerConfig

    pretrain(seeded_home, public_corpus(tmp_path / "public.txt.gz"), TINY)
    train_tokenizer(seeded_home, TokenizerConfig(vocab_size=32))
    with pytest.raises(PretrainError, match="another tokenizer"):
        program.Session(seeded_home, _train_config())
    assert program.Session(seeded_home, _train_config(), pretrained=False).done == 0
