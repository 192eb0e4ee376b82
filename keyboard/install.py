"""Installing a published model version on a device, keeping the previous one.

``<device>/model/<version>/`` holds installed copies; ``<device>/model/installed.json`` says
which is current and which previous. A version is copied into a temporary folder, every file is
checked against the manifest's sha256 (on the source and again on the copy), the folder is
renamed into place, and only then does ``installed.json`` switch — atomically. A device whose
current copy is later found damaged falls back to the previous one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from fedkb import artifacts
from fedkb.atomic import atomic_write, fsync_dir

POINTER = "installed.json"


@dataclass(frozen=True)
class Installed:
    version: str
    path: Path
    manifest: dict
    fell_back: bool = False  # the current copy was damaged and the previous one is used


def _model_dir(device_dir: Path) -> Path:
    return Path(device_dir) / "model"


def read_pointer(device_dir: Path) -> dict:
    path = _model_dir(device_dir) / POINTER
    if not path.is_file():
        return {"current": None, "previous": None}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"current": None, "previous": None}


def installed(device_dir: Path) -> Installed | None:
    """The working installed version (verified), the previous one if current is damaged, or None."""
    pointer = read_pointer(device_dir)
    for key in ("current", "previous"):
        name = pointer.get(key)
        if not name:
            continue
        path = _model_dir(device_dir) / name
        try:
            return Installed(name, path, artifacts.verify(path), fell_back=key == "previous")
        except artifacts.ArtifactError:
            continue
    return None


def install(device_dir: Path, version_dir: Path) -> Installed:
    """Installs ``version_dir`` on the device; raises ``ArtifactError`` (naming the file) if it does not verify.

    Installing the version already current is a no-op. On any error the device keeps what it had.
    """
    version_dir = Path(version_dir)
    artifacts.verify(version_dir)
    name = version_dir.name
    pointer = read_pointer(device_dir)
    current = installed(device_dir)
    if current is not None and current.version == name and not current.fell_back:
        return current
    models = _model_dir(device_dir)
    models.mkdir(parents=True, exist_ok=True)
    tmp = models / f".incoming-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for fname in (*artifacts.FILES, artifacts.MANIFEST):
            atomic_write(tmp / fname, (version_dir / fname).read_bytes())
        manifest = artifacts.verify(tmp)  # the copy, not just the source
        target = models / name
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        fsync_dir(models)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    previous = current.version if current is not None else pointer.get("current")
    atomic_write(models / POINTER, json.dumps({"current": name, "previous": previous}).encode())
    for old in models.iterdir():  # keep current and previous only
        if old.is_dir() and old.name not in (name, previous):
            shutil.rmtree(old, ignore_errors=True)
    return Installed(name, models / name, manifest)
