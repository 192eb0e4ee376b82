"""The published-model format shared by the server (which writes it) and devices (which install it).

A version directory holds ``weights.npz``, ``model.json``, ``spm.model`` and ``manifest.json``
(the sha256 of each of the other files, the round, the metrics). Versions published since the
on-device format also hold ``ondevice.npz`` (the same weights in int8, see ``fedkb/ondevice.py``),
listed in the manifest like the rest; older versions without it stay valid. Anything that reads a
version verifies it first with ``verify``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEIGHTS, CONFIG, TOKENIZER, MANIFEST = "weights.npz", "model.json", "spm.model", "manifest.json"
ONDEVICE = "ondevice.npz"
NGRAMS = "ngrams.tsv.gz"  # placeholder until the n-gram format lands
FILES = (WEIGHTS, CONFIG, TOKENIZER)  # every version has these
OPTIONAL_FILES = (ONDEVICE,)  # checked (and installed) when the manifest lists them


class ArtifactError(Exception):
    """A version is missing, incomplete or does not match its manifest; the message names the file."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path) -> dict:
    manifest_path = Path(path) / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest.get("files"), dict):
            raise KeyError("files")
    except FileNotFoundError:
        raise ArtifactError(f"{manifest_path}: missing; {path} is not a complete version") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError) as exc:
        raise ArtifactError(f"{manifest_path}: unreadable manifest ({exc})") from None
    return manifest


def listed_files(manifest: dict) -> tuple[str, ...]:
    """The files a version carries: the required ones and the optional ones its manifest lists."""
    return FILES + tuple(name for name in OPTIONAL_FILES if name in manifest["files"])


def verify(path: Path) -> dict:
    """Checks every file against the manifest; returns the manifest or raises ``ArtifactError`` naming the file."""
    path = Path(path)
    manifest = read_manifest(path)
    for name in listed_files(manifest):
        expected = manifest["files"].get(name)
        if expected is None:
            raise ArtifactError(f"{path / MANIFEST}: lists no sha256 for {name}")
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{file}: missing")
        if sha256_file(file) != expected:
            raise ArtifactError(f"{file}: sha256 does not match {path / MANIFEST}; the file is damaged or was altered")
    return manifest
