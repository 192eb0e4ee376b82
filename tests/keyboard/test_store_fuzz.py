"""The typing log under arbitrary input: each append is stored as the rule says or refused with a
``DeviceError`` naming the device, and a refusal never costs a sentence already stored."""

from __future__ import annotations

import math
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keyboard.store as store
from keyboard.store import MAX_SENTENCE_CHARS, Device, DeviceError, devices_of_users, new_device_id

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_char = st.characters(codec=None, categories=None)  # lone surrogates included
odd_char = st.sampled_from(["\x00", "\ud800", "\udfff", "\t", "\n", "\r", "\x0b", "\x1b", "\u00a0", "\u2028",
                            "\u200b", "\ufeff", "\U0001f600", " "])
texts = st.one_of(
    st.text(st.one_of(any_char, odd_char), max_size=30),
    st.just(""),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "ab ", "\x00", " "]),
              st.sampled_from([MAX_SENTENCE_CHARS, MAX_SENTENCE_CHARS + 1, 1_000_000])),  # pastes
)


def expected_stored(text: str) -> str | None:
    """The rule, stated independently of ``clean_sentence``: what is stored, or None when refused."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return None
    cleaned = " ".join(text.replace("\x00", " ").split())
    return cleaned if cleaned and len(cleaned) <= MAX_SENTENCE_CHARS else None


def _check_append(device: Device, text: object, timestamp: object, model: list[str]) -> None:
    want = expected_stored(text) if isinstance(text, str) else None
    ts_ok = timestamp is None or (isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool)
                                  and math.isfinite(timestamp))
    try:
        stored = device.append(text, timestamp=timestamp)
    except DeviceError as exc:
        message = str(exc)
        assert message.startswith(f"device {device.id}: "), message
        assert "\n" not in message and len(message) < 300, message[:400]
        assert want is None or not ts_ok, f"refused {text[:40]!r} at {timestamp!r}: {message}"
    else:
        assert want is not None and ts_ok, f"stored {stored[:40]!r} from {text!r:.60} at {timestamp!r}"
        assert stored == want
        model.append(stored)


@given(st.lists(st.tuples(st.one_of(texts, st.none(), st.integers(), st.binary(max_size=5)),
                          st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                                    st.booleans(), st.text(max_size=3))),
                min_size=1, max_size=8))
@FUZZ
def test_appends_store_by_the_rule_or_refuse_and_keep_the_log(appends):
    with tempfile.TemporaryDirectory() as tmp:
        with Device(Path(tmp) / "d", create=True) as device:
            device.append("kept from before", timestamp=-1e12)
            timed, now = ["kept from before"], []
            for i, (text, ts) in enumerate(appends):
                # Accepted numbers become small increasing ones (so, older than "now" and in order);
                # the type is kept, so what is refused still is.
                if isinstance(ts, float) and math.isfinite(ts):
                    ts = float(i)
                elif isinstance(ts, int) and not isinstance(ts, bool):
                    ts = i
                _check_append(device, text, ts, now if ts is None else timed)
                model = timed + now
                assert device.sentences() == model
                assert device.count() == len(model)
        with Device(Path(tmp) / "d") as again:  # on disk, as another process sees it
            assert again.sentences() == model
            splits = again.splits()
            assert splits.train + splits.heldout == model


@pytest.mark.parametrize("text", ["x" * 1_000_000, ("word " * 200_000), "\x00" * 1_000_000, "", " \t\n ", "\ud800",
                                  "fine \udc80 text"],
                         ids=["1MB-paste", "1MB-words", "1MB-NUL", "empty", "blank", "surrogate", "surrogate-in-text"])
def test_refused_text_leaves_the_log_and_says_why(tmp_path, text):
    with Device(tmp_path / "d", create=True) as device:
        for i in range(5):
            device.append(f"sentence {i}", timestamp=i)
        with pytest.raises(DeviceError, match=r"^device d: .*(allowed|empty text|not valid Unicode)"):
            device.append(text)
        assert device.sentences() == [f"sentence {i}" for i in range(5)]
        device.append("and typing goes on", timestamp=9)
        assert device.count() == 6


@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf, 10**400, "12", b"1", True, [1]])
def test_a_bad_timestamp_is_refused_not_stored_as_null(tmp_path, ts):
    with Device(tmp_path / "d", create=True) as device:
        device.append("first", timestamp=1)
        with pytest.raises(DeviceError, match="^device d: timestamp must be a finite number"):
            device.append("bad time", timestamp=ts)
        assert device.sentences() == ["first"]


def test_a_log_that_cannot_be_written_gives_a_device_error_and_keeps_what_was_stored(tmp_path):
    with Device(tmp_path / "d", create=True) as device:
        device.append("before", timestamp=1)
        device._db.execute("PRAGMA query_only=ON")  # stands in for a read-only or full disk
        with pytest.raises(DeviceError, match=r"^device d: cannot write the log in .*log\.sqlite: .*readonly"):
            device.append("not stored")
        with pytest.raises(DeviceError, match="cannot write the log"):
            device.append_many([(2.0, "nor this")])
        with pytest.raises(DeviceError, match="cannot write the status record"):
            device.set(last_round=3)
        device._db.execute("PRAGMA query_only=OFF")
        assert not device._db.in_transaction  # a failed transaction was rolled back, not left open
        device.append("after", timestamp=3)
        assert device.sentences() == ["before", "after"]


def test_a_log_locked_past_the_busy_timeout_gives_a_device_error(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "_BUSY_TIMEOUT_MS", 50)
    with Device(tmp_path / "d", create=True) as device:
        device.append("before", timestamp=1)
        other = sqlite3.connect(tmp_path / "d" / "log.sqlite", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer that never lets go
            with pytest.raises(DeviceError, match="^device d: cannot write the log .*database is locked"):
                device.append("while locked")
            other.execute("ROLLBACK")
        finally:
            other.close()
        device.append("after", timestamp=2)
        assert device.sentences() == ["before", "after"]


@given(st.text(st.one_of(any_char, odd_char), min_size=1, max_size=20))
@FUZZ
def test_any_user_name_is_found_again_from_the_device_status_record(user):
    with tempfile.TemporaryDirectory() as tmp:
        device_id = new_device_id()
        with Device(Path(tmp) / device_id, create=True) as device:
            device.set(user=user)
        assert devices_of_users(Path(tmp)) == {user: device_id}


@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(st.one_of(any_char),
                                                                                           max_size=10)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8), max_size=4))
@FUZZ
def test_status_record_round_trips_any_json_value(values):
    with tempfile.TemporaryDirectory() as tmp, Device(Path(tmp) / "d", create=True) as device:
        device.append("a sentence")
        device.set(**values)
        for key, value in values.items():
            assert device.get(key) == value
        assert device.sentences() == ["a sentence"]


def test_a_corrupted_log_gives_device_errors_naming_it_never_sqlite_errors(tmp_path):
    directory = tmp_path / "d"
    with Device(directory, create=True) as device:
        device.set(user="alice")
        device.append_many([(float(i), f"sentence number {i} of the log") for i in range(3000)])
    db = directory / "log.sqlite"
    data = bytearray(db.read_bytes())
    page = 4096
    data[2 * page: 8 * page] = b"\xa5" * (6 * page)  # B-tree pages overwritten; the header survives
    db.write_bytes(bytes(data))
    refused = 0
    try:
        device = Device(directory)
    except DeviceError as exc:
        assert str(db) in str(exc)
        return
    with device:
        for op in (device.count, device.sentences, device.splits, device.status, device.train_word_counts,
                   lambda: device.get("user"), lambda: device.append("one more"),
                   lambda: device.set(last_round=1)):
            try:
                op()
            except DeviceError as exc:
                assert str(db) in str(exc) and str(exc).startswith("device d: "), exc
                refused += 1
    assert refused > 0  # the damage was seen, and reported as a DeviceError
