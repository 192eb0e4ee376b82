"""Published model versions: ``<home>/server/models/<version>/`` with a sha256 manifest.

A version holds ``weights.npz`` (numpy arrays by layer name: readable without TensorFlow),
``model.json`` (the ModelConfig), ``spm.model`` (the tokenizer it was trained with) and
``manifest.json`` (sha256 of every file, the round, the training metrics). A version is built
in a temporary folder, fsynced and renamed into place, so a reader never sees half of one;
``latest.json`` then points at it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedkb.atomic import atomic_write, fsync_dir
from federated.model_config import ModelConfig

WEIGHTS, CONFIG, TOKENIZER, MANIFEST, LATEST = "weights.npz", "model.json", "spm.model", "manifest.json", "latest.json"


class RegistryError(Exception):
    """A version is missing, incomplete or does not match its manifest."""


@dataclass(frozen=True)
class Version:
    name: str
    path: Path
    manifest: dict

    @property
    def round(self) -> int:
        return int(self.manifest["round"])

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_json((self.path / CONFIG).read_text())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version_names(models_dir: Path) -> list[str]:
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and p.name.isdigit())


def publish(
    models_dir: Path,
    *,
    weights: Mapping[str, np.ndarray],
    config: ModelConfig,
    tokenizer_proto: bytes,
    round_num: int,
    metrics: Mapping[str, float],
    extra: Mapping[str, object] | None = None,
) -> Version:
    """Writes a new version atomically and points ``latest.json`` at it."""
    models_dir.mkdir(parents=True, exist_ok=True)
    names = _version_names(models_dir)
    name = f"{int(names[-1]) + 1 if names else 1:04d}"
    tmp = models_dir / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in weights.items()})
        files = {WEIGHTS: buf.getvalue(), CONFIG: config.to_json().encode(), TOKENIZER: tokenizer_proto}
        for fname, data in files.items():
            atomic_write(tmp / fname, data)
        manifest = {
            "version": name,
            "round": round_num,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": {fname: hashlib.sha256(data).hexdigest() for fname, data in files.items()},
            "metrics": dict(metrics),
            **(extra or {}),
        }
        atomic_write(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        os.rename(tmp, models_dir / name)
        fsync_dir(models_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write(models_dir / LATEST, json.dumps({"version": name}).encode())
    return Version(name, models_dir / name, manifest)


def verify(path: Path) -> Version:
    """Loads a version's manifest and checks every file's sha256; raises ``RegistryError`` naming the file."""
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise RegistryError(f"{manifest_path}: missing; {path} is not a complete version") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RegistryError(f"{manifest_path}: unreadable manifest ({exc})") from None
    for fname in (WEIGHTS, CONFIG, TOKENIZER):
        if fname not in files:
            raise RegistryError(f"{manifest_path}: lists no sha256 for {fname}")
        fpath = path / fname
        if not fpath.is_file():
            raise RegistryError(f"{fpath}: missing")
        if sha256_file(fpath) != files[fname]:
            raise RegistryError(f"{fpath}: sha256 does not match {manifest_path}; the file is damaged or was altered")
    return Version(path.name, path, manifest)


def latest(models_dir: Path) -> Version | None:
    """The version ``latest.json`` points at, verified; None if nothing was published."""
    pointer = models_dir / LATEST
    if not pointer.is_file():
        return None
    name = json.loads(pointer.read_text())["version"]
    return verify(models_dir / name)


def list_versions(models_dir: Path) -> list[str]:
    return _version_names(models_dir)


def load_weights(version: Version) -> dict[str, np.ndarray]:
    with np.load(version.path / WEIGHTS) as npz:
        return {k: npz[k] for k in npz.files}
