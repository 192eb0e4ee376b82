"""The per-keystroke predictors: the state-caching model predictor answers exactly like the plain beam."""

from __future__ import annotations

import random

import pytest

from keyboard import install
from keyboard.lm import NumpyLM
from keyboard.mix import ProductPredictor
from keyboard.predictor import FrequencyPredictor, Learner, ModelPredictor, Predictor, load_predictor, split_context
from keyboard.store import Device
from keyboard.suggest import WordSuggester
from tests.keyboard.helpers import WORDS, publish_random
from tokenizer.vocab import Tokenizer


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    return publish_random(tmp_path_factory.mktemp("models"), seed=3)


def _reference(version_dir) -> WordSuggester:
    return WordSuggester(NumpyLM.load(version_dir), Tokenizer.load(version_dir / "spm.model"))


def _random_text(rnd: random.Random) -> str:
    vocabulary = [*WORDS, "zebra", "Cat", "dogs,", "x"]
    words = [rnd.choice(vocabulary) for _ in range(rnd.randint(0, 6))]
    text = " ".join(words)
    cut = rnd.random()
    if cut < 0.3 and text:
        text = text[: rnd.randint(0, len(text))]  # stop inside a word
    elif cut < 0.6:
        text += " " * rnd.randint(1, 2)  # after a space: next word
    return text


def test_split_context():
    assert split_context("") == ([], "")
    assert split_context("the cat sa") == (["the", "cat"], "sa")
    assert split_context("the cat ") == (["the", "cat"], "")
    assert split_context("  ") == ([], "")


def test_model_predictor_equals_word_suggester_on_random_prefixes(version):
    reference, predictor = _reference(version.path), ModelPredictor(version.path)
    assert isinstance(predictor, Predictor) and predictor.version == version.name
    rnd = random.Random(0)
    texts = [_random_text(rnd) for _ in range(150)]
    # Also type sentences keystroke by keystroke, the way the cache is meant to be used.
    for sentence in ("the cat sat on my mat", "good morning love see you tomorrow"):
        texts += [sentence[:i] for i in range(len(sentence) + 1)]
    for text in texts:
        for k in (1, 3):
            assert predictor.suggest(text, k) == reference.suggest(text, k), repr(text)


def test_model_predictor_feeds_only_new_words(version, monkeypatch):
    predictor = ModelPredictor(version.path)
    fed: list[str] = []
    original = predictor.suggester.word_pieces
    monkeypatch.setattr(predictor.suggester, "word_pieces", lambda w: fed.append(w) or original(w))
    for i in range(len("the cat sat on")):
        predictor.suggest("the cat sat on"[: i + 1])
    assert fed == ["the", "cat", "sat"]  # each completed word once; the partial word never
    predictor.suggest("the cat ran ")  # an edited word: only the words after the change are re-run
    assert fed == ["the", "cat", "sat", "ran"]
    predictor.suggest("")  # a new sentence starts from the cached <s> state
    assert fed[-1] == "ran"


def test_model_predictor_suggests_real_words(version):
    predictor = ModelPredictor(version.path)
    got = predictor.suggest("the ", 3)
    assert len(got) == 3 and all(w and " " not in w for w in got)
    assert all(w.startswith("th") for w in predictor.suggest("the th", 3))


def test_frequency_predictor_on_a_hand_made_log():
    log = ["the cat sat", "the cat ran", "the dog sat", "a cat sat on the mat", "then the dog"]
    p = FrequencyPredictor(log)
    assert isinstance(p, Predictor) and isinstance(p, Learner) and p.version is None
    # Counts: the 5, cat 3, sat 3, dog 2, a/ran/on/mat/then 1.
    assert p.suggest("") == ["the", "a", "then"]  # sentence starts: the ×3, a ×1, then ×1 (ties by word)
    assert p.suggest("the ") == ["cat", "dog", "mat"]  # after "the": cat 2, dog 2 (cat more frequent), mat 1
    assert p.suggest("the c") == ["cat"]
    assert p.suggest("zz t") == ["the", "then"]  # unknown previous word: plain counts
    assert p.suggest("the d", k=1) == ["dog"]
    assert p.suggest("the q") == []
    p.observe("the quiet mouse")
    assert p.suggest("the q") == ["quiet"]


def test_frequency_predictor_without_a_log():
    assert FrequencyPredictor().suggest("hel") == []


def test_load_predictor_picks_the_installed_model_or_falls_back(tmp_path, version):
    device_dir = tmp_path / "dev"
    with Device(device_dir, create=True) as device:
        device.append("hello there world")
    fallback = load_predictor(device_dir)
    assert isinstance(fallback, FrequencyPredictor) and fallback.suggest("hel") == ["hello"]
    install.install(device_dir, version.path)
    model = load_predictor(device_dir)
    assert isinstance(model, ProductPredictor) and isinstance(model.lstm, ModelPredictor)
    assert model.version == version.name


def test_load_predictor_falls_back_when_the_model_cannot_run(tmp_path):
    diverged = publish_random(tmp_path / "models", diverged=True)
    device_dir = tmp_path / "dev"
    Device(device_dir, create=True).close()
    install.install(device_dir, diverged.path)  # the files verify; the numbers are unusable
    p = load_predictor(device_dir)
    assert isinstance(p, FrequencyPredictor) and p.reason.startswith(f"model {diverged.name} cannot run")


def test_load_predictor_runs_the_personal_model_where_personalization_chose_it(tmp_path, version, monkeypatch):
    import keyboard.predictor as predictor_module

    device_dir = tmp_path / "dev"
    Device(device_dir, create=True).close()
    install.install(device_dir, version.path)
    personal = publish_random(tmp_path / "personal-models", seed=9, promote=False)
    monkeypatch.setattr(predictor_module, "active_model_dir", lambda d, **_: personal.path)
    p = load_predictor(device_dir)
    assert isinstance(p, ProductPredictor) and p.version == f"{version.name} (personalized)"
    assert p.suggest("the ") == _reference(personal.path).suggest("the ")
