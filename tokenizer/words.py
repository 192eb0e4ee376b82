"""The one definition of a word, as a keyboard treats it: used for training, suggestions and recall.

A keyboard suggests words, not the punctuation typed around them, and a chip never differs from
another only in punctuation or letter case. So fedkb reads text as a sequence of *words*:

- a word is a run of letters or digits, which may hold an apostrophe, hyphen or full stop
  between two of them ("don't", "o'er", "well-known", "e.g", "3.14"); every other character
  (spaces, punctuation, symbols, emoji) separates words and is never a word or part of one;
- the typographic apostrophe (U+2019) is read as "'", so both spellings are one word;
- words are **case-folded to lower case** (``str.lower``). Decision: case carries little about
  which word comes next, and a model that spent capacity on "The" vs "the" would split the counts
  of every word that starts a sentence. The keyboard restores case for display only
  (``display_case``: in the case being typed), and recall compares lower-cased words, identically for every model.

Punctuation is therefore never a prediction target: models are trained on ``normalize(text)``,
the words joined by single spaces. The device log keeps what the person typed, unchanged.
"""

from __future__ import annotations

import re

# Letters or digits ([^\W_]), joined by single inner apostrophes, hyphens or full stops.
WORD = re.compile(r"[^\W_]+(?:['\-.][^\W_]+)*")


def words(text: str) -> list[str]:
    """The words of ``text``: ``"Matter, my lord!"`` -> ``["matter", "my", "lord"]``."""
    return [w.lower() for w in WORD.findall(text.replace("\u2019", "'"))]


def normalize(text: str) -> str:
    """``text`` as the models see it: its words joined by single spaces."""
    return " ".join(words(text))


# The word being typed at the end of the text: an apostrophe or hyphen may end it ("don'"), a full stop not.
_TYPING = re.compile(r"[^\W_]+(?:['\-.][^\W_]+)*['\-]?\Z")


def split_typed(text: str) -> tuple[list[str], str]:
    """What is being typed: the finished words, and the partial word (lower-cased) the cursor is in.

    ``"Hello, my fr"`` -> ``(["hello", "my"], "fr")``; after a space or punctuation the partial word
    is empty: ``"Hello,"`` -> ``(["hello"], "")``.
    """
    typed = typed_word(text)
    return words(text[: len(text) - len(typed)]), typed.replace("\u2019", "'").lower()


def typed_word(text: str) -> str:
    """The partly typed word at the end of ``text``, exactly as typed (``""`` after a space or punctuation)."""
    typing = _TYPING.search(text.replace("\u2019", "'"))
    return "" if typing is None else text[typing.start():]


def display_case(word: str, typed: str) -> str:
    """How a suggested (lower-case) ``word`` is shown, given the ``typed`` part of it: in the case
    the person is typing in (all capitals from two typed capitals on, else a capital first letter
    from a typed one)."""
    if len(typed) >= 2 and typed.isupper():
        return word.upper()
    if typed[:1].isupper():
        return word[:1].upper() + word[1:]
    return word
