"""What the chips did for one sentence while it was typed: the live counts of ``common/live_counts.py``.

The app (``keyboard/app.py``) and the simulated typist (``keyboard/replay.py``) both show chips with
:func:`chips` and count with :class:`SentenceTracker`, so a replay measures what the keyboard
measures. Words are those of ``tokenizer/words.py``: lower-cased, so "The" on a chip is the word
"the" typed, and punctuation is never a word.

A word is identified by its position in the sentence (0 for the first word). The tracker keeps,
per position, every (prefix typed, chips shown) pair and the last chip accepted there; only when the
sentence finishes does it know the words, and it judges each word against what was seen at its
position. So backspacing and retyping, accepting and then editing, or a word that only showed after
some letters all come out of one rule: a word was *shown* when some chips at its position, with a
typed prefix that is a proper prefix of the word, held it; *at its start* when that prefix was empty.
An accepted word whose final form differs from the chip (edited, or replaced by another word at its
position) counts as *modified* and saves no keystrokes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common import live_counts
from tokenizer.words import display_case, normalize, split_typed, typed_word, words

SENTENCE_END = ".!?"
TOP = 3  # chips the keyboard shows: impression recall is @1 and @3


def ends_sentence(previous: str, text: str) -> bool:
    r"""Whether typing turned ``previous`` into ``text`` by adding . ! or ? after at least one word.

    "Word" is judged as the log will store it (NUL counts as space), so "\t." or "\x00!" does not
    log a sentence that is only punctuation.
    """
    if len(text) <= len(previous) or not text or text[-1] not in SENTENCE_END:
        return False
    return any(not (ch.isspace() or ch == "\x00" or ch in SENTENCE_END) for ch in text[:-1])


def chips(text: str, suggested: Iterable[str]) -> tuple[str, ...]:
    """The words to show for ``text``: in the case the person is typing in, never two that differ only in case.

    Predictors suggest lower-case words (``tokenizer.words``); a subword model can also "finish" a
    word made of the bare word-start piece, which is nothing to accept.
    """
    typed = typed_word(text)
    shown: dict[str, str] = {}
    for word in suggested:
        if word.strip() and word.lower() not in shown:
            shown[word.lower()] = display_case(word.lower(), typed)
    return tuple(shown.values())


def base_version(version: str | None) -> str:
    """The global version live counts are kept under: ``"0003 (personalized)"`` -> ``"0003"``; None -> ``"none"``."""
    return (version or "").split(" ", 1)[0] or "none"


@dataclass(frozen=True)
class _Accept:
    word: str  # as a word of tokenizer.words (lower case)
    typed: int  # characters of the word typed before the chip was accepted


class SentenceTracker:
    """Counts, for the sentence being typed, which of its words the chips showed and which were accepted."""

    def __init__(self) -> None:
        self._seen: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
        self._accepted: dict[int, _Accept] = {}
        self._skip = False

    def reset(self, *, skip_sentence: bool = False) -> None:
        """Forgets the sentence so far; with ``skip_sentence`` the rest of it counts nothing either
        (typing resumed mid-line after incognito: what was shown before is unknown)."""
        self._seen, self._accepted, self._skip = {}, {}, skip_sentence

    def shown(self, text: str, shown_chips: Iterable[str]) -> None:
        """The chips ``shown_chips`` (best first) are on screen while ``text`` is the line."""
        if self._skip:
            return
        before, prefix = split_typed(text)
        self._seen.setdefault(len(before), []).append((prefix, tuple(normalize(c) for c in shown_chips)[:TOP]))

    def accepted(self, text_before: str, word: str, text_after: str) -> None:
        """The chip ``word`` was accepted, turning the line ``text_before`` into ``text_after``."""
        if self._skip:
            return
        position = len(words(text_after)) - len(words(word))
        self._accepted[position] = _Accept(normalize(word), len(typed_word(text_before)))

    def finished(self, sentence: str) -> dict[str, int]:
        """The counts (``common.live_counts.FIELDS``) of ``sentence``, finished as typed; then starts afresh."""
        counts = live_counts.zero()
        if not self._skip:
            finished_words = words(sentence)
            counts["words"] = len(finished_words)
            counts["letters"] = sum(not ch.isspace() for ch in sentence)
            for position, word in enumerate(finished_words):
                for name, value in self._judge(position, word).items():
                    counts[name] += value
        self.reset()
        return live_counts.check(counts, "a finished sentence")

    def _judge(self, position: int, word: str) -> dict[str, int]:
        """The counts one finished ``word`` at ``position`` adds."""
        ranks = [c.index(word) for prefix, c in self._seen.get(position, ())
                 if word in c and len(prefix) < len(word) and word.startswith(prefix)]
        at_start = [c.index(word) for prefix, c in self._seen.get(position, ()) if word in c and not prefix]
        accept = self._accepted.get(position)
        kept = accept is not None and accept.word == word
        return {"shown_at_1": 0 in ranks, "shown_at_3": bool(ranks),
                "start_at_1": 0 in at_start, "start_at_3": bool(at_start),
                "accepted": accept is not None, "modified": accept is not None and not kept,
                "letters_saved": max(len(word) - accept.typed, 0) if kept else 0}
