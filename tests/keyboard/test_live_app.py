"""Live counts from typing in the real app (Pilot), with chips that can be worked out by hand."""

from __future__ import annotations

import io

from rich.console import Console

from common import live_counts
from keyboard.app import KeyboardApp
from keyboard.screens import EvalScreen
from keyboard.store import DeviceError
from tests.keyboard.helpers import VocabularyPredictor


async def press(pilot, *keys: str) -> None:
    """Presses each key and lets its suggestions arrive, as a person who looks at the chips would."""
    for key in keys:
        await pilot.press(key)
        for _ in range(3):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()


async def type_session(pilot) -> None:
    # The chips (VocabularyPredictor): the first three of the, cat, sat, on, mat, a, dog, ran, cats that start
    # with the partial word; so at every word's start (the, cat, sat).
    #
    # 1. "The c" Tab "sat" Enter -> "The cat sat".
    #    the: first at its start: shown@1, start@1.
    #    cat: second at its start (start@3); first after "c" (shown@1); accepted after 1 of 3 letters: 2 saved.
    #    sat: third at its start (start@3); first after "s" (shown@1).
    #    words 3, shown@1 3, shown@3 3, start@1 1, start@3 3, accepted 1, letters "Thecatsat" 9, saved 2.
    await press(pilot, *"The c", "tab", *"sat", "enter")
    # 2. F2 (cat) Backspace "s" -> "cats"; " o" Tab (on); " a m" Tab (mat); "." -> "cats on a mat."
    #    cats: never on the chips at its start; second after "cat" (the line after Backspace): shown@3;
    #          accepted as "cat" and changed: modified, nothing saved.
    #    on: first after "o": shown@1; accepted after 1 of 2 letters: 1 saved.
    #    a: only once complete ("a" -> (a,)), which is not before the word was complete: not shown.
    #    mat: first after "m": shown@1; accepted after 1 of 3 letters: 2 saved.
    #    "." replaces the space the accepted "mat" brought and ends the sentence.
    #    words 4, shown@1 2, shown@3 3, start 0, accepted 3, modified 1, letters "catsonamat." 11, saved 3.
    await press(pilot, "f2", "backspace", "s", *" o", "tab", *"a m", "tab", "full_stop")
    # 3. Incognito: "the dog" Enter counts nothing.
    await press(pilot, "ctrl+n", *"the d", "tab", "enter")
    # 4. Begun in incognito, finished after it is off: what was shown before is unknown, so it counts nothing.
    await press(pilot, *"the ", "ctrl+n", "tab", "enter")


# The sums of sentences 1 and 2.
EXPECTED = {"words": 7, "shown_at_1": 5, "shown_at_3": 6, "start_at_1": 1, "start_at_3": 3, "accepted": 4,
            "modified": 1, "letters": 20, "letters_saved": 5}


async def test_scripted_typing_counts_every_field_by_hand(device):
    app = KeyboardApp(device, VocabularyPredictor("0003 (personalized)"), charging=lambda: None)
    async with app.run_test() as pilot:
        await press(pilot)  # the first chips
        await type_session(pilot)
        assert [s for s, _ in app.recent] == ["The cat sat", "cats on a mat.", "the dog", "the the"]
    assert device.live_counts() == {"0003": EXPECTED}  # kept under the global version personalized from
    assert device.live_counts(source="replayed") == {}
    assert set(EXPECTED) == set(live_counts.FIELDS)


async def test_frequency_fallback_counts_under_none(device):
    app = KeyboardApp(device, VocabularyPredictor(None), charging=lambda: None)
    async with app.run_test() as pilot:
        await press(pilot, *"The c", "tab", *"sat", "enter")
    assert list(device.live_counts()) == ["none"]
    assert device.live_counts()["none"]["accepted"] == 1


async def test_a_failure_to_record_keeps_the_sentence_and_is_told_once(device, monkeypatch):
    def refuse(*args, **kwargs):
        raise DeviceError("disk full")

    monkeypatch.setattr(device, "add_live_counts", refuse)
    app = KeyboardApp(device, VocabularyPredictor(), charging=lambda: None)
    async with app.run_test() as pilot:
        await press(pilot, *"the cat", "enter", *"a dog", "enter")
        assert app.recent == (("the cat", True), ("a dog", True))
        told = [n for n in app._notifications if n.title == "Live counts not recorded"]
        assert len(told) == 1 and "disk full" in told[0].message
    assert device.sentences() == ["the cat", "a dog"]


def shown_text(static) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(static.content)
    return console.export_text()


async def test_eval_screen_shows_the_live_section_after_typing(device):
    app = KeyboardApp(device, VocabularyPredictor("0003"), charging=lambda: None)
    async with app.run_test(size=(140, 60)) as pilot:
        await press(pilot)
        await press(pilot, "ctrl+t")
        assert "no finished sentence counted yet" in shown_text(app.screen.query_one("#live-results"))
        await press(pilot, "escape")
        # "The c" Tab "sat": the shown@1 at start, cat and sat after one letter: shown@1 3/3 = 100.0%,
        # start@1 1/3 = 33.3%, accepted 1/3 = 33.3%, keys saved 2/9 = 22.2%, modified 0/1 = 0.0%.
        await press(pilot, *"The c", "tab", *"sat", "enter", "ctrl+t")
        assert isinstance(app.screen, EvalScreen)
        live = shown_text(app.screen.query_one("#live-results"))
        assert "Live, from your typing" in live
        row = next(line for line in live.splitlines() if "0003" in line)
        assert [c.strip() for c in row.split("│")[1:-1]] == [
            "0003", "3", "100.0%", "100.0%", "33.3%", "100.0%", "33.3%", "22.2%", "0.0%"]
