"""Deleting a device's data: its log, what was learned from it on the device, and the pooled references.

Two commands delete a device's data: the keyboard's F8 and ``fedkb device delete``; both call
:func:`forget`. Besides the device's own files it removes the *references* folder
(``<home>/references/``) when one exists: the unigram, Kneser–Ney and centralized-LSTM references
of ``fedkb eval --references`` are fitted on every device's pooled train sentences, this device's
included, so they cannot outlive a request to forget it. They are computed again only by another
``--references`` run.

:func:`forget_learned` is the lighter request (the keyboard's settings screen and
``fedkb device forget-learned``): the log stays, but what the device learned from it for its owner
goes, and is learned again only from sentences typed afterwards (``keyboard/controls.py``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from common.layout import DeviceLayout
from keyboard.controls import LEARN_AFTER
from keyboard.store import Device


@dataclass(frozen=True)
class Forgotten:
    """What :func:`forget` deleted."""

    sentences: int  # sentences that were in the log
    personal_model: bool  # a personal model (fine-tuned on the log) was deleted
    references: Path | None  # the pooled references folder, if there was one


def what_would_go(device: Device, references_dir: Path | None) -> str:
    """The confirmation question: what :func:`forget` would delete, in words."""
    n = device.count()
    extra = []
    if DeviceLayout(device.directory).personal.exists():
        extra.append("this device's personal model")
    if references_dir is not None and Path(references_dir).exists():
        extra.append(f"the references fitted on every device's pooled text ({references_dir})")
    what = f"all {n:,} sentence{'' if n == 1 else 's'} in this device's log"
    return f"Delete {what}{''.join(' and ' + e for e in extra)}? This cannot be undone."


def forget(device: Device, references_dir: Path | None) -> Forgotten:
    """Deletes the device's log (and its token-id cache), its personal model and the pooled references.

    The caller stops any on-device training first, since it would write a personal model learned
    from the deleted text.
    """
    sentences = device.count()
    device.delete_log()
    personal = DeviceLayout(device.directory).personal
    had_personal = personal.exists()
    shutil.rmtree(personal, ignore_errors=True)
    removed = None
    if references_dir is not None and Path(references_dir).exists():
        shutil.rmtree(references_dir)  # an error here must not pass silently: the user asked for it gone
        removed = Path(references_dir)
    return Forgotten(sentences, had_personal, removed)


@dataclass(frozen=True)
class ForgottenLearning:
    """What :func:`forget_learned` deleted; the log's sentences were all kept."""

    kept_sentences: int
    personal_model: bool  # a personal model was deleted
    cache: bool  # the token-id cache of the log was deleted


def what_learning_would_go(device: Device) -> str:
    """The confirmation question of :func:`forget_learned`, in words."""
    n = device.count()
    personal = " its personal model," if DeviceLayout(device.directory).personal.exists() else ""
    return (f"Forget what this device learned from your typing:{personal} the words and word pairs it "
            f"learned, and its caches? The {n:,} sentence{'' if n == 1 else 's'} of the log stay; the device "
            "learns again only from what you type from now on.")


def forget_learned(device: Device) -> ForgottenLearning:
    """Deletes the personal model, its comparison record and the token-id cache, and sets the learning mark.

    The mark (the newest sentence's id) makes the personal n-grams and word counts that the keyboard
    rebuilds from the log at start, and on-device training, use only sentences typed after it. The
    caller stops on-device training first and drops the predictor's in-memory counts.
    """
    personal = DeviceLayout(device.directory).personal
    had_personal = personal.exists()
    shutil.rmtree(personal, ignore_errors=True)
    DeviceLayout(device.directory).personalization.unlink(missing_ok=True)
    cache = DeviceLayout(device.directory).cache
    had_cache = cache.exists()
    shutil.rmtree(cache, ignore_errors=True)
    device.set(**{LEARN_AFTER: device.last_id()})
    return ForgottenLearning(device.count(), had_personal, had_cache)
