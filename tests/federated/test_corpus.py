"""Reading corpora strictly: every bad record names its file and line."""

from __future__ import annotations

import gzip
import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federated.corpus import BUNDLED, CorpusError, Record, group_by_user, read_records, resolve_corpus
from tests.conftest import write_jsonl

GOOD = [
    b'{"user": "alice", "text": "hello there"}',
    b'{"user": "bob", "text": "good morning"}',
    b'{"user": "alice", "text": "how are you"}',
]


def _file_with_bad_line(tmp_path: Path, bad: bytes, name: str = "corpus.jsonl") -> Path:
    """Three good lines, a blank one, then ``bad`` on line 5, then one more good line."""
    path = tmp_path / name
    path.write_bytes(b"\n".join([*GOOD, b"", bad, GOOD[0]]) + b"\n")
    return path


@pytest.mark.parametrize(
    "bad, message",
    [
        (b'{"user": "alice", "text": "unterminated}', "invalid JSON"),
        (b"not json at all", "invalid JSON"),
        (b'{"user": "alice", "text": "caf\xe9"}', "invalid UTF-8 at byte 30 of the line"),
        (b'\xff\xfe{"user": "a"}', "invalid UTF-8 at byte 0"),
        (b'["alice", "hello"]', "expected a JSON object, got list"),
        (b'"just a string"', "expected a JSON object, got str"),
        (b"42", "expected a JSON object, got int"),
        (b'{"text": "hello"}', '"user" must be a string, got nothing'),
        (b'{"user": null, "text": "hello"}', '"user" must be a string, got nothing'),
        (b'{"user": "", "text": "hello"}', '"user" is empty'),
        (b'{"user": "   ", "text": "hello"}', '"user" is empty'),
        (b'{"user": 7, "text": "hello"}', '"user" must be a string, got int'),
        (b'{"user": ["a"], "text": "hello"}', '"user" must be a string, got list'),
        (b'{"user": "\\ud800", "text": "hello"}', '"user" is not valid Unicode text'),
        (b'{"user": "alice"}', 'missing "text"'),
        (b'{"user": "alice", "text": ""}', '"text": empty text'),
        (b'{"user": "alice", "text": "  \\t "}', '"text": empty text'),
        (b'{"user": "alice", "text": null}', '"text": expected text, got NoneType'),
        (b'{"user": "alice", "text": ["hello", "there"]}', '"text": expected text, got list'),
        (b'{"user": "alice", "text": "bad \\udfff"}', '"text": not valid Unicode text'),
        (b'{"user": "alice", "text": "hi", "timestamp": "yesterday"}', "\"timestamp\" 'yesterday' is not ISO 8601"),
        (b'{"user": "alice", "text": "hi", "timestamp": "2024-13-01"}', "is not ISO 8601"),
        (b'{"user": "alice", "text": "hi", "timestamp": 1700000000}',
         '"timestamp" must be an ISO 8601 string, got int'),
        (b'{"user": "alice", "text": "hi", "timestamp": 1.5}', "got float"),
        (b'{"user": "alice", "text": "hi", "timestamp": ["2024-01-01"]}', "got list"),
        (b'{"user": "alice", "text": "hi", "n": ' + b"9" * 5000 + b"}", "invalid JSON"),
        (b"[" * 100_000, "invalid JSON"),
    ],
    ids=lambda v: v[:40].decode("utf-8", "backslashreplace") if isinstance(v, bytes) else None,
)
def test_bad_record_names_file_and_line(tmp_path, bad, message):
    path = _file_with_bad_line(tmp_path, bad)
    with pytest.raises(CorpusError) as info:
        read_records(path)
    text = str(info.value)
    assert text.startswith(f"{path}:5: "), text
    assert message in text
    assert "\n" not in text


def test_oversized_text_names_file_and_line(tmp_path):
    path = _file_with_bad_line(tmp_path, json.dumps({"user": "a", "text": "x" * 1_000_000}).encode())
    with pytest.raises(CorpusError, match=re.escape(f"{path}:5: ") + ".*1,000,000 characters"):
        read_records(path)


def test_bad_line_in_a_gzip_file_names_the_line(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join([*GOOD, b"{oops"]) + b"\n"))
    with pytest.raises(CorpusError, match=re.escape(f"{path}:4: invalid JSON")):
        read_records(path)


@pytest.mark.parametrize(
    "data",
    [
        b"\x1f\x8b" + b"\x00" * 40,  # unknown compression method
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 30,  # corrupt deflate data
        gzip.compress(b'{"user": "a", "text": "b"}\n' * 50)[:-12],  # truncated
    ],
    ids=["unknown-method", "corrupt-deflate", "truncated"],
)
def test_corrupt_gzip_is_a_corpus_error(tmp_path, data):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match=re.escape(f"{path}: cannot read")):
        read_records(path)


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match=re.escape(f"{tmp_path / 'nope.jsonl'}: cannot read")):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(CorpusError, match=r"nope\.jsonl: no such file \(bundled corpora: shakespeare\)"):
        resolve_corpus(str(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("content", [b"", b"\n\n  \n\t\n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=re.escape(f"{path}: no records")):
        read_records(path)


def test_gzip_reads_the_same_as_plain(tmp_path, small_corpus):
    gz = tmp_path / "corpus.jsonl.gz"
    gz.write_bytes(gzip.compress(small_corpus.read_bytes()))
    plain = read_records(small_corpus)
    assert len(plain) == 36
    assert read_records(gz) == plain
    # The name does not matter, only the content: a .gz name over plain text reads fine too.
    disguised = tmp_path / "plain-really.jsonl.gz"
    disguised.write_bytes(small_corpus.read_bytes())
    assert read_records(disguised) == plain


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b"\n"
        + GOOD[0] + b"\r\n"
        + b"   \n\n"
        + GOOD[1] + b"\n"
        + b"\t\n"
        + GOOD[2]  # no final newline
    )
    records = read_records(path)
    assert [(r.user, r.text, r.line) for r in records] == [
        ("alice", "hello there", 2),
        ("bob", "good morning", 5),
        ("alice", "how are you", 7),
    ]


def test_fields_are_cleaned_and_extra_keys_ignored(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"user": "  alice ", "text": " a\tb\n c ", "extra": [1, 2]}])
    assert read_records(path) == [Record(user="alice", text="a b c", timestamp=None, line=1)]


def test_timestamps_sort_each_user(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"user": "bob", "text": "b late", "timestamp": "2024-03-01T12:00:00Z"},
            {"user": "alice", "text": "a second", "timestamp": "2024-01-02T00:00:00"},
            {"user": "alice", "text": "a first", "timestamp": "2024-01-01T23:00:00-02:00"},  # = Jan 2 01:00 UTC
            {"user": "bob", "text": "b early", "timestamp": "2024-03-01T12:00:00+01:00"},
            {"user": "alice", "text": "a zeroth", "timestamp": "2024-01-01"},
            {"user": "alice", "text": "a tie keeps file order", "timestamp": "2024-01-02T00:00:00+00:00"},
        ],
    )
    records = read_records(path)
    assert records[0].timestamp == 1709294400.0  # "Z" is UTC
    assert records[1].timestamp == 1704153600.0  # naive means UTC
    users = group_by_user(records, path)
    assert list(users) == ["bob", "alice"]  # order of first appearance
    assert [r.text for r in users["bob"]] == ["b early", "b late"]
    assert [r.text for r in users["alice"]] == ["a zeroth", "a second", "a tie keeps file order", "a first"]


def test_without_timestamps_file_order_is_kept(small_corpus):
    records = read_records(small_corpus)
    users = group_by_user(records, small_corpus)
    assert {u: len(r) for u, r in users.items()} == {"alice": 12, "bob": 11, "carol": 10, "dave": 3}
    for recs in users.values():
        assert [r.line for r in recs] == sorted(r.line for r in recs)


def test_user_mixing_timed_and_untimed_records_is_an_error(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"user": "alice", "text": "one", "timestamp": "2024-01-01T00:00:00"},
            {"user": "bob", "text": "bob never has one"},
            {"user": "alice", "text": "two"},
            {"user": "alice", "text": "three", "timestamp": "2024-01-03T00:00:00"},
        ],
    )
    records = read_records(path)
    with pytest.raises(CorpusError) as info:
        group_by_user(records, path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: ")
    assert "'alice'" in message and "with and without" in message


def test_bundled_shakespeare_exists_and_its_first_record_parses(tmp_path):
    path = resolve_corpus("shakespeare")
    assert path == BUNDLED["shakespeare"]
    assert path.is_file()
    with gzip.open(path, "rb") as f:
        first = f.readline()
    one = tmp_path / "first.jsonl"
    one.write_bytes(first)
    (record,) = read_records(one)
    assert record.user and record.text and record.line == 1


# -- properties ----------------------------------------------------------------------------------
_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.lists(st.integers(), max_size=3),
    st.text(st.characters(blacklist_categories=()), max_size=20),  # lone surrogates included
    st.sampled_from(["2024-01-01", "2024-01-01T10:00:00+02:00", "", "  ", "not a date"]),
)
_records = st.dictionaries(st.sampled_from(["user", "text", "timestamp", "other"]), _values, max_size=4)
_json_lines = st.builds(lambda obj, ascii_: json.dumps(obj, ensure_ascii=ascii_).encode("utf-8", "surrogatepass"),
                        _records, st.booleans())
_lines = st.lists(st.one_of(st.binary(max_size=40), _json_lines, st.just(b"")), max_size=8)


def _check_read(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.jsonl"
        path.write_bytes(data)
        try:
            records = read_records(path)
        except CorpusError as exc:
            assert str(exc).startswith(str(path))
            return
    assert records
    for r in records:
        assert r.user == r.user.strip() and r.user
        r.user.encode("utf-8")
        r.text.encode("utf-8")
        assert r.text and r.text == r.text.strip()
        assert r.timestamp is None or isinstance(r.timestamp, float)


@given(_lines)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_lines_give_records_or_corpus_error(lines):
    _check_read(b"\n".join(lines))


@given(_lines)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_gzipped_lines_give_records_or_corpus_error(lines):
    _check_read(gzip.compress(b"\n".join(lines)))


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_give_records_or_corpus_error(data):
    _check_read(data)
    _check_read(b"\x1f\x8b" + data)
