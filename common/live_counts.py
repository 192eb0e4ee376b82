"""How the suggestions did while a person typed: the counts a device keeps per model version.

Offline recall (``common/eval_sums.py``) scores held-out sentences; these counts come from real
typing in the keyboard (Hard et al. 2018 call the first two *impression recall*). They are kept on
the device (``keyboard/store.py``), per model version and per source ("typed" by a person, or
"replayed" by a simulated typist: ``bench/typing_replay.py``, ``fedkb demo``), and leave it only as
these named sums, added over at least a minimum number of devices. Every count is over the words
of *finished* sentences (Enter or . ! ?): a line cleared unfinished counts nothing, and incognito
typing counts nothing.

- ``words``: the words of finished sentences.
- ``shown_at_1`` / ``shown_at_3``: of those, the words that were on the first chip / on any of
  the three chips at some keystroke before the word was complete (the prefix typed so far a proper
  prefix of it, including the empty prefix at the word's start).
- ``start_at_1`` / ``start_at_3``: the words that were there already at the word's start, before
  any of its letters were typed (what next-word prediction alone achieves).
- ``accepted``: words that came from accepting a chip.
- ``modified``: accepted words the person then changed before finishing the sentence.
- ``letters``: the non-space characters of the finished sentences.
- ``letters_saved``: for each accepted word left unmodified, its letters minus those typed
  before accepting it: keystrokes the person did not have to make.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.messages import MessageError, exact_fields

SOURCES = ("typed", "replayed")
FIELDS = ("words", "shown_at_1", "shown_at_3", "start_at_1", "start_at_3", "accepted", "modified",
          "letters", "letters_saved")
# (smaller, larger, why): a count may never exceed the one it is a share of.
_BOUNDS = (("shown_at_1", "shown_at_3", "a word on the first chip is on the chips"),
           ("start_at_1", "start_at_3", "a word on the first chip is on the chips"),
           ("start_at_1", "shown_at_1", "a word shown at its start was shown before it was complete"),
           ("start_at_3", "shown_at_3", "a word shown at its start was shown before it was complete"),
           ("shown_at_3", "words", "only finished words count"),
           ("accepted", "words", "only finished words count"),
           ("modified", "accepted", "only accepted words can be modified after acceptance"),
           ("letters_saved", "letters", "only letters of the text can be saved"))


def check(counts: object, where: str) -> dict[str, int]:
    """``counts`` as a dict of exactly ``FIELDS``, whole and consistent; ``MessageError`` naming ``where`` otherwise."""
    exact_fields(counts, FIELDS, where, "live counts")
    out: dict[str, int] = {}
    for name in FIELDS:
        value = counts[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0 \
                or value != int(value) or value > 2**53:
            raise MessageError(f"{where}: {name} must be a whole non-negative count, got {value!r}")
        out[name] = int(value)
    for small, large, why in _BOUNDS:
        if out[small] > out[large]:
            raise MessageError(f"{where}: {small} ({out[small]}) exceeds {large} ({out[large]}): {why}")
    return out


def zero() -> dict[str, int]:
    return {name: 0 for name in FIELDS}


def add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {name: int(a[name]) + int(b[name]) for name in FIELDS}


def summary(total: Mapping[str, int]) -> dict[str, float | int | None]:
    """The rates of summed counts (None where the denominator is 0), with the word count they rest on."""
    def share(num: str, den: str) -> float | None:
        return total[num] / total[den] if total[den] else None

    return {
        "words": int(total["words"]),
        "impression_recall_at_1": share("shown_at_1", "words"),
        "impression_recall_at_3": share("shown_at_3", "words"),
        "start_recall_at_1": share("start_at_1", "words"),
        "start_recall_at_3": share("start_at_3", "words"),
        "acceptance_rate": share("accepted", "words"),
        "keystroke_savings": share("letters_saved", "letters"),
        "modified_after_acceptance": share("modified", "accepted"),
    }
