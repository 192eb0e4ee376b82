"""A device's typing log: timestamped sentences in SQLite, on the device only.

Each device is a directory ``<home>/devices/<id>/`` holding ``log.sqlite``. The database
has two tables: ``sentences`` (the log; raw text exists only here) and ``meta`` (the
device's status record: the user it belongs to, its availability model, the model version
it has installed, the last federated round it joined). The user's name exists only in this
record: device ids are random (:func:`new_device_id`) and the population index holds none.
WAL mode lets the keyboard append
while a trainer or evaluator reads the splits (each read is one snapshot; a writer waits up to
the busy timeout for another). Bad input and SQLite failures (a full or read-only disk, a damaged
file, a lock held past the timeout) surface as ``DeviceError`` naming the device and the file,
and never cost a sentence already stored.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import re
import secrets
import shutil
import sqlite3
import time
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import live_counts
from common.errors import FedkbError
from common.layout import DEVICE_DB, DeviceLayout
from tokenizer.words import words

HELDOUT_FRACTION = 0.2
# A "sentence" is what a person types before Enter; anything longer is a paste, not typing.
MAX_SENTENCE_CHARS = 10_000
_BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sentences (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    ts   REAL,            -- seconds since the epoch; NULL when the source had no timestamps
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL   -- JSON
);
"""


# Made on first use, so devices created before it need no migration.
_LIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS live_counts (
    version TEXT NOT NULL,   -- the model version whose suggestions were shown ("none": no model yet)
    source  TEXT NOT NULL,   -- common.live_counts.SOURCES
    name    TEXT NOT NULL,   -- common.live_counts.FIELDS
    value   INTEGER NOT NULL,
    PRIMARY KEY (version, source, name)
);
"""


class DeviceError(FedkbError):
    """A device directory is missing, unreadable, or was given bad input."""


DEVICE_ID_PREFIX = "dev-"
DEVICE_ID_PATTERN = re.compile(r"dev-[0-9a-f]{16}")  # the form of every id fedkb makes


def new_device_id(*, taken: Container[str] = ()) -> str:
    """A new device id: ``dev-`` and 16 random hex digits (64 bits from ``secrets``), not in ``taken``.

    An id says nothing about its user: the user's name stays in the device's own status record
    (``meta``), which only the device reads; the server sees ids only.
    """
    while True:
        device_id = DEVICE_ID_PREFIX + secrets.token_hex(8)
        if device_id not in taken:
            return device_id


def device_user(directory: Path) -> str | None:
    """The user named in the status record of the device at ``directory`` (None if it names none).

    Reads the device's own database read-only, without the WAL set-up of :class:`Device`: this is
    how a person picks their device by name (``fedkb keyboard --user``), on the device side.
    """
    db_path = Path(directory) / DEVICE_DB
    try:
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_MS / 1000)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'user'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise DeviceError(f"device {Path(directory).name}: cannot read the status record in {db_path}: {exc}") from None
    user = None if row is None else json.loads(row[0])
    return user if isinstance(user, str) else None


def devices_of_users(devices_root: Path) -> dict[str, str]:
    """``{user: device id}`` from the status records of every device under ``devices_root``.

    The device side's own mapping (each device knows its user); a user with several devices maps
    to the first in sorted order.
    """
    found: dict[str, str] = {}
    for directory in list_device_dirs(devices_root):
        user = device_user(directory)
        if user is not None:
            found.setdefault(user, directory.name)
    return found


def clean_sentence(text: Any, *, where: str = "sentence") -> str:
    """Collapses white space; raises ``DeviceError`` on non-text, empty or oversized input."""
    if not isinstance(text, str):
        raise DeviceError(f"{where}: expected text, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DeviceError(f"{where}: not valid Unicode text ({exc.reason} at character {exc.start})") from None
    cleaned = " ".join(text.replace("\x00", " ").split())
    if not cleaned:
        raise DeviceError(f"{where}: empty text")
    if len(cleaned) > MAX_SENTENCE_CHARS:
        raise DeviceError(
            f"{where}: {len(cleaned):,} characters is more than the {MAX_SENTENCE_CHARS:,} allowed for one sentence"
        )
    return cleaned


def heldout_count(n: int) -> int:
    """How many of ``n`` sentences form the held-out split: the newest 20 %, rounded half up."""
    return int(n * HELDOUT_FRACTION + 0.5)


@dataclass(frozen=True)
class Splits:
    """A device's sentences in time order, split into train (older) and held-out (newest 20 %)."""

    train: list[str]
    heldout: list[str]


class Device:
    """One device: its typing log and status record. Use as a context manager or call ``close()``."""

    def __init__(self, directory: Path, *, create: bool = False):
        self.directory = Path(directory)
        self.id = self.directory.name
        self._live_table = False  # the live_counts table is made on first use (add_live_counts)
        db_path = self.directory / DEVICE_DB
        if not create and not db_path.is_file():
            raise DeviceError(f"no device at {self.directory} (missing {DEVICE_DB})")
        if create:
            self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(db_path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if create:
                self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DeviceError(f"device {self.id}: cannot open {db_path}: {exc}") from None

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the log -------------------------------------------------------------------------
    def append(self, text: str, timestamp: float | None = None) -> str:
        """Appends one sentence (``timestamp`` defaults to now) and returns it as stored.

        Raises ``DeviceError`` (and stores nothing) for bad text, a bad timestamp, or a log that
        cannot be written; what was stored before is untouched either way.
        """
        cleaned = clean_sentence(text, where=f"device {self.id}")
        ts = time.time() if timestamp is None else _check_timestamp(timestamp, f"device {self.id}")
        with self._errors("cannot write the log"):
            self._db.execute("INSERT INTO sentences (ts, text) VALUES (?, ?)", (ts, cleaned))
        return cleaned

    def append_many(self, rows: Iterable[tuple[float | None, str]]) -> int:
        """Appends already-cleaned ``(timestamp or None, text)`` rows in one transaction (all or none)."""
        with self._transaction("cannot write the log"):
            cur = self._db.executemany("INSERT INTO sentences (ts, text) VALUES (?, ?)", rows)
        return cur.rowcount

    def count(self) -> int:
        with self._errors("cannot read the log"):
            return self._db.execute("SELECT COUNT(*) FROM sentences").fetchone()[0]

    def sentences(self, *, after_id: int | None = None) -> list[str]:
        """All sentences (or those stored after row ``after_id``), oldest first (rows without a timestamp first)."""
        # Row ids can be negative (the audit plants canaries before the first row): no filter unless asked.
        where, args = ("WHERE id > ?", (after_id,)) if after_id is not None else ("", ())
        with self._errors("cannot read the log"):
            rows = self._db.execute(f"SELECT text FROM sentences {where} ORDER BY ts, id", args).fetchall()
        return [r[0] for r in rows]

    def last_id(self) -> int:
        """The row id of the newest sentence ever stored (ids are never reused), 0 before the first."""
        with self._errors("cannot read the log"):
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'sentences'").fetchone()
        return 0 if row is None else int(row[0])

    def splits(self) -> Splits:
        """Train split (older) and held-out split (newest 20 % by time), read in one snapshot."""
        texts = self.sentences()
        cut = len(texts) - heldout_count(len(texts))
        return Splits(train=texts[:cut], heldout=texts[cut:])

    def train_word_counts(self) -> collections.Counter[str]:
        """Word counts of the train split (``tokenizer.words``): what a device reports for the vocabulary."""
        counts: collections.Counter[str] = collections.Counter()
        for sentence in self.splits().train:
            counts.update(words(sentence))
        return counts

    def delete_log(self) -> None:
        """Deletes every sentence in the log (the person asked to forget what they typed)."""
        self._db.execute("PRAGMA secure_delete=ON")  # overwrite freed pages, not just unlink them
        with self._transaction("cannot delete the log"):
            self._db.execute("DELETE FROM sentences")
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'live_counts'").fetchone():
                self._db.execute("DELETE FROM live_counts")  # how this person typed is theirs too
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # nothing of the old text left in the WAL
        shutil.rmtree(DeviceLayout(self.directory).cache, ignore_errors=True)  # token ids of the text (lm/examples.py)

    # -- live counts (common/live_counts.py) ----------------------------------------------
    def add_live_counts(self, version: str, counts: dict[str, int], *, source: str = "typed") -> None:
        """Adds one finished sentence's (or a session's) counts to ``version``'s, in one transaction."""
        if source not in live_counts.SOURCES:
            raise DeviceError(f"device {self.id}: live counts source must be one of {live_counts.SOURCES}, "
                              f"got {source!r}")
        try:
            checked = live_counts.check(counts, f"device {self.id}: live counts for {version!r}")
        except ValueError as exc:
            raise DeviceError(str(exc)) from None
        if not self._live_table:  # once per connection, not per finished sentence
            with self._errors("cannot write the live counts"):
                self._db.executescript(_LIVE_SCHEMA)
            self._live_table = True
        with self._transaction("cannot write the live counts"):
            self._db.executemany(
                "INSERT INTO live_counts (version, source, name, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(version, source, name) DO UPDATE SET value = value + excluded.value",
                [(version, source, name, value) for name, value in checked.items()],
            )

    def live_counts(self, *, source: str = "typed") -> dict[str, dict[str, int]]:
        """``{version: counts}`` of one source, versions in name order; empty before any was recorded."""
        with self._errors("cannot read the live counts"):
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'live_counts'").fetchone() is None:
                return {}
            rows = self._db.execute("SELECT version, name, value FROM live_counts WHERE source = ? "
                                    "ORDER BY version", (source,)).fetchall()
        out: dict[str, dict[str, int]] = {}
        for version, name, value in rows:
            out.setdefault(version, live_counts.zero())[name] = value
        return out

    # -- the status record ---------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        with self._errors("cannot read the status record"):
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set(self, **values: Any) -> None:
        with self._transaction("cannot write the status record"):
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def status(self) -> dict[str, Any]:
        """The status record plus counts derived from the log."""
        with self._errors("cannot read the status record"):
            meta = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
        n = self.count()
        meta.update(id=self.id, sentences=n, heldout_sentences=heldout_count(n), train_sentences=n - heldout_count(n))
        return meta

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turns a SQLite failure (disk full, read-only, still locked after the busy timeout) into a ``DeviceError``."""
        try:
            yield
        except sqlite3.Error as exc:
            raise DeviceError(f"device {self.id}: {doing} in {self.directory / DEVICE_DB}: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; on any error ``ROLLBACK``.

        So the connection is never left mid-transaction.
        """
        with self._errors(doing):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise


def _check_timestamp(value: Any, where: str) -> float:
    try:
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an int too large for a float
        ok = False
    if not ok:
        raise DeviceError(f"{where}: timestamp must be a finite number of seconds, got {str(value)[:40]!r}")
    return float(value)


def list_device_dirs(devices_root: Path) -> Iterator[Path]:
    """Device directories under ``devices_root`` in sorted order (staging folders are skipped)."""
    if not devices_root.is_dir():
        return
    for entry in sorted(devices_root.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and (entry / DEVICE_DB).is_file():
            yield entry
