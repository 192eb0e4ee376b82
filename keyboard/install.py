"""Installing a published model version on a device, keeping the previous one.

``<device>/model/<version>/`` holds installed copies; ``<device>/model/installed.json`` says
which is current and which previous. A version is copied into a temporary folder, every file is
checked against the manifest's sha256 (on the source and again on the copy), the folder is
renamed into place, and only then does ``installed.json`` switch — atomically. A version whose
files are intact but do not belong together (a tokenizer of another size than the model's
vocabulary, an n-gram table that does not parse) is refused too, so the device keeps a version it
can run. Optional files (the int8 weights, the n-gram table) are installed when the manifest lists
them, like the others. A device whose current copy is later found damaged falls back to the
previous one.
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from common import artifacts, signing
from common import version_dir as version_files  # `version_dir` names the argument here
from common.atomic import atomic_write
from common.layout import INSTALLED_POINTER, DeviceLayout
from tokenizer.vocab import Tokenizer, TokenizerError


@dataclass(frozen=True)
class Installed:
    version: str
    path: Path
    manifest: dict
    fell_back: bool = False  # the current copy was damaged and the previous one is used


def read_pointer(device_dir: Path) -> dict:
    """``{"current": name or None, "previous": name or None}``; a damaged pointer reads as nothing installed."""
    path = DeviceLayout(device_dir).installed_pointer
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = {}
    data = data if isinstance(data, dict) else {}
    return {key: _folder_name(data.get(key)) for key in ("current", "previous")}


def _folder_name(value: object) -> str | None:
    """A version folder name from the pointer, or None for anything that is not one (such as ``../x``)."""
    try:
        return artifacts.version_name(value, INSTALLED_POINTER)
    except artifacts.ArtifactError:
        return None


def installed(device_dir: Path) -> Installed | None:
    """The working installed version (verified), the previous one if current is damaged, or None."""
    pointer = read_pointer(device_dir)
    for key in ("current", "previous"):
        name = pointer.get(key)
        if not name:
            continue
        path = DeviceLayout(device_dir).installed / name
        try:
            return Installed(name, path, artifacts.verify(path), fell_back=key == "previous")
        except artifacts.ArtifactError:
            continue
    return None


def install(device_dir: Path, version_dir: Path, *, rollback: dict | None = None) -> Installed:
    """Installs ``version_dir`` on the device; raises ``ArtifactError`` (naming the file) if it does not verify.

    A version older than the one installed is a rollback: it is installed only with ``rollback``,
    the registry's record of it signed by the pinned key (``common.signing.check_rollback``).
    Installing the version already current is a no-op. On any error the device keeps what it had.
    """
    version_dir = Path(version_dir)
    # The name becomes a folder of this device that install replaces: never ``..`` or a path.
    artifacts.version_name(version_dir.name, version_dir)
    manifest = artifacts.verify(version_dir)
    key, newly_pinned = trusted_key(device_dir, version_dir)
    signing.check(version_dir, key)
    check_coherent(version_dir, manifest)
    name = version_dir.name
    pointer = read_pointer(device_dir)
    current = installed(device_dir)
    if current is not None and current.version == name and not current.fell_back:
        return current
    if current is not None and int(name) < int(current.version):
        signing.check_rollback(rollback, to=name, current=current.version, pinned=key, where=f"device {device_dir}")
    models = DeviceLayout(device_dir).installed

    def check_copy(copy: Path) -> dict:  # the copy, not just the source
        copied = artifacts.verify(copy)
        signing.check(copy, key)
        return copied

    files = {fname: (version_dir / fname).read_bytes()
             for fname in (*artifacts.listed_files(manifest), artifacts.MANIFEST, signing.SIGNATURE)}
    manifest = version_files.write(models / name, files, staging=models / f".incoming-{name}", check=check_copy,
                                   replace=True)
    if newly_pinned:
        signing.pin(device_dir, key)
    previous = current.version if current is not None else pointer.get("current")
    pointer_text = json.dumps({"current": name, "previous": previous})
    atomic_write(DeviceLayout(device_dir).installed_pointer, pointer_text.encode())
    for old in models.iterdir():  # keep current and previous only
        if old.is_dir() and old.name not in (name, previous):
            shutil.rmtree(old, ignore_errors=True)
    return Installed(name, models / name, manifest)


def trusted_key(device_dir: Path, version_dir: Path) -> tuple[bytes, bool]:
    """The coordinator key this device trusts, and whether it is pinned only now.

    Enrolment (``fedkb population seed``) pins it. A device made before versions were signed,
    or outside a population, pins the key beside the registry at its first install (trust on
    first use, as ssh does); from then on a version signed by any other key is refused.
    """
    key = signing.pinned(device_dir)
    if key is not None:
        return key, False
    found = Path(version_dir).resolve().parent.parent / "keys" / signing.PUBLIC_KEY
    if not found.is_file():
        raise artifacts.ArtifactError(f"{device_dir}: no coordinator key is pinned on this device and {found} does "
                                      "not exist, so no version can be checked; enrol the device first")
    return found.read_bytes(), True


def check_coherent(version_dir: Path, manifest: dict) -> None:
    """Checks that the model config, the tokenizer and the weights agree on the vocabulary,
    and that an n-gram table reads.

    The sha256 manifest proves the files are the ones published, not that they belong together;
    a version published with another tokenizer would install and then fail on every keystroke.
    Raises ``ArtifactError`` naming the file that does not fit.
    """
    key = tuple(sorted(manifest["files"].items()))
    _check_coherent(str(Path(version_dir).resolve()), key)


@functools.lru_cache(maxsize=16)  # rollout installs one version on every device: check it once
def _check_coherent(version_dir: str, files_key: tuple) -> None:
    directory = Path(version_dir)
    config_file, tokenizer_file = directory / artifacts.CONFIG, directory / artifacts.TOKENIZER
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        vocab = config["vocab_size"]
        if not isinstance(vocab, int) or isinstance(vocab, bool):
            raise ValueError(f"vocab_size {vocab!r} is not an integer")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise artifacts.ArtifactError(f"{config_file}: unreadable model config ({exc})") from None
    try:
        pieces = Tokenizer.load(tokenizer_file).vocab_size
    except TokenizerError as exc:  # its message names the file
        raise artifacts.ArtifactError(str(exc)) from None
    if pieces != vocab:
        raise artifacts.ArtifactError(
            f"{tokenizer_file}: has {pieces} pieces but {config_file} gives the model {vocab}; "
            "the tokenizer does not belong to this model"
        )
    for name in (artifacts.WEIGHTS, *(n for n in artifacts.OPTIONAL_FILES if n.endswith(".npz"))):
        if name == artifacts.WEIGHTS or name in dict(files_key):
            _check_vocab_rows(directory / name, vocab, config_file)
    if artifacts.NGRAMS in dict(files_key):
        artifacts.read_ngrams(directory / artifacts.NGRAMS)  # raises ArtifactError naming the file and line


def _check_vocab_rows(weights_file: Path, vocab: int, config_file: Path) -> None:
    """The embedding has one row and the output bias one entry per piece of the vocabulary."""
    shapes = {key: array.shape for key, array in version_files.read_arrays(weights_file).items()}
    for key, shape in shapes.items():
        if key.removesuffix(".int8") in ("embedding/embeddings", "output_bias") and shape[:1] != (vocab,):
            raise artifacts.ArtifactError(
                f"{weights_file}: {key} has shape {shape}, but {config_file} gives the model {vocab} pieces"
            )
    if not any(key.removesuffix(".int8") == "embedding/embeddings" for key in shapes):
        raise artifacts.ArtifactError(f"{weights_file}: no embedding/embeddings array")
