"""Public text for central pretraining and public word counts: never a device's text.

A public corpus is a file of passages: plain UTF-8 text with one passage per line (``.txt``), or
JSON Lines with a ``"text"`` field per record (``.jsonl``); either may be gzip-compressed
(``.txt.gz``, ``.jsonl.gz``, detected from the content). Reading is strict, like
``federated/corpus.py``: the first bad line stops it with a ``PublicTextError`` naming the file
and line, so a half-read corpus never trains a model. Blank lines are skipped.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from common.errors import FedkbError
from tokenizer.words import words

BUNDLED = {"public": Path(__file__).parent / "corpora" / "public.txt.gz"}  # the demo's public-domain corpus
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
MAX_PASSAGE_CHARS = 100_000  # a longer "line" is almost surely not text split into passages


class PublicTextError(FedkbError, ValueError):
    """A public corpus is missing, unreadable or holds a bad line; the message names file and line."""


@dataclass(frozen=True)
class PublicText:
    path: Path
    sha256: str  # of the file as stored (compressed or not)
    passages: list[str]

    def word_counts(self) -> collections.Counter[str]:
        """How often each word (``tokenizer.words``: lower-cased, punctuation removed) occurs."""
        counts: collections.Counter[str] = collections.Counter()
        for passage in self.passages:
            counts.update(words(passage))
        return counts


def resolve(name_or_path: str | Path) -> Path:
    """A bundled corpus name (``public``) or a path to a text or JSONL file."""
    if isinstance(name_or_path, str) and name_or_path in BUNDLED:
        path = BUNDLED[name_or_path]
        if not path.is_file():
            raise PublicTextError(f"{path}: the bundled public corpus is not in this checkout; pass --corpus PATH")
        return path
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise PublicTextError(f"{path}: no such file (bundled public corpora: {', '.join(sorted(BUNDLED))})")
    return path


def is_jsonl(path: Path) -> bool:
    """JSON Lines by name (``.jsonl``, ``.jsonl.gz``, ``.json``…); anything else is plain text."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in (".jsonl", ".json", ".ndjson")


def read(path: str | Path) -> PublicText:
    """Every passage of ``path``, white space collapsed; raises ``PublicTextError`` at the first bad line."""
    path = Path(path)
    try:
        stored = path.read_bytes()
        raw = gzip.decompress(stored) if stored[:2] == _GZIP_MAGIC else stored
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise PublicTextError(f"{path}: cannot read: {exc}") from None
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
    jsonl = is_jsonl(path)
    passages = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if line.strip():
            text = _parse_line(line, f"{path}:{lineno}", jsonl)
            if text:  # a JSONL record whose "text" is blank
                passages.append(text)
    if not passages:
        raise PublicTextError(f"{path}: no text (the file is empty or blank)")
    if not any(words(p) for p in passages):
        raise PublicTextError(f"{path}: {len(passages):,} lines but not one word (letters or digits) in them")
    return PublicText(path, hashlib.sha256(stored).hexdigest(), passages)


def _parse_line(line: bytes, where: str, jsonl: bool) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PublicTextError(f"{where}: invalid UTF-8 at byte {exc.start} of the line") from None
    if jsonl:
        text = _text_field(text, where)
    text = " ".join(text.replace("\x00", " ").split())
    if len(text) > MAX_PASSAGE_CHARS:
        raise PublicTextError(f"{where}: {len(text):,} characters in one passage (at most {MAX_PASSAGE_CHARS:,}); "
                              "put one passage per line")
    return text


def _text_field(line: str, where: str) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PublicTextError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # huge integers, deep nesting
        raise PublicTextError(f"{where}: invalid JSON ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise PublicTextError(f'{where}: expected a JSON object with a "text" field, got {type(obj).__name__}')
    if "text" not in obj:
        raise PublicTextError(f'{where}: missing "text"')
    text = obj["text"]
    if not isinstance(text, str):
        raise PublicTextError(f'{where}: "text" must be a string, got {type(text).__name__}')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, which JSON escapes allow
        raise PublicTextError(f'{where}: "text" is not valid Unicode ({exc.reason} at character {exc.start})') from None
    return text
