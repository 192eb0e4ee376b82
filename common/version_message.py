"""A published version as a message: its files as uint8 arrays, named and checked on arrival.

The coordinator answers a device's ``Version`` call with ``latest`` (the promoted version's name)
and, when the device lacks the version it asked for, that version's files: every file its
manifest lists, plus ``manifest.json`` and ``manifest.sig``, each as a 1-D uint8 array named by
its file name. A device accepts a version name made of digits only (never ``..`` or a path) and
exactly the files the arriving manifest lists, then verifies hashes and the signature against
the key pinned at enrolment before it uses any of it (``keyboard/pull.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from common import artifacts, signing
from common.messages import MessageError

_NAME = re.compile(r"[0-9]{1,12}")


def check_name(name: object, where: str) -> str:
    """``name`` if it is a version name (digits only); ``MessageError`` naming ``where`` otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise MessageError(f"{where}: {name!r} is not a version name (expected digits only, such as '0003')")
    return name


def file_arrays(version_dir: Path) -> dict[str, np.ndarray]:
    """The files of ``version_dir`` a device needs, as uint8 arrays by file name."""
    version_dir = Path(version_dir)
    manifest = artifacts.read_manifest(version_dir)
    names = (*artifacts.listed_files(manifest), artifacts.MANIFEST, signing.SIGNATURE)
    return {name: np.frombuffer((version_dir / name).read_bytes(), np.uint8) for name in names}


def files_from(arrays: dict[str, np.ndarray], where: str) -> dict[str, bytes]:
    """The files of a version message, checked: exactly the manifest's files, the manifest and its signature.

    Only names of the fixed format pass (``weights.npz``, ``model.json``, ...), so nothing can be
    written outside the folder the version is staged in. Hashes and the signature are checked
    later, against the files as written.
    """
    for name, array in arrays.items():
        if array.dtype != np.uint8 or array.ndim != 1:
            raise MessageError(f"{where}: file {name!r} must arrive as a 1-D uint8 array, got "
                               f"{array.dtype} with shape {array.shape}")
    if artifacts.MANIFEST not in arrays:
        raise MessageError(f"{where}: the version arrived without {artifacts.MANIFEST}")
    try:
        manifest = json.loads(arrays[artifacts.MANIFEST].tobytes().decode("utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise MessageError(f"{where}: {artifacts.MANIFEST} is unreadable ({exc})") from None
    expected = {*artifacts.listed_files(manifest), artifacts.MANIFEST, signing.SIGNATURE}
    if set(arrays) != expected:
        raise MessageError(f"{where}: expected the files {sorted(expected)}, got {sorted(arrays)}")
    return {name: arrays[name].tobytes() for name in sorted(expected)}
