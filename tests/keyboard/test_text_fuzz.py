"""The keyboard's text handling under arbitrary typing and pasting.

``split_context`` turns the line into context words and the partial word; the app turns Enter,
``. ! ?`` and pastes into log appends. Whatever arrives, suggestions never fail, every logged
sentence is exactly what the log's rule makes of the line, a refused line stays for editing,
nothing already logged is lost, and no notification text can stop the app.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual import events

from keyboard.app import KeyboardApp, ends_sentence
from keyboard.predictor import FrequencyPredictor, ModelPredictor, split_context
from keyboard.store import MAX_SENTENCE_CHARS, Device
from keyboard.widgets import TypingInput
from tests.keyboard.helpers import FakePredictor, publish_random
from tokenizer.vocab import TokenizerError
from tokenizer.words import typed_word
from tokenizer.words import words as words_of

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

odd = st.sampled_from(["\x00", "\t", "\n", "\r\n", "\x0b", "\x1b[31m", "\u00a0", "\u2028", "\u200b", "\ufeff",
                       "\U0001f600", "e\u0301", "[/]", "[bold]", ".", "!", "?", ",", " ", "  "])
any_char = st.characters(codec=None, categories=None)  # lone surrogates included


def strings(*parts: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    """Text made of pieces that may be longer than one character (escape sequences, markup, CRLF)."""
    return st.lists(st.one_of(*parts), max_size=max_size).map("".join)


line_text = strings(any_char, odd, st.sampled_from(["the", "cat", "sat", " "]), max_size=30)


def has_word(text: str) -> bool:
    """Stated independently of the app: some character that is not space, NUL or sentence punctuation."""
    return any(not (c.isspace() or c == "\x00" or c in ".!?") for c in text)


def expected_stored(text: str) -> str | None:
    """What the log stores for a finished line, or None when it refuses it (see keyboard/store.py)."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return None
    cleaned = " ".join(text.replace("\x00", " ").split())
    return cleaned if cleaned and len(cleaned) <= MAX_SENTENCE_CHARS else None


# -- context words and the partial word ------------------------------------------------------------
@given(line_text)
@FUZZ
def test_split_context_reads_the_words_and_keeps_the_partial_word_last(text):
    words, partial = split_context(text)
    assert all(w and not any(c.isspace() for c in w) for w in words)
    assert not any(c.isspace() for c in partial)
    assert words == words_of(text[: len(text) - len(typed_word(text))])
    assert words + words_of(partial) == words_of(text)
    if not text or text[-1].isspace():
        assert partial == ""
    else:
        assert text.replace("\u2019", "'").lower().endswith(partial)


@given(strings(any_char, odd, max_size=20), strings(any_char, odd, max_size=4))
@FUZZ
def test_ends_sentence_only_on_added_punctuation_after_a_word(previous, added):
    text = previous + added
    assert ends_sentence(previous, text) == (bool(added) and text[-1] in ".!?" and has_word(text[:-1]))
    assert not ends_sentence(text, previous) or len(previous) > len(text)


@given(st.lists(st.text(st.sampled_from("ab c.\u00e9"), min_size=1, max_size=12), max_size=6), line_text)
@FUZZ
def test_word_count_suggestions_complete_the_partial_word(sentences, text):
    predictor = FrequencyPredictor([s for s in sentences if s.split()])
    _, partial = split_context(text)
    out = predictor.suggest(text, 3)
    assert len(out) <= 3 and len(set(out)) == len(out)
    assert all(w.startswith(partial) and w for w in out)


@pytest.fixture(scope="module")
def model_predictor():
    with tempfile.TemporaryDirectory() as tmp:
        version = publish_random(Path(tmp) / "models")
        yield ModelPredictor(version.path)


@given(line_text)
@FUZZ
def test_model_suggestions_for_any_line(model_predictor, text):
    _, partial = split_context(text)
    try:
        out = model_predictor.suggest(text, 3)
    except TokenizerError as exc:  # the app never asks for these (see is_text), but the error is clear
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        assert "lone surrogate" in str(exc)
        return
    assert len(out) <= 3 and len(set(out)) == len(out)
    assert all(w and w.startswith(partial) and not any(c.isspace() for c in w) for w in out)


# -- the app: typing, pasting and Enter --------------------------------------------------------------
paste_text = st.one_of(
    line_text,
    st.lists(line_text, min_size=2, max_size=3).map("\n".join),  # only the first line is inserted
    st.builds(lambda n, end: "x" * n + end, st.sampled_from([MAX_SENTENCE_CHARS - 3, MAX_SENTENCE_CHARS + 1,
                                                             1_000_000]), st.sampled_from(["", ".", " ok"])),
    st.just("first line only\n" + "y" * 1_000_000),
)
actions = st.lists(st.one_of(
    st.tuples(st.just("paste"), paste_text),
    st.tuples(st.just("set"), line_text),  # whatever a terminal might leave in the line
    st.tuples(st.just("type"), st.text(st.sampled_from("ab .!?,"), min_size=1, max_size=5)),
    st.tuples(st.sampled_from(["enter", "tab", "incognito"]), st.just("")),
), min_size=1, max_size=8)


async def _settle(pilot) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def _check_logged(new: list[str]) -> None:
    for s in new:
        assert s and s == " ".join(s.split()) and "\x00" not in s and len(s) <= MAX_SENTENCE_CHARS
        s.encode("utf-8")


def _expect_finish(line: str, incognito: bool) -> tuple[list[str], str]:
    """(sentences logged, line left) when ``line`` is finished."""
    if not line.strip():
        return [], line
    if incognito:
        return [], ""
    stored = expected_stored(line)
    return ([stored], "") if stored is not None else ([], line)


async def _drive(device: Device, script: list[tuple[str, str]], predictor) -> list[str]:
    app = KeyboardApp(device, predictor, charging=lambda: None, train_command=None)
    async with app.run_test(notifications=True) as pilot:  # notifications on: their text is rendered
        box = app.query_one(TypingInput)
        for kind, arg in script:
            before, line, incognito = device.sentences(), box.value, app.incognito
            if kind == "paste":
                box.post_message(events.Paste(arg))
            elif kind == "set":
                box.value = arg
                box.cursor_position = len(arg)
            elif kind == "type":
                await pilot.press(*arg)
            else:
                await pilot.press({"enter": "enter", "tab": "tab", "incognito": "ctrl+n"}[kind])
            await _settle(pilot)
            after = device.sentences()
            assert after[: len(before)] == before, "a logged sentence was lost"
            new = after[len(before):]
            _check_logged(new)
            if kind == "enter":
                assert (new, box.value) == _expect_finish(line, incognito), (line[:60], new)
            elif kind in ("paste", "set"):
                first = (arg.splitlines() or [""])[0] if kind == "paste" else arg
                if kind == "paste" and len(line) + len(first) > MAX_SENTENCE_CHARS:
                    assert (new, box.value) == ([], line)  # refused, with a notice
                    continue
                typed = line + first if kind == "paste" else arg
                if len(typed) > len(line) and typed[-1] in ".!?" and has_word(typed[:-1]):
                    assert (new, box.value) == _expect_finish(typed, incognito)
                else:
                    assert (new, box.value) == ([], typed)
            elif kind == "type":  # each . ! ? typed after a word may finish one sentence
                assert len(new) <= sum(c in ".!?" for c in arg)
            else:  # an accepted word ends with a space; incognito only changes what later lines do
                assert new == []
        failed = [n.message for n in app._notifications if n.title == "Suggestions failed"]
        assert not failed, failed
    return device.sentences()


@given(actions)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_typing_and_pasting_logs_by_the_rule_and_loses_nothing(model_predictor, script):
    with tempfile.TemporaryDirectory() as tmp, Device(Path(tmp) / "d", create=True) as device:
        device.append("logged before the session", timestamp=1)
        final = asyncio.run(_drive(device, script, model_predictor))
        assert final[0] == "logged before the session"


def test_a_paste_of_a_megabyte_is_refused_and_typing_goes_on(tmp_path):
    with Device(tmp_path / "d", create=True) as device:
        device.append("kept", timestamp=1)
        script = [("type", "ab"), ("paste", "z" * 1_000_000), ("type", "c."), ("paste", "\x00\ud800 x"),
                  ("enter", ""), ("set", "fine"), ("enter", "")]
        assert asyncio.run(_drive(device, script, FakePredictor())) == ["kept", "abc.", "fine"]


# -- notifications carry outside text: it is shown as text, never parsed as markup --------------------
class RaisingPredictor(FakePredictor):
    def suggest(self, text: str, k: int = 3) -> list[str]:
        raise RuntimeError(f"[/] could not handle [bold]{text}")


async def test_a_version_name_that_looks_like_markup_does_not_stop_the_app(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "registry.json").write_text(json.dumps({"latest": "[/]"}))
    with Device(tmp_path / "d", create=True) as device:
        app = KeyboardApp(device, FakePredictor(), models_dir=models, charging=lambda: None, train_command=None)
        async with app.run_test(notifications=True) as pilot:
            await pilot.press("ctrl+r")
            await _settle(pilot)
            await pilot.pause(0.2)  # the toasts render
            assert any("'[/]'" in n.message for n in app._notifications)
            await pilot.press(*"still typing", "enter")
            await _settle(pilot)
        assert device.sentences() == ["still typing"]


async def test_an_error_message_that_looks_like_markup_does_not_stop_the_app(tmp_path):
    with Device(tmp_path / "d", create=True) as device:
        app = KeyboardApp(device, RaisingPredictor(), charging=lambda: None, train_command=None)
        async with app.run_test(notifications=True) as pilot:
            await pilot.press(*"a [/x] b")
            await _settle(pilot)
            await pilot.pause(0.2)
            assert any("[/]" in n.message for n in app._notifications if n.title == "Suggestions failed")
            await pilot.press("enter")
            await _settle(pilot)
        assert device.sentences() == ["a [/x] b"]
