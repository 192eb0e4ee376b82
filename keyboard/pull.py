"""Pulling signed versions from the coordinator: the device side of the ``Version`` call.

The device says which version it has; the coordinator answers with the name of ``latest`` and,
when the device lacks the version, its files (``common/version_message.py``). The files are
written into a staging folder inside the device's own directory, checked against the manifest's
hashes and the signature of the key pinned at enrolment, and only then installed
(``keyboard/install.py``) or, for an evaluation, scored where they are and removed. A pulled
version is never trusted on first use: a device without a pinned key refuses it. Whatever is
refused, the device keeps the version it had.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common import artifacts, signing, version_message
from common.atomic import atomic_write
from common.layout import DeviceLayout
from common.messages import MessageError
from keyboard import install

SCRATCH = "eval-versions"  # in the device dir: a candidate pulled to be evaluated, never installed

Ask = Callable[[dict], tuple[dict, dict[str, np.ndarray]]]  # one Version call: request header -> reply


class PullRefused(artifacts.ArtifactError):
    """A pulled version was malformed, damaged or not signed by the pinned key; the message says which."""

    def __init__(self, message: str, version: str | None = None):
        super().__init__(message)
        self.version = version  # the refused version's name, when it had a valid one


def request(device_dir: Path, want: str | None = None) -> dict:
    """The ``Version`` request: this device, the version installed here, and the one wanted (None: latest)."""
    return {"device_id": Path(device_dir).name, "have": install.read_pointer(device_dir)["current"], "want": want}


def receive(device_dir: Path, reply: dict, arrays: dict[str, np.ndarray], into: Path) -> Path | None:
    """Writes the version of a ``Version`` reply under ``into`` and verifies it; returns its folder.

    Returns None when the reply carries no files (the device has the version already). Raises
    ``PullRefused`` naming the device and the file on anything that does not check out; nothing
    of a refused version is left behind.
    """
    device_dir = Path(device_dir)
    where = f"device {device_dir.name}: the coordinator's version"
    if reply.get("error"):
        raise PullRefused(f"{where}: refused the request ({reply['error']})")
    name = reply.get("version")
    if name is None:
        if arrays:
            raise PullRefused(f"{where}: files arrived without a version name")
        return None
    try:
        name = version_message.check_name(name, where)
    except MessageError as exc:
        raise PullRefused(str(exc)) from None
    try:
        files = version_message.files_from(arrays, f"{where} {name}")
    except MessageError as exc:
        raise PullRefused(str(exc), name) from None
    key = signing.pinned(device_dir)
    if key is None:
        raise PullRefused(f"device {device_dir.name}: no coordinator key is pinned in {device_dir}, so the pulled "
                          f"version {name} cannot be checked and is refused (enrol the device first)", name)
    target = Path(into) / name
    shutil.rmtree(target, ignore_errors=True)
    try:
        target.mkdir(parents=True)
        for fname, data in files.items():
            atomic_write(target / fname, data)
        artifacts.verify(target)
        signing.check(target, key)
        install.check_coherent(target, artifacts.read_manifest(target))
    except artifacts.ArtifactError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise PullRefused(f"device {device_dir.name}: pulled version {name} refused: {exc}", name) from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def pull_latest(device_dir: Path, ask: Ask) -> tuple[str | None, install.Installed | None]:
    """Asks for ``latest`` and installs it if this device lacks it; returns latest's name and what is installed.

    Raises ``PullRefused`` (the device keeps its version) if the version does not verify.
    """
    device_dir = Path(device_dir)
    reply, arrays = ask(request(device_dir))
    staging = DeviceLayout(device_dir).incoming
    try:
        path = receive(device_dir, reply, arrays, staging)
        if path is not None:
            install.install(device_dir, path, rollback=reply.get("rollback"))
    except PullRefused:
        raise
    except artifacts.ArtifactError as exc:
        raise PullRefused(f"device {device_dir.name}: pulled version {reply.get('version')} not installed: {exc}",
                          reply.get("version")) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return reply.get("latest"), install.installed(device_dir)


def fetch(device_dir: Path, ask: Ask, name: str) -> Path:
    """The verified files of version ``name`` for scoring: the installed copy, or pulled into the scratch folder.

    The caller removes the scratch folder (``discard``) when it is done.
    """
    device_dir = Path(device_dir)
    current = install.installed(device_dir)
    if current is not None and current.version == name and not current.fell_back:
        return current.path
    reply, arrays = ask({**request(device_dir, want=name), "have": None})
    if reply.get("version") not in (None, name):
        raise PullRefused(f"device {device_dir.name}: asked for version {name}, the coordinator sent "
                          f"{reply.get('version')!r}")
    path = receive(device_dir, reply, arrays, device_dir / SCRATCH)
    if path is None:
        raise PullRefused(f"device {device_dir.name}: asked for version {name}, the coordinator sent no files")
    return path


def discard(device_dir: Path) -> None:
    shutil.rmtree(Path(device_dir) / SCRATCH, ignore_errors=True)
