"""Finding and installing the model version the server promoted, from the published files alone.

A device reads ``<models>/registry.json`` — ``{"latest": name, ...}`` — rather than importing the
server's registry code: the published-model format is the only contract between the two rooms.
"""

from __future__ import annotations

import json
from pathlib import Path

from common import artifacts
from common.errors import FedkbError
from keyboard.install import Installed, install, installed

REGISTRY = "registry.json"  # written by federated/registry.py; devices only read its "latest" key


class UpdateError(FedkbError):
    """The server's registry is unreadable or names a version that is not a plain folder name."""


def promoted_version(models_dir: Path) -> str | None:
    """The name of the version devices should run, or None before the first promotion."""
    path = Path(models_dir) / REGISTRY
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UpdateError(f"{path}: unreadable ({exc})") from None
    name = data.get("latest") if isinstance(data, dict) else None
    if name is None:
        return None
    try:  # the name becomes a path: digits only, nothing that could point outside the models folder
        return artifacts.version_name(name, f"{path}: latest")
    except artifacts.ArtifactError as exc:
        raise UpdateError(str(exc)) from None


def rollback_record(models_dir: Path, name: str) -> dict | None:
    """The registry's signed record of a rollback to ``name``, if there is one (checked at install)."""
    try:
        data = json.loads((Path(models_dir) / REGISTRY).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    rollbacks = data.get("rollbacks") if isinstance(data, dict) else None
    return rollbacks.get(name) if isinstance(rollbacks, dict) else None


def fetch_update(device_dir: Path, models_dir: Path) -> Installed | None:
    """Installs the promoted version if the device runs another one; None when already up to date.

    Raises ``UpdateError`` or ``common.artifacts.ArtifactError`` (naming the file) and leaves the
    device's installed version untouched when the promoted one is unreadable or does not verify.
    """
    name = promoted_version(models_dir)
    if name is None:
        return None
    current = installed(device_dir)
    if current is not None and current.version == name and not current.fell_back:
        return None
    return install(device_dir, Path(models_dir) / name, rollback=rollback_record(models_dir, name))
