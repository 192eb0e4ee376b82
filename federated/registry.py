"""Published model versions: ``<home>/server/models/<version>/`` with a sha256 manifest.

A version holds ``weights.npz`` (numpy arrays by layer name: readable without TensorFlow),
``ondevice.npz`` (the same weights in int8 for the keyboard, ``common/ondevice.py``),
``model.json`` (the ModelConfig), ``spm.model`` (the tokenizer it was trained with) and
``manifest.json`` (sha256 of every file, the round, the training metrics), and, when the server
has gathered them, ``ngrams.tsv.gz`` (the private n-gram table, ``federated/ngrams.py``). A version is built
in a temporary folder, fsynced and renamed into place, so a reader never sees half of one.

A published version is a *candidate* until rollout decides on it: ``registry.json`` records each
decision (promoted or held back, and why) and which version is ``latest`` — the one devices
install.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import artifacts, ondevice, signing, version_dir
from common.artifacts import CONFIG, MANIFEST, NGRAMS, ONDEVICE, TOKENIZER, WEIGHTS
from common.atomic import atomic_write
from common.errors import FedkbError
from federated.faults import crash_point
from lm.config import ModelConfig

REGISTRY = "registry.json"


class RegistryError(FedkbError):
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
    ngrams: bytes | None = None,
) -> Version:
    """Writes a new candidate version atomically; ``ngrams`` (``ngrams.tsv.gz`` bytes) is published with it if given."""
    models_dir.mkdir(parents=True, exist_ok=True)
    names = _version_names(models_dir)
    name = f"{int(names[-1]) + 1 if names else 1:04d}"
    files = {WEIGHTS: version_dir.npz_bytes(weights), CONFIG: config.to_json().encode(), TOKENIZER: tokenizer_proto,
             ONDEVICE: ondevice.to_bytes(weights)}
    if ngrams is not None:
        files[NGRAMS] = ngrams
    manifest = {
        "version": name,
        "round": round_num,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": version_dir.file_hashes(files),
        "metrics": dict(metrics),
        "ondevice": ondevice.FORMAT,
        **(extra or {}),
    }
    manifest_bytes = version_dir.manifest_bytes(manifest)
    signature = signing.sign(signing.load_or_create(keys_dir(models_dir)), manifest_bytes)

    def crash_after_weights(fname: str) -> None:  # tests: a crash with half of the version written
        if fname == WEIGHTS:
            crash_point(round_num, "publish")

    version_dir.write(models_dir / name, {**files, MANIFEST: manifest_bytes, signing.SIGNATURE: signature},
                      staging=models_dir / f".tmp-{name}-{os.getpid()}", on_file_written=crash_after_weights)
    return Version(name, models_dir / name, manifest)


def keys_dir(models_dir: Path) -> Path:
    """Where the key that signs ``models_dir``'s versions lives (``Home.keys`` for a home's models)."""
    return Path(models_dir).parent / "keys"


def verify(path: Path) -> Version:
    """Checks every file of a version against its manifest and the manifest's signature; raises
    ``RegistryError`` naming the file."""
    try:
        artifacts.version_name(Path(path).name, path)
        manifest = artifacts.verify(path)
        key = signing.read_public(keys_dir(Path(path).parent))
        if key is None:
            raise RegistryError(f"{keys_dir(Path(path).parent)}: no signing key, so {path} cannot be verified")
        signing.check(path, key)
        return Version(Path(path).name, Path(path), manifest)
    except artifacts.ArtifactError as exc:
        raise RegistryError(str(exc)) from None


def read_registry(models_dir: Path) -> dict:
    """``{"latest": name or None, "decisions": {name: {...}}, "rollbacks": {name: {...}}}``.

    Empty when nothing was decided.
    """
    path = models_dir / REGISTRY
    if not path.is_file():
        return {"latest": None, "decisions": {}, "rollbacks": {}}
    try:
        reg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path}: unreadable ({exc})") from None
    if not isinstance(reg, dict) or not isinstance(reg.get("decisions"), dict):
        raise RegistryError(f"{path}: not a registry (an object with 'latest' and 'decisions')")
    try:  # names from this file become paths: digits only, nothing like ".." or "../devices/x"
        if reg.get("latest") is not None:
            artifacts.version_name(reg["latest"], f"{path}: latest")
        for name in reg["decisions"]:
            artifacts.version_name(name, f"{path}: decisions")
        if not isinstance(reg.setdefault("rollbacks", {}), dict):
            raise RegistryError(f"{path}: 'rollbacks' is not an object")
        for name in reg["rollbacks"]:
            artifacts.version_name(name, f"{path}: rollbacks")
    except artifacts.ArtifactError as exc:
        raise RegistryError(str(exc)) from None
    return reg


def record_decision(models_dir: Path, name: str, *, promoted: bool, reason: str, **details: object) -> dict:
    """Records whether version ``name`` was promoted (and why); a promotion makes it ``latest``."""
    try:
        artifacts.version_name(name, models_dir)
    except artifacts.ArtifactError as exc:
        raise RegistryError(str(exc)) from None
    reg = read_registry(models_dir)
    decision = {"promoted": promoted, "reason": reason,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **details}
    reg["decisions"][name] = decision
    if promoted:
        reg["latest"] = name
    atomic_write(models_dir / REGISTRY, json.dumps(reg, indent=2, sort_keys=True).encode())
    return decision


def roll_back(models_dir: Path, name: str, *, reason: str) -> dict:
    """Makes the older version ``name`` ``latest`` again, with a signed record that lets devices install it.

    Devices refuse a version older than theirs without that record (``common.signing.check_rollback``);
    it covers every version published so far, not later ones.
    """
    version = verify(Path(models_dir) / artifacts.version_name(name, models_dir))
    reg = read_registry(models_dir)
    current = reg.get("latest")
    if current is None or int(version.name) >= int(current):
        raise RegistryError(f"{models_dir}: version {version.name} is not older than latest ({current}); "
                            "a rollback goes back to an earlier version")
    record = signing.sign_rollback(signing.load_or_create(keys_dir(models_dir)), version.name,
                                   _version_names(Path(models_dir))[-1])
    reg["rollbacks"][version.name] = {**record, "from": current, "reason": reason,
                                      "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    reg["latest"] = version.name
    atomic_write(Path(models_dir) / REGISTRY, json.dumps(reg, indent=2, sort_keys=True).encode())
    return reg["rollbacks"][version.name]


def latest(models_dir: Path) -> Version | None:
    """The promoted version devices should install, verified; None before the first promotion."""
    name = read_registry(models_dir).get("latest")
    return None if name is None else verify(models_dir / name)


def newest(models_dir: Path) -> Version | None:
    """The most recently published version (promoted or not), verified."""
    names = _version_names(models_dir)
    return verify(models_dir / names[-1]) if names else None


def undecided(models_dir: Path) -> list[str]:
    """Published versions rollout has not decided on yet, oldest first."""
    decided = read_registry(models_dir)["decisions"]
    return [n for n in _version_names(models_dir) if n not in decided]


def list_versions(models_dir: Path) -> list[str]:
    return _version_names(models_dir)


def load_weights(version: Version) -> dict[str, np.ndarray]:
    return version_dir.read_weights(version.path)
