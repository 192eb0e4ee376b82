"""The published-model format shared by the server (which writes it) and devices (which install it).

A version directory holds ``weights.npz``, ``model.json``, ``spm.model`` and ``manifest.json``
(the sha256 of each of the other files, the round, the metrics). Versions published since the
on-device format also hold ``ondevice.npz`` (the same weights in int8, see ``common/ondevice.py``),
listed in the manifest like the rest; older versions without it stay valid. Versions may also
hold ``ngrams.tsv.gz``, the privately gathered word n-gram counts (``read_ngrams`` says the
format). Anything that reads a version verifies it first with ``verify``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Mapping
from pathlib import Path

from common.errors import FedkbError
from common.layout import TOKENIZER_MODEL

WEIGHTS, CONFIG, MANIFEST = "weights.npz", "model.json", "manifest.json"
TOKENIZER = TOKENIZER_MODEL
ONDEVICE = "ondevice.npz"
NGRAMS = "ngrams.tsv.gz"
FILES = (WEIGHTS, CONFIG, TOKENIZER)  # every version has these
OPTIONAL_FILES = (ONDEVICE, NGRAMS)  # checked (and installed) when the manifest lists them

# The sentence-start word of n-gram tables: tokenizer.specials.BOS (this module imports nothing of the repo).
NGRAM_BOS = "<s>"

NgramCounts = dict[int, dict[tuple[str, ...], int]]  # order -> n-gram (its words) -> count


class ArtifactError(FedkbError):
    """A version is missing, incomplete or does not match its manifest; the message names the file."""


def version_name(value: object, where: object) -> str:
    """``value`` if it is a version's folder name (digits only, as the registry publishes them),
    else ``ArtifactError`` naming ``where``: a name from a file is never joined to a path unchecked."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12):
        raise ArtifactError(f"{where}: {value!r} is not a version name (digits only, such as 0003)")
    return value


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


def ngrams_to_bytes(table: Mapping[int, Mapping[tuple[str, ...], int]]) -> bytes:
    """The n-gram table as ``ngrams.tsv.gz``: one ``order<TAB>w1 w2 ...<TAB>count`` line per n-gram.

    Lines are sorted by order, then by the n-gram's words. The gzip header carries no time or
    name, so the same table always gives the same bytes (and the same sha256). Raises
    ``ValueError`` on anything ``read_ngrams`` would refuse.
    """
    lines = []
    for order in sorted(table):
        for gram in sorted(table[order]):
            line = f"{order}\t{' '.join(gram)}\t{table[order][gram]}"
            _parse_line(line, order, "the table", 0)  # refuse to write what cannot be read back
            lines.append(line + "\n")
    return gzip.compress("".join(lines).encode("utf-8"), mtime=0)


def read_ngrams(path: Path) -> NgramCounts:
    """Reads ``ngrams.tsv.gz``: ``{order: {(w1, ..., wn): count}}``.

    Every line is ``order<TAB>words<TAB>count``: ``order`` a positive integer, ``words`` exactly
    ``order`` words joined by single spaces (a word holds no whitespace; ``<s>``, the start of a
    sentence, only leads an n-gram of order 2 or more, and never twice), ``count`` a positive
    integer. Lines are sorted by (order, words) with no n-gram twice. Raises ``ArtifactError``
    naming the file and line on anything else.
    """
    path = Path(path)
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise ArtifactError(f"{path}: not a gzip file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path}: not UTF-8 ({exc})") from None
    if text and not text.endswith("\n"):
        raise ArtifactError(f"{path}: the last line is cut short (no newline at the end)")
    table: NgramCounts = {}
    previous: tuple[int, tuple[str, ...]] | None = None
    for number, line in enumerate(text.split("\n")[:-1], 1):  # not splitlines(): it also splits at \x85, \u2028...
        order, gram, count = _parse_line(line, None, path, number)
        if previous is not None and (order, gram) <= previous:
            raise ArtifactError(f"{path}, line {number}: {line!r} is out of order or repeated "
                                "(lines are sorted by order, then words)")
        previous = (order, gram)
        table.setdefault(order, {})[gram] = count
    return table


def _parse_line(line: str, expected_order: int | None, where: object, number: int) -> tuple[int, tuple[str, ...], int]:
    def bad(why: str) -> Exception:
        at = f"{where}, line {number}" if number else str(where)
        return (ArtifactError if number else ValueError)(f"{at}: {why} in {line!r}")

    fields = line.split("\t")
    if len(fields) != 3:
        raise bad(f"expected 3 tab-separated fields (order, words, count), found {len(fields)}")
    order_text, gram_text, count_text = fields
    if not (order_text.isascii() and order_text.isdigit()) or int(order_text) < 1:
        raise bad(f"the order {order_text!r} is not a positive integer")
    order = int(order_text)
    if expected_order is not None and order != expected_order:
        raise bad(f"the order {order} is not the table's {expected_order}")
    gram = tuple(gram_text.split(" "))
    if len(gram) != order or any(not w or w != "".join(w.split()) for w in gram):
        raise bad(f"expected {order} words joined by single spaces, without other whitespace")
    if NGRAM_BOS in gram[1:] or (order == 1 and gram[0] == NGRAM_BOS):
        raise bad(f"{NGRAM_BOS} may only be the first word of an n-gram of order 2 or more")
    if not (count_text.isascii() and count_text.isdigit()) or int(count_text) < 1:
        raise bad(f"the count {count_text!r} is not a positive integer")
    return order, gram, int(count_text)
