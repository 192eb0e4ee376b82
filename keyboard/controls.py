"""What a person decides on their own device, kept in its status record (``meta``) and nowhere else.

- **Blocked words** (``blocked``): words never suggested again on this device. The keyboard drops
  them where chips are computed (:func:`without_blocked`, asking the predictor for
  :func:`words_to_ask` so three remain), and a simulated typist replaying the log calls the same
  function, so the figures it measures are of what this person would see.
- **Federated participation** (``federated``, default on): off means the device never joins a
  round, live or simulated. :func:`takes_part` is the one test every selection applies: the live
  agent (``keyboard/agent.py``), simulated selection (``federated/population.py``), evaluation
  devices and pooled references (``federated/rollout.py``). Personalization on the device stays on.
- **Learning mark** (``learn_after``): the id of the newest sentence when the person asked the device
  to forget what it learned (``keyboard/forget.py``). What the device learns *for this person*
  (the personal n-grams of the mix, the word counts, the fine-tuned personal model) comes from
  later sentences only (:func:`learnable_splits`); the log itself is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from keyboard.store import Device, DeviceError, Splits, heldout_count
from tokenizer.words import split_typed

BLOCKED = "blocked"
FEDERATED = "federated"
LEARN_AFTER = "learn_after"
MAX_BLOCKED = 10_000  # a list a person keeps by hand; the bound keeps every keystroke's filter cheap


class OptedOut(Exception):
    """The device's owner turned federated participation off: it joins no round."""


# -- blocked words -----------------------------------------------------------------------------
def blocked_words(device: Device) -> frozenset[str]:
    """The words this device never suggests (lower case, as predictors suggest them)."""
    value = device.get(BLOCKED, [])
    return frozenset(w for w in value if isinstance(w, str)) if isinstance(value, list) else frozenset()


def block(device: Device, word: str) -> frozenset[str]:
    """Adds ``word`` to the device's block list; returns the new list."""
    word = word.strip().lower()
    if not word:
        raise DeviceError(f"device {device.id}: there is no word to block")
    current = blocked_words(device)
    if word not in current and len(current) >= MAX_BLOCKED:
        raise DeviceError(f"device {device.id}: {MAX_BLOCKED:,} words are blocked already; unblock some first")
    device.set(**{BLOCKED: sorted(current | {word})})
    return current | {word}


def unblock(device: Device, word: str) -> frozenset[str]:
    """Removes ``word`` from the device's block list (no error if it was not there); returns the new list."""
    remaining = blocked_words(device) - {word.strip().lower()}
    device.set(**{BLOCKED: sorted(remaining)})
    return remaining


def words_to_ask(text: str, blocked: frozenset[str], k: int = 3) -> int:
    """How many words to ask a predictor for so that ``k`` remain after dropping blocked ones.

    Predictors suggest words that start with the partly typed word, so only blocked words with that
    prefix can be dropped: asking for ``k`` more than there are of those is always enough.
    """
    partial = split_typed(text)[1]
    return k + sum(1 for w in blocked if w.startswith(partial))


def without_blocked(words: Iterable[str], blocked: frozenset[str], k: int = 3) -> list[str]:
    """The first ``k`` of ``words`` that are not blocked (compared in lower case)."""
    kept = [w for w in words if w.lower() not in blocked]
    return kept[:k]


def suggested_words(predictor, text: str, blocked: frozenset[str], k: int = 3) -> list[str]:
    """The ``k`` words a keyboard shows for ``text``: asked from ``predictor``, blocked ones dropped.

    The app (``keyboard/app.py``) and the simulated typist (``keyboard/replay.py``) both ask this way.
    """
    return without_blocked(predictor.suggest(text, words_to_ask(text, blocked, k)), blocked, k)


# -- federated participation -------------------------------------------------------------------
def takes_part(status: Mapping[str, Any]) -> bool:
    """Whether a device with this status record may join federated rounds (training and evaluation)."""
    return status.get(FEDERATED, True) is not False


def set_federated(device: Device, on: bool) -> None:
    device.set(**{FEDERATED: bool(on)})


# -- what the device learns from ---------------------------------------------------------------
def learnable_splits(device: Device) -> Splits:
    """The splits of the sentences the device may still learn from for its owner (after the mark).

    Before any "forget what was learned" this is ``device.splits()``.
    """
    mark = device.get(LEARN_AFTER)
    if not isinstance(mark, int):
        return device.splits()
    texts = device.sentences(after_id=mark)
    cut = len(texts) - heldout_count(len(texts))
    return Splits(train=texts[:cut], heldout=texts[cut:])
