"""A simulated typist: types sentences through the keyboard's own chips and counter, without a screen.

The typist types each sentence character by character and, as soon as a chip shows the word it is
typing (compared as words of ``tokenizer/words.py``, so case does not matter) while that word is
still incomplete, accepts the leftmost such chip, as a person who watches the chips would. The
line then behaves as the keyboard's line does (``keyboard/widgets.py``, ``TypingInput``): the
accepted word replaces the partial word and brings a space, which the typist does not type again
and which punctuation typed next replaces. The chips come from :func:`keyboard.impressions.chips`
and are counted by :class:`keyboard.impressions.SentenceTracker`, exactly as in the app, and a
sentence ends as in the app: on . ! ? after a word, or with Enter at its end; and, as in the app, a
predictor that learns from finished sentences (``Learner``, such as the product) learns each one.

:class:`Typist` only decides the next key, so the same decisions can drive the real app with Pilot
(``bench/typing_replay.py`` checks both give the same counts).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from common import live_counts
from keyboard.controls import blocked_words, learnable_splits, suggested_words
from keyboard.impressions import TOP, SentenceTracker, base_version, chips, ends_sentence
from keyboard.predictor import Learner, Predictor, load_predictor
from keyboard.store import Device, clean_sentence
from tokenizer.words import (
    WORD,  # the one word notion; its spans locate the word being typed
    normalize,
    typed_word,
)

ACCEPT, TYPE, ENTER = "accept", "type", "enter"
ATTACHING_PUNCTUATION = ",.;:!?"  # as keyboard.widgets: typed after an accepted word, replaces its space


class Typist:
    """Decides each next key of ``sentence``: ``(ACCEPT, chip index)``, ``(TYPE, character)`` or ``(ENTER, "")``."""

    def __init__(self, sentence: str) -> None:
        self.sentence = sentence
        self._spans = [m.span() for m in WORD.finditer(sentence.replace("\u2019", "'"))]
        self._pos = 0  # characters of the sentence already on the line (typed or accepted)
        self._after_accept = False  # the line ends with the space an accepted word brought

    def next_key(self, shown: tuple[str, ...]) -> tuple[str, int | str]:
        """The next key, given the chips on screen now."""
        if self._after_accept and self._pos < len(self.sentence) and self.sentence[self._pos] == " ":
            self._pos += 1  # the accepted word brought this space
        self._after_accept = False
        if self._pos >= len(self.sentence):
            return ENTER, ""
        span = next(((a, b) for a, b in self._spans if a <= self._pos < b), None)
        if span is not None:  # inside a word, or at its start: accept it once a chip shows it
            target = normalize(self.sentence[span[0]:span[1]])
            for index, chip in enumerate(shown[:TOP]):
                if normalize(chip) == target:
                    self._pos, self._after_accept = span[1], True
                    return ACCEPT, index
        self._pos += 1
        return TYPE, self.sentence[self._pos - 1]


def accept_into(line: str, word: str) -> str:
    """The line after accepting ``word`` (``TypingInput.accept``): the partial word replaced, a space after."""
    return f"{line[: len(line) - len(typed_word(line))]}{word} "


class _Keyboard:
    """The line, its chips and the counter, changed as the app changes them; the chips are asked for
    after each change of the line, as the app asks after each of its ``Changed`` events."""

    def __init__(self, predictor: Predictor, blocked: frozenset[str] = frozenset()) -> None:
        self.predictor, self.blocked = predictor, blocked
        self.tracker, self.total = SentenceTracker(), live_counts.zero()
        self.line, self.after_accept = "", False
        self._show()

    def press(self, key: str, value: int | str) -> None:
        if key == ACCEPT:
            before, word = self.line, self.shown[value]
            self.line, self.after_accept = accept_into(before, word), True
            self.tracker.accepted(before, word, self.line)
        elif key == ENTER:
            if not self.line.strip():
                return  # the app logs nothing and keeps the line
            self._finish()
            return
        else:
            if self.after_accept and value in ATTACHING_PUNCTUATION and self.line.endswith(" "):
                self.line = self.line[:-1]  # TypingInput.attach_punctuation: "cat ," -> "cat,", a change of its own
            before, self.line, self.after_accept = self.line, self.line + value, False
            if ends_sentence(before, self.line):  # the app logs it and clears the line
                self._finish()
                return
        self._show()

    def _show(self) -> None:
        self.shown = chips(self.line, suggested_words(self.predictor, self.line, self.blocked, TOP))
        self.tracker.shown(self.line, self.shown)

    def _finish(self) -> None:
        """As ``KeyboardApp.finish_sentence``: counted, learned by a predictor that learns, the line cleared."""
        self.total = live_counts.add(self.total, self.tracker.finished(self.line))
        if isinstance(self.predictor, Learner):
            self.predictor.observe(clean_sentence(self.line, where="a replayed sentence"))
        self.line = ""
        self._show()


def replay(predictor: Predictor, sentences: Iterable[str], *, blocked: frozenset[str] = frozenset()) -> dict[str, int]:
    """The summed live counts (``common.live_counts.FIELDS``) of typing ``sentences`` with ``predictor``,
    never shown a word of ``blocked`` (the device's block list, ``keyboard/controls.py``)."""
    keyboard = _Keyboard(predictor, blocked)
    for sentence in sentences:
        typist = Typist(sentence)
        while True:
            key, value = typist.next_key(keyboard.shown)
            keyboard.press(key, value)
            if key == ENTER:
                break
    return keyboard.total


def replay_on_device(device_dir: Path, sentences: int) -> tuple[str, dict[str, int]] | None:
    """A simulated typist types the device's newest ``sentences`` held-out sentences with the device's
    own predictor (built as the keyboard builds it, but without those sentences) and block list; the
    counts are kept on the device under the source "replayed". Returns (version, counts), or None
    for a device with no held-out sentence."""
    with Device(device_dir) as device:
        typed = learnable_splits(device).heldout[-sentences:] if sentences > 0 else []
        blocked = blocked_words(device)
    if not typed:
        return None
    predictor = load_predictor(device_dir, hold_back=len(typed))
    counts = replay(predictor, typed, blocked=blocked)
    version = base_version(predictor.version)
    with Device(device_dir) as device:
        device.add_live_counts(version, counts, source="replayed")
    return version, counts
