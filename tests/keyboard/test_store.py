"""The device typing log: appends, time order, the held-out split, input checks, concurrency."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyboard.store import (
    DEVICE_ID_PATTERN,
    MAX_SENTENCE_CHARS,
    Device,
    DeviceError,
    clean_sentence,
    device_user,
    devices_of_users,
    heldout_count,
    list_device_dirs,
    new_device_id,
)
from tests.conftest import REPO


@pytest.fixture
def device(tmp_path: Path):
    with Device(tmp_path / "dev-1", create=True) as dev:
        yield dev


# -- appending and order ----------------------------------------------------------------------
def test_append_returns_cleaned_text_and_counts(device):
    assert device.count() == 0
    assert device.append("  hello   there\tworld \n") == "hello there world"
    device.append("second one")
    assert device.count() == 2
    assert device.sentences() == ["hello there world", "second one"]


def test_append_defaults_timestamp_to_now(device):
    before = time.time()
    device.append("now")
    after = time.time()
    (ts,) = device._db.execute("SELECT ts FROM sentences").fetchone()
    assert before <= ts <= after


def test_sentences_come_back_in_time_order_with_untimed_rows_first(device):
    device.append("at twenty", timestamp=20)
    device.append("at ten", timestamp=10)
    device.append("at thirty", timestamp=30.5)
    device.append("also at ten", timestamp=10)  # a tie keeps insertion order
    assert device.append_many([(None, "no time one"), (None, "no time two"), (5.0, "at five")]) == 3
    device.append_many([(None, "no time three")])
    assert device.sentences() == [
        "no time one", "no time two", "no time three",
        "at five", "at ten", "also at ten", "at twenty", "at thirty",
    ]


@pytest.mark.parametrize("n, heldout", [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1), (10, 2), (13, 3), (100, 20)])
def test_heldout_is_newest_fifth_rounded_half_up(device, n, heldout):
    assert heldout_count(n) == heldout
    # Insert newest first so that insertion order and time order disagree.
    for i in reversed(range(n)):
        device.append(f"sentence number {i}", timestamp=1_000 + i)
    everything = [f"sentence number {i}" for i in range(n)]
    splits = device.splits()
    assert len(splits.heldout) == heldout
    assert splits.heldout == everything[n - heldout:]
    assert splits.train == everything[: n - heldout]
    assert splits.train + splits.heldout == device.sentences() == everything


def test_train_word_counts_cover_only_the_train_split(device):
    for i, text in enumerate(["a b b", "c a", "d e", "f g", "secret heldout"]):
        device.append(text, timestamp=i)
    counts = device.train_word_counts()
    assert counts == {"a": 2, "b": 2, "c": 1, "d": 1, "e": 1, "f": 1, "g": 1}
    assert "secret" not in counts


# -- input checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, kind", [(None, "NoneType"), (5, "int"), (b"bytes", "bytes"), (["a"], "list")])
def test_clean_sentence_rejects_non_text(bad, kind):
    with pytest.raises(DeviceError, match=f"expected text, got {kind}"):
        clean_sentence(bad)


@pytest.mark.parametrize("bad", ["", " ", "\t\n  \r", "\x00", " \x00 \x00 "])
def test_clean_sentence_rejects_empty(bad):
    with pytest.raises(DeviceError, match="empty text"):
        clean_sentence(bad)


def test_clean_sentence_rejects_a_paste_and_says_why():
    with pytest.raises(DeviceError) as info:
        clean_sentence("x" * 1_000_000, where="device d")
    message = str(info.value)
    assert message.startswith("device d:")
    assert "1,000,000 characters" in message and f"{MAX_SENTENCE_CHARS:,}" in message


def test_clean_sentence_limit_is_inclusive():
    assert clean_sentence("y" * MAX_SENTENCE_CHARS) == "y" * MAX_SENTENCE_CHARS
    with pytest.raises(DeviceError):
        clean_sentence("y" * (MAX_SENTENCE_CHARS + 1))


@pytest.mark.parametrize("bad", ["\ud800", "ok \udfff then", "\udc80"])
def test_clean_sentence_rejects_lone_surrogates(bad):
    with pytest.raises(DeviceError, match="not valid Unicode text"):
        clean_sentence(bad)


def test_clean_sentence_replaces_nul_and_collapses_space():
    assert clean_sentence("a\x00b\u00a0\u2003c\n\nd") == "a b c d"


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_clean_sentence_property(text):
    try:
        out = clean_sentence(text)
    except DeviceError:
        return
    assert isinstance(out, str) and out
    assert out == out.strip()
    assert "\x00" not in out
    assert len(out) <= MAX_SENTENCE_CHARS
    out.encode("utf-8")


@given(st.text(st.characters(blacklist_categories=())))  # surrogates allowed
@settings(max_examples=200, deadline=None)
def test_clean_sentence_property_with_surrogates(text):
    try:
        out = clean_sentence(text)
    except DeviceError:
        return
    out.encode("utf-8")
    assert out and out == out.strip() and "\x00" not in out


@pytest.mark.parametrize(
    "bad, message",
    [("", "empty"), ("x" * (MAX_SENTENCE_CHARS + 1), "allowed"), ("\ud800", "not valid Unicode"), (7, "expected text")],
)
def test_rejected_append_leaves_log_intact(device, bad, message):
    device.append("first", timestamp=1)
    device.append("second", timestamp=2)
    with pytest.raises(DeviceError, match=message) as info:
        device.append(bad)
    assert device.id in str(info.value)
    assert device.count() == 2
    assert device.sentences() == ["first", "second"]
    with Device(device.directory) as again:  # and on disk, seen by another connection
        assert again.sentences() == ["first", "second"]


# -- status record -------------------------------------------------------------------------------
def test_status_counts(device):
    device.set(user="alice")
    for i in range(13):
        device.append(f"s {i}", timestamp=i)
    status = device.status()
    assert status == {
        "user": "alice", "id": "dev-1", "sentences": 13, "heldout_sentences": 3, "train_sentences": 10,
    }


def test_set_get_round_trip(device):
    values = {
        "user": "Hamlet::HAMLET",
        "availability": {"tz_offset_hours": -3, "idle_day": 0.25},
        "rounds": [1, 2, 3],
        "model_version": None,
        "ratio": 0.125,
        "flag": True,
        "unicode": "naïve ☃ 日本",
    }
    device.set(**values)
    for key, value in values.items():
        assert device.get(key) == value
    assert device.get("missing") is None
    assert device.get("missing", 42) == 42
    device.set(rounds=[4])
    assert device.get("rounds") == [4]
    assert device.get("user") == "Hamlet::HAMLET"
    with Device(device.directory) as again:
        assert again.get("availability") == values["availability"]


def test_delete_log_empties_and_forgets(device):
    device.set(user="alice")
    for i in range(50):
        device.append(f"my secret pin is 4242 number {i}", timestamp=i)
    device.delete_log()
    assert device.count() == 0
    assert device.splits().train == [] and device.splits().heldout == []
    assert device.train_word_counts() == {}
    device.append("fresh start")
    assert device.sentences() == ["fresh start"]
    directory = device.directory
    device.close()
    for f in directory.iterdir():
        assert b"secret pin" not in f.read_bytes(), f


# -- opening -------------------------------------------------------------------------------------
def test_opening_missing_device_raises(tmp_path):
    with pytest.raises(DeviceError, match="no device at"):
        Device(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()  # opening did not create it


def test_opening_a_non_database_raises(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "log.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(DeviceError, match="broken"):
        Device(d)


def test_new_device_ids_are_random_of_one_form_and_avoid_taken_ones(monkeypatch):
    ids = {new_device_id() for _ in range(200)}
    assert len(ids) == 200 and all(DEVICE_ID_PATTERN.fullmatch(i) for i in ids)
    draws = iter(["aa" * 8, "aa" * 8, "bb" * 8])
    monkeypatch.setattr("keyboard.store.secrets.token_hex", lambda n: next(draws))
    assert new_device_id(taken={"dev-" + "aa" * 8}) == "dev-" + "bb" * 8


def test_devices_are_found_by_the_user_in_their_own_status_record(tmp_path):
    for name, user in (("dev-2", "Hamlet::HAMLET"), ("dev-1", "alice"), ("dev-3", None), ("dev-0", "alice")):
        with Device(tmp_path / name, create=True) as device:
            if user is not None:
                device.set(user=user)
    assert device_user(tmp_path / "dev-2") == "Hamlet::HAMLET" and device_user(tmp_path / "dev-3") is None
    assert devices_of_users(tmp_path) == {"alice": "dev-0", "Hamlet::HAMLET": "dev-2"}  # first in sorted order
    (tmp_path / "dev-9").mkdir()
    (tmp_path / "dev-9" / "log.sqlite").write_bytes(b"not sqlite" * 100)
    with pytest.raises(DeviceError, match="dev-9.*status record"):
        devices_of_users(tmp_path)


def test_list_device_dirs_skips_staging_and_non_devices(tmp_path):
    for name in ("b", "a", ".staging-1234"):
        Device(tmp_path / name, create=True).close()
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    assert [p.name for p in list_device_dirs(tmp_path)] == ["a", "b"]
    assert list(list_device_dirs(tmp_path / "missing")) == []


# -- one writer, one reader ----------------------------------------------------------------------
_WRITER = """
import sys
from keyboard.store import Device
with Device(sys.argv[1]) as dev:
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(2000):
        dev.append(f"sentence {i}", timestamp=i)
"""


def test_writer_and_reader_at_once(tmp_path):
    directory = tmp_path / "dev"
    Device(directory, create=True).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        reads, partial, last = 0, 0, 0
        with Device(directory) as reader:
            writer.stdin.write("go\n")
            writer.stdin.flush()
            while writer.poll() is None:
                splits = reader.splits()
                seen = splits.train + splits.heldout
                n = len(seen)
                # A consistent snapshot: exactly the first n sentences, in order, never fewer than before.
                assert seen == [f"sentence {i}" for i in range(n)]
                assert len(splits.heldout) == heldout_count(n)
                assert n >= last
                last = n
                reads += 1
                partial += 0 < n < 2000
            assert writer.wait(timeout=60) == 0, writer.stderr.read()
            final = reader.splits()
        assert reads > 0 and partial > 0  # the reader really ran while the writer wrote
        everything = final.train + final.heldout
        assert len(everything) == 2000
        assert everything == [f"sentence {i}" for i in range(2000)]
        assert len(final.heldout) == 400
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def test_deleted_text_is_gone_from_the_files_before_close(tmp_path):
    with Device(tmp_path / "d", create=True) as device:
        for _ in range(50):
            device.append("my secret zorblax phrase")
        device.delete_log()
        blobs = b"".join(p.read_bytes() for p in (tmp_path / "d").iterdir() if p.is_file())
        assert b"zorblax" not in blobs
        assert device.count() == 0
