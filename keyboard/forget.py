"""Deleting a device's data: its log, what was learned from it on the device, and the pooled references.

Two commands delete a device's data: the keyboard's F8 and ``fedkb device delete``; both call
:func:`forget`. Besides the device's own files it removes the *references* folder
(``<home>/references/``) when one exists: the unigram, Kneser–Ney and centralized-LSTM references
of ``fedkb eval --references`` are fitted on every device's pooled train sentences, this device's
included, so they cannot outlive a request to forget it. They are computed again only by another
``--references`` run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from common.layout import DeviceLayout
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
