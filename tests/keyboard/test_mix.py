"""The product: the global LSTM, the published n-grams and the personal model, mixed on the device."""

from __future__ import annotations

import numpy as np
import pytest

from keyboard import install
from keyboard.app import KeyboardApp
from keyboard.mix import MixWeights, ProductPredictor, build_product, fit_weights
from keyboard.predictor import load_predictor
from keyboard.store import Device
from tests.fakes import ngram_model
from tests.keyboard.helpers import publish_random
from tests.keyboard.test_app import settle


class FixedLSTM:
    """Stands in for the LSTM: the same scored words whatever the context."""

    def __init__(self, scored: dict[str, float]):
        self.probs = scored

    def scored(self, words, partial, k):
        found = sorted(((w, np.log(p)) for w, p in self.probs.items() if w.startswith(partial)), key=lambda wp: -wp[1])
        return found[:k]

    def word_log_probs(self, sentences):
        return [np.log(np.array([self.probs.get(w, 1e-9) for w in ws])) for ws in sentences]

    def can_produce(self, word):
        return word in self.probs


def test_mixed_probabilities_are_worked_by_hand():
    personal = ngram_model([["hello", "zorblax"]])
    lstm = FixedLSTM({"there": 0.5, "world": 0.3, "zorblax": 0.0001})
    product = ProductPredictor(lstm, None, personal, MixWeights(lstm=0.6, ngrams=0.0, personal=0.4))
    scores = dict(product.scored(["hello"], "", 5))
    # Personal, after "hello" (seen once, followed by "zorblax"): P1 = 1/3 (hello, zorblax, </s>),
    # P2 = 0.25 + 0.75 · 1/3 = 0.5 and P3 (after <s> hello) = 0.25 + 0.75 · 0.5 = 0.625.
    assert scores["zorblax"] == pytest.approx(0.6 * 0.0001 + 0.4 * 0.625)
    assert scores["there"] == pytest.approx(0.6 * 0.5)
    assert product.suggest("hello ", 3) == ["there", "zorblax", "world"]  # 0.3, 0.25006, 0.18
    assert product.suggest("Hello, zo", 3) == ["zorblax"]


def test_em_moves_the_weight_to_the_part_that_predicts():
    probs = {"lstm": np.full(1000, 0.01), "personal": np.full(1000, 0.5)}
    w = fit_weights(["lstm", "personal"], probs)
    assert w.personal > 0.95 and w.lstm + w.personal == pytest.approx(1.0) and w.ngrams == 0.0
    # Few positions: the prior keeps the weights near its own (0.5 : 0.2 -> 5/7 : 2/7).
    few = fit_weights(["lstm", "personal"], {"lstm": np.array([0.01]), "personal": np.array([0.5])})
    assert 0.2 < few.personal < 0.5
    # Positions no part predicts carry nothing.
    nothing = {"lstm": np.zeros(5), "personal": np.zeros(5)}
    assert fit_weights(["lstm", "personal"], nothing) == MixWeights.prior(["lstm", "personal"])


def test_weights_are_refused_when_they_make_no_mix():
    with pytest.raises(ValueError, match="non-negative"):
        MixWeights(lstm=-0.1)
    with pytest.raises(ValueError, match="positive sum"):
        MixWeights(lstm=0.0, ngrams=0.0, personal=0.0)


def test_personal_model_is_learned_from_the_log_and_the_weights_from_what_follows():
    # A person who repeats themselves: the personal model should get the larger weight.
    lstm = FixedLSTM({"there": 0.5, "world": 0.3})
    product = build_product(["see you at the zorblax cafe"] * 5, lstm=lstm)
    assert product.weights == MixWeights.prior(["lstm", "personal"])  # the train split fits nothing
    assert product.suggest("see you at the ", 1) == ["there"]  # 5/7 · 0.5 beats 2/7 · P_personal
    for _ in range(30):  # held-out and live sentences: each scored by every part, then learned
        product.observe("see you at the zorblax cafe")
    assert product.weights.personal > 0.9 > 0.1 > product.weights.lstm
    assert product.suggest("see you at the ", 1) == ["zorblax"]


async def test_a_word_typed_twice_is_suggested_the_third_time(tmp_path):
    """The keyboard's own product (a real installed model, the personal model, the mix)."""
    version = publish_random(tmp_path / "models")
    with Device(tmp_path / "dev", create=True) as device:
        for sentence in ("good morning", "how are you", "fine thanks", "see you later", "bye now"):
            device.append(sentence)
        install.install(device.directory, version.path)
        app = KeyboardApp(device, predictor_factory=load_predictor, models_dir=None, charging=lambda: None)
        async with app.run_test() as pilot:
            await settle(pilot)
            assert isinstance(app.predictor, ProductPredictor)
            for _ in range(2):
                await pilot.press(*"meet me at the qwertzu", "enter")
                await settle(pilot)
            await pilot.press(*"meet me at the ")
            await settle(pilot)
            assert app.suggestions[0] == "qwertzu"
            await pilot.press("q")
            await settle(pilot)
            assert app.suggestions[0] == "qwertzu"


def test_observe_many_is_observe_one_sentence_at_a_time():
    """load_predictor's fast path: one LSTM batch and one fit give what sentence-by-sentence observe gives."""
    lstm = FixedLSTM({"there": 0.5, "world": 0.3, "see": 0.1})
    ngrams = ngram_model([["see", "you", "there"], ["hello", "world"]])
    sentences = ["see you at the zorblax cafe", "", "hello world", "see you there", "the zorblax cafe again"] * 300
    one, many = build_product([], lstm=lstm, ngrams=ngrams), build_product([], lstm=lstm, ngrams=ngrams)
    fit_from = len(sentences) - 700  # more positions than FIT_POSITIONS: the window is trimmed
    for i, sentence in enumerate(sentences):
        one.observe(sentence, fit=i >= fit_from)
    many.observe_many(sentences, fit_from=fit_from)
    assert many.weights.as_dict() == pytest.approx(one.weights.as_dict(), abs=1e-12)
    assert many.weights != MixWeights.prior(many.parts)
    assert many.personal.unigrams.counts == one.personal.unigrams.counts
    assert [len(x) for x in many._seen["personal"]] == [len(x) for x in one._seen["personal"]]
    assert many.suggest("see you at the ", 3) == one.suggest("see you at the ", 3)
