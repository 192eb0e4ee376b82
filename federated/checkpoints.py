"""Sealing training checkpoints, so that a half-written or damaged one is never resumed from.

``tff.program.FileProgramStateManager`` writes a round's state straight into
``program_state_<round>/`` (a SavedModel). A crash in the middle leaves a directory that looks
like a checkpoint, and damage later (a truncated or altered file) surfaces as whatever
TensorFlow raises while loading. So after TFF has written a checkpoint, every file in it is
fsynced and a manifest of their sizes and sha256 digests is written last, atomically: a
checkpoint without it was interrupted while being written, and one whose files disagree with
it is damaged. (TFF 0.87 has no integrity check of its own; this is the smallest one that works.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from common.artifacts import sha256_file
from common.atomic import atomic_write, fsync_dir
from common.errors import FedkbError

SEAL = "fedkb-checkpoint.json"


class CheckpointError(FedkbError):
    """A sealed checkpoint's files do not match its manifest; the message names the file."""


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != SEAL)


def seal(directory: Path) -> None:
    """Fsyncs every file of the checkpoint, then writes its manifest (last, atomically)."""
    files = _files(directory)
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for sub in {p.parent for p in files} | {directory}:
        fsync_dir(sub)
    manifest = {str(p.relative_to(directory)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files}
    atomic_write(directory / SEAL, json.dumps({"files": manifest}, indent=1, sort_keys=True).encode())


def is_sealed(directory: Path) -> bool:
    return (directory / SEAL).is_file()


def verify(directory: Path) -> None:
    """Raises ``CheckpointError`` naming the first file that is missing, extra or altered."""
    try:
        manifest = json.loads((directory / SEAL).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{directory / SEAL}: unreadable checkpoint manifest ({exc})") from None
    present = {str(p.relative_to(directory)) for p in _files(directory)}
    for name in sorted(set(manifest) - present):
        raise CheckpointError(f"{directory / name}: missing from the checkpoint")
    for name in sorted(present - set(manifest)):
        raise CheckpointError(f"{directory / name}: not part of the checkpoint as it was written")
    for name, want in sorted(manifest.items()):
        path = directory / name
        if path.stat().st_size != want["bytes"]:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes, "
                                  f"the checkpoint wrote {want['bytes']} (truncated?)")
        if sha256_file(path) != want["sha256"]:
            raise CheckpointError(f"{path}: contents differ from what the checkpoint wrote (sha256 mismatch)")


def discard(directory: Path) -> None:
    """Removes a checkpoint that a crash left half-written."""
    shutil.rmtree(directory, ignore_errors=True)
    fsync_dir(directory.parent)
