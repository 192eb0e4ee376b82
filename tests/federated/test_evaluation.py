"""Federated evaluation equals a direct per-device computation; only aggregates leave the devices."""

import json

import numpy as np
import pytest

from federated import registry
from keyboard.store import Device
from lm.config import ModelConfig
from lm.recall import RecallCounts, recall_counts, token_nll
from tokenizer.vocab import Tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt


def _random_version(home, seed=0):
    tok = Tokenizer.load(home.tokenizer)
    v, e, u = tok.vocab_size, 8, 12
    rng = np.random.default_rng(seed)
    weights = {
        "embedding/embeddings": rng.normal(0, 0.5, (v, e)).astype(np.float32),
        "rnn/cell/kernel": rng.normal(0, 0.5, (2 * e, 3 * u)).astype(np.float32),
        "rnn/cell/bias": np.zeros(3 * u, np.float32),
        "rnn/cell/projection": rng.normal(0, 0.5, (u, e)).astype(np.float32),
        "output_bias": rng.normal(0, 0.5, v).astype(np.float32),
    }
    config = ModelConfig(vocab_size=v, embedding_dim=e, lstm_units=u)
    return registry.publish(home.models, weights=weights, config=config, tokenizer_proto=tok.model_proto,
                            round_num=1, metrics={})


def test_federated_eval_equals_direct_per_device_computation(runtime, seeded_home):
    from eval.ngram import UnigramPredictor
    from federated import evaluation
    from federated.population import members

    version = _random_version(seeded_home)
    ids = [m.device_id for m in members(seeded_home)][:20]  # the release minimum
    pooled = []
    for d in ids:
        with Device(seeded_home.device(d)) as dev:
            pooled += dev.splits().train
    unigram = UnigramPredictor.fit(pooled)
    # Two devices fine-tuned personal models: (global, personal) recall@1 .1 -> .3 on 10 and .2 -> .2 on 30.
    for d, n, g1, p1 in ((ids[0], 10, 0.1, 0.3), (ids[1], 30, 0.2, 0.2)):
        (seeded_home.device(d) / "eval").mkdir(exist_ok=True)
        (seeded_home.device(d) / "eval" / "personalization.json").write_text(json.dumps({
            "global_version": version.name, "global": {"recall_at_1": g1, "recall_at_3": 0.5, "predictions": n},
            "personal": {"recall_at_1": p1, "recall_at_3": 0.5, "predictions": n}, "use_personal": p1 > g1}))
    # Live counts: every device typed with the version (A on even devices, B on odd ones); three replayed 0099.
    a, b = ({"words": 10, "shown_at_1": 4, "shown_at_3": 6, "start_at_1": 2, "start_at_3": 3, "accepted": 5,
             "modified": 1, "letters": 40, "letters_saved": 12},
            {"words": 30, "shown_at_1": 6, "shown_at_3": 12, "start_at_1": 3, "start_at_3": 9, "accepted": 9,
             "modified": 0, "letters": 120, "letters_saved": 18})
    for i, d in enumerate(ids):
        with Device(seeded_home.device(d)) as dev:
            dev.add_live_counts(version.name, (a, b)[i % 2])
            if i < 3:
                dev.add_live_counts("0099", a, source="replayed")
    result = evaluation.evaluate(seeded_home, ids, version.name, version.path, {"unigram": unigram})

    suggester = evaluation.load_suggester(version.path)
    direct, uni, nll, tokens, per_device = RecallCounts(), RecallCounts(), 0.0, 0, []
    for d in ids:
        with Device(seeded_home.device(d)) as dev:
            heldout = dev.splits().heldout
        own = recall_counts(suggester, heldout)
        direct, uni = direct + own, uni + recall_counts(unigram, heldout)
        n, t = token_nll(suggester.lm, suggester.tok.encode, heldout)
        nll, tokens = nll + n, tokens + t
        per_device.append(own.recall(1))
        # The device's own result stays on the device.
        record = json.loads((seeded_home.device(d) / "eval" / f"{version.name}.json").read_text())
        assert record["predictions"] == own.predictions and record["recall_at_1"] == own.recall(1)

    assert result["devices"] == len(ids)
    assert result["predictions"] == direct.predictions > 0
    for k in (1, 3, 5):
        assert result[f"recall_at_{k}"] == pytest.approx(direct.recall(k), abs=1e-12)
        assert result["baselines"]["unigram"][f"recall_at_{k}"] == pytest.approx(uni.recall(k), abs=1e-12)
    assert result["oov_rate"] == pytest.approx(direct.oov_rate)
    assert result["token_loss"] == pytest.approx(nll / tokens, rel=1e-9)
    hist = result["per_device_recall_at_1"]["histogram"]
    assert sum(hist["counts"]) == len(ids)
    expected, _ = np.histogram(np.minimum(per_device, 0.999999), bins=hist["edges"])
    assert hist["counts"] == expected.tolist()
    pers = result["personalization"]
    assert pers["devices"] == 2 and pers["predictions"] == 40
    assert pers["global_recall_at_1"] == pytest.approx((1 + 6) / 40)
    assert pers["personal_recall_at_1"] == pytest.approx((3 + 6) / 40)
    assert pers["relative_change_at_1"] == pytest.approx(2 / 7)
    typed = result["live"][version.name]["typed"]
    assert typed["devices"] == 20 and typed["counts"]["words"] == 10 * 10 + 10 * 30
    assert typed["summary"]["keystroke_savings"] == pytest.approx((10 * 12 + 10 * 18) / (10 * 40 + 10 * 120))
    assert typed["summary"]["impression_recall_at_3"] == pytest.approx((10 * 6 + 10 * 12) / 400)
    assert result["live"]["0099"]["replayed"]["withheld"] == "withheld: 3 devices < minimum 20"
    # Nothing per-device in the aggregate.
    assert not any(d in json.dumps(result) for d in ids)
