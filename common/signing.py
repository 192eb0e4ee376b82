"""Signed versions: the coordinator signs each version's manifest with Ed25519, devices check it.

The manifest lists the sha256 of every file of a version, so a signature over the manifest's
exact bytes (``manifest.sig``, 64 bytes) covers the whole version. The coordinator's key pair
lives in ``<home>/server/keys/`` (the private key readable by its owner only); a device pins the
public key (``coordinator.pub`` in its directory) when it is enrolled, and from then on installs
only versions that key signed. Anyone who can write a version can re-hash its files, but cannot
sign it. ``cryptography``'s Ed25519 does the work.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common import artifacts
from common.atomic import atomic_write

SIGNATURE = "manifest.sig"
PRIVATE_KEY = "versions.ed25519"  # in <home>/server/keys/
PUBLIC_KEY = "versions.pub"  # beside it: what devices pin
PINNED = "coordinator.pub"  # in a device's directory


def load_or_create(keys_dir: Path) -> Ed25519PrivateKey:
    """The coordinator's signing key, made (owner-only) the first time."""
    keys_dir = Path(keys_dir)
    private = keys_dir / PRIVATE_KEY
    if private.is_file():
        raw = private.read_bytes()
        if len(raw) != 32:
            raise artifacts.ArtifactError(f"{private}: not a 32-byte Ed25519 private key")
        return Ed25519PrivateKey.from_private_bytes(raw)
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    atomic_write(private, key.private_bytes_raw())
    os.chmod(private, 0o600)
    atomic_write(keys_dir / PUBLIC_KEY, key.public_key().public_bytes_raw())
    return key


def public_key(keys_dir: Path) -> bytes:
    """The raw 32-byte public key devices pin (made with the key pair if there is none yet)."""
    return load_or_create(keys_dir).public_key().public_bytes_raw()


def read_public(keys_dir: Path) -> bytes | None:
    """The public key in ``keys_dir``, or None if no key pair was made there."""
    path = Path(keys_dir) / PUBLIC_KEY
    return path.read_bytes() if path.is_file() else None


def sign(key: Ed25519PrivateKey, manifest_bytes: bytes) -> bytes:
    return key.sign(manifest_bytes)


def check(version_dir: Path, pinned: bytes) -> None:
    """Raises ``ArtifactError`` unless ``manifest.sig`` is ``pinned``'s signature of ``manifest.json``."""
    version_dir = Path(version_dir)
    sig_file, manifest_file = version_dir / SIGNATURE, version_dir / artifacts.MANIFEST
    if not sig_file.is_file():
        raise artifacts.ArtifactError(f"{sig_file}: missing; the version is not signed, so it is not installed")
    try:
        Ed25519PublicKey.from_public_bytes(pinned).verify(sig_file.read_bytes(), manifest_file.read_bytes())
    except (InvalidSignature, ValueError):
        raise artifacts.ArtifactError(
            f"{sig_file}: not the coordinator's signature of {manifest_file} (the key pinned on this device); "
            "the version was altered or signed by someone else, so it is not installed") from None


def pin(device_dir: Path, key: bytes) -> None:
    """Enrolment: the device will trust versions signed by ``key``, and only those."""
    if len(key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    atomic_write(Path(device_dir) / PINNED, key)


def pinned(device_dir: Path) -> bytes | None:
    path = Path(device_dir) / PINNED
    return path.read_bytes() if path.is_file() else None


# -- rollbacks ------------------------------------------------------------------------------------
# A device installs a version older than the one it runs only on a signed statement that the
# coordinator rolled back to it: "devices may replace any version up to <upto> with <to>". <upto>
# is the newest version published when the statement was made, so the statement cannot be replayed
# later to take devices back from a version published after it.


def rollback_statement(to: str, upto: str) -> bytes:
    return f"fedkb rollback v1: devices may replace any version up to {upto} with {to}".encode()


def sign_rollback(key: Ed25519PrivateKey, to: str, upto: str) -> dict:
    """The registry's record of a rollback to ``to``, signed (hex) by the coordinator's key."""
    return {"to": to, "upto": upto, "signature": key.sign(rollback_statement(to, upto)).hex()}


def check_rollback(record: object, *, to: str, current: str, pinned: bytes, where: object) -> None:
    """Raises ``ArtifactError`` unless ``record`` is a rollback to ``to``, signed by ``pinned``,
    covering ``current``."""
    refused = f"{where}: refused to roll back from version {current} to {to}"
    if not isinstance(record, dict):
        raise artifacts.ArtifactError(f"{refused}: the registry records no rollback to {to}")
    upto, signature = record.get("upto"), record.get("signature")
    if record.get("to") != to or not isinstance(upto, str) or not upto.isdigit() or not isinstance(signature, str):
        raise artifacts.ArtifactError(f"{refused}: the rollback record is malformed ({record!r:.200})")
    try:
        Ed25519PublicKey.from_public_bytes(pinned).verify(bytes.fromhex(signature), rollback_statement(to, upto))
    except (InvalidSignature, ValueError):
        raise artifacts.ArtifactError(f"{refused}: the rollback record is not signed by the coordinator key "
                                      "pinned on this device") from None
    if int(upto) < int(current):
        raise artifacts.ArtifactError(f"{refused}: the signed rollback covers versions up to {upto} only, and this "
                                      f"device runs the newer {current}")
