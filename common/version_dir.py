"""The one writer and the one reader of a version directory (the format is ``common/artifacts.py``'s).

The server publishes versions (``federated/registry.py``), a device installs its copy of one
(``keyboard/install.py``) and makes its personal one (``keyboard/personalize.py``): all three stage
the files with ``write``, so a version directory is either absent or whole. Every ``.npz`` of a
version is read with ``read_arrays``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np

from common.artifacts import WEIGHTS, ArtifactError
from common.atomic import atomic_write, fsync_dir

T = TypeVar("T")


def npz_bytes(arrays: Mapping[str, np.ndarray], dtype: type | None = None) -> bytes:
    """The content of an ``.npz`` file holding ``arrays`` (converted to ``dtype`` if given)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v, dtype) for k, v in arrays.items()})
    return buf.getvalue()


def file_hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    """The manifest's ``files`` object: the sha256 of each file's content."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def manifest_bytes(manifest: Mapping[str, object]) -> bytes:
    """A manifest as it is written (and signed): sorted keys, so its bytes depend on its content only."""
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


def write(target: Path, files: Mapping[str, bytes], *, staging: Path, check: Callable[[Path], T] | None = None,
          replace: bool = False, on_file_written: Callable[[str], None] | None = None) -> T | None:
    """Writes ``files`` into ``staging``, checks it, and renames it to ``target``; returns ``check(staging)``.

    Each file is written with ``atomic_write`` (fsynced) in the order given, so a manifest and its
    signature go last; ``on_file_written(name)`` runs after each (tests crash there). ``check`` sees
    the staged copy before it takes the target's place. Without ``replace`` an existing ``target``
    is an error; with it the old one is renamed aside and removed after (a directory cannot replace
    a non-empty one in one rename, so between the two renames there is no ``target``). On any
    error, or an interrupt, the staging directory is removed and ``target`` is as it was.
    """
    target, staging = Path(target), Path(staging)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    aside = staging.with_name(f"{staging.name}-old")
    try:
        staging.mkdir()
        for name, data in files.items():
            atomic_write(staging / name, data)
            if on_file_written is not None:
                on_file_written(name)
        result = check(staging) if check is not None else None
        if replace and target.exists():
            shutil.rmtree(aside, ignore_errors=True)
            target.rename(aside)
        os.rename(staging, target)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return result


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file of a version (verify the version first); ``ArtifactError``
    naming the file if it is not one. Never unpickles: a version's files come from elsewhere."""
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path}: unreadable weights ({exc})") from None


def read_weights(version_dir: Path) -> dict[str, np.ndarray]:
    """The float weights (``weights.npz``) of a version directory, by stable name."""
    return read_arrays(Path(version_dir) / WEIGHTS)
