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

from common import live_counts
from keyboard.impressions import TOP, SentenceTracker, chips, ends_sentence
from keyboard.predictor import Learner, Predictor
from keyboard.store import clean_sentence
from tokenizer.words import _WORD as WORD  # the one word notion; its spans locate the word being typed
from tokenizer.words import normalize, typed_word

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


def replay_sentence(predictor: Predictor, tracker: SentenceTracker, sentence: str) -> dict[str, int]:
    """Types ``sentence`` with a :class:`Typist`; the summed counts of the sentences it finished."""
    total, line, typist, after_accept = live_counts.zero(), "", Typist(sentence), False
    while True:
        shown = chips(line, predictor.suggest(line, TOP))
        tracker.shown(line, shown)
        key, value = typist.next_key(shown)
        if key == ENTER:
            if line.strip():
                total = live_counts.add(total, _finish(predictor, tracker, line))
            tracker.reset()
            return total
        if key == ACCEPT:
            before, line = line, accept_into(line, shown[value])
            tracker.accepted(before, shown[value], line)
            after_accept = True
            continue
        if after_accept and value in ATTACHING_PUNCTUATION and line.endswith(" "):
            line = line[:-1]  # TypingInput.attach_punctuation: "cat ," becomes "cat,", a change of its own
        before, line, after_accept = line, line + value, False
        if ends_sentence(before, line):  # as in the app: the line is logged and cleared
            total = live_counts.add(total, _finish(predictor, tracker, line))
            line = ""


def _finish(predictor: Predictor, tracker: SentenceTracker, line: str) -> dict[str, int]:
    """The finished line's counts; a predictor that learns learns it, as ``KeyboardApp.finish_sentence`` does."""
    counts = tracker.finished(line)
    if isinstance(predictor, Learner):
        predictor.observe(clean_sentence(line, where="a replayed sentence"))
    return counts


def replay(predictor: Predictor, sentences: Iterable[str]) -> dict[str, int]:
    """The summed live counts (``common.live_counts.FIELDS``) of typing ``sentences`` with ``predictor``."""
    total, tracker = live_counts.zero(), SentenceTracker()
    for sentence in sentences:
        total = live_counts.add(total, replay_sentence(predictor, tracker, sentence))
    return total
