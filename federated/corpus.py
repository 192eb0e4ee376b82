"""Reading a corpus of typed text partitioned by user: JSONL (optionally gzip-compressed).

One record per line: ``{"user": str, "text": str}`` with an optional ``"timestamp"`` (ISO 8601).
Without timestamps, file order is time order. Reading is strict: the first bad record stops it
with a ``CorpusError`` naming the file and line, before anything is written anywhere.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from common.errors import FedkbError
from keyboard.store import DeviceError, clean_sentence

BUNDLED = {"shakespeare": Path(__file__).parent / "corpora" / "shakespeare.jsonl.gz"}
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"  # some editors start UTF-8 files with it; it belongs to no record
_SHOWN = 60  # characters of a bad value quoted in an error message


class CorpusError(FedkbError, ValueError):
    """A corpus file is missing or holds a bad record; the message names file and line."""


@dataclass(frozen=True)
class Record:
    user: str
    text: str
    timestamp: float | None  # seconds since the epoch, UTC
    line: int


def resolve_corpus(name_or_path: str) -> Path:
    """A bundled corpus name (``shakespeare``) or a path to a JSONL / JSONL.gz file."""
    if name_or_path in BUNDLED:
        return BUNDLED[name_or_path]
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(BUNDLED))
        raise CorpusError(f"{path}: no such file (bundled corpora: {known})")
    return path


def read_records(path: Path) -> list[Record]:
    """Parses and validates every record of ``path``; raises ``CorpusError`` at the first bad one."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
        if raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM):]
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt compressed data
        raise CorpusError(f"{path}: cannot read: {exc}") from None
    records = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        records.append(_parse_line(line, path, lineno))
    if not records:
        raise CorpusError(f"{path}: no records")
    return records


def _parse_line(line: bytes, path: Path, lineno: int) -> Record:
    where = f"{path}:{lineno}"
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{where}: invalid UTF-8 at byte {exc.start} of the line") from None
    try:
        obj = json.loads(decoded)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits; nesting too deep
        raise CorpusError(f"{where}: invalid JSON ({_shorten(str(exc))})") from None
    if not isinstance(obj, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    user = obj.get("user")
    if not isinstance(user, str):
        got = "nothing" if user is None else type(user).__name__
        raise CorpusError(f'{where}: "user" must be a string, got {got}')
    user = user.strip()
    if not user:
        raise CorpusError(f'{where}: "user" is empty')
    try:
        user.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800", which JSON escapes allow
        raise CorpusError(f'{where}: "user" is not valid Unicode text '
                          f"({exc.reason} at character {exc.start})") from None
    if "text" not in obj:
        raise CorpusError(f'{where}: missing "text"')
    try:
        text = clean_sentence(obj["text"], where='"text"')
    except DeviceError as exc:
        raise CorpusError(f"{where}: {exc}") from None
    return Record(user=user, text=text, timestamp=_parse_timestamp(obj.get("timestamp"), where), line=lineno)


def _parse_timestamp(value: object, where: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CorpusError(f'{where}: "timestamp" must be an ISO 8601 string, got {type(value).__name__}')
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CorpusError(f'{where}: "timestamp" {_shorten(value)!r} is not ISO 8601') from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _shorten(value: str) -> str:
    """``value`` cut to a length fit for an error message (a bad field may be megabytes long)."""
    return value if len(value) <= _SHOWN else f"{value[:_SHOWN]}… ({len(value):,} characters)"


def group_by_user(records: list[Record], path: Path) -> dict[str, list[Record]]:
    """Records per user, users in order of first appearance, each user's records in time order.

    A user whose records all carry timestamps is sorted by them (ties keep file order); one
    whose records carry none keeps file order; a mix is an error, since no order can be trusted.
    """
    users: dict[str, list[Record]] = {}
    for record in records:
        users.setdefault(record.user, []).append(record)
    for user, recs in users.items():
        stamped = [r.timestamp is not None for r in recs]
        if all(stamped):
            recs.sort(key=lambda r: r.timestamp)
        elif any(stamped):
            missing = next(r for r in recs if r.timestamp is None)
            raise CorpusError(
                f"{path}:{missing.line}: user {_shorten(user)!r} has records with and without \"timestamp\"; "
                "give all of a user's records a timestamp, or none"
            )
    return users
