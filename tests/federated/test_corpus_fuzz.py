"""Bad corpora, fuzzed: every input gives records or one short ``CorpusError`` naming file and line.

Properties checked against an independent statement of the rules (what a record must hold), not
against the reader's own code, and a failed seed must leave an existing population untouched.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from federated.corpus import CorpusError, read_records
from federated.population import PopulationError, members, seed
from keyboard.store import MAX_SENTENCE_CHARS, Device
from tests.conftest import write_jsonl

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_MESSAGE = 400  # an error names file, line and what is wrong; it does not echo a megabyte back

# Every code point, lone surrogates included, with control and format characters made likely.
any_char = st.characters(codec=None, categories=None)
control_char = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Cs"])
any_text = st.text(st.one_of(any_char, control_char), max_size=40)


def _read(data: bytes, name: str = "c.jsonl") -> tuple[Path, list | CorpusError]:
    """Writes ``data`` to a fresh file and reads it; returns the path and the records or the error."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            return path, read_records(path)
        except CorpusError as exc:
            return path, exc


def _assert_error_at(result, path: Path, line: int | None, *fragments: str) -> str:
    assert isinstance(result, CorpusError), f"expected a CorpusError, got {result!r}"
    message = str(result)
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert message.startswith(where), message
    assert "\n" not in message and len(message) <= len(str(path)) + MAX_MESSAGE, message[:500]
    for fragment in fragments:
        assert fragment in message, message
    return message


def _valid_text(text: str) -> str | None:
    """The rule, stated independently: text must be Unicode, non-blank once NUL counts as space, not too long."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    words = text.replace("\x00", " ").split()
    cleaned = " ".join(words)
    return cleaned if words and len(cleaned) <= MAX_SENTENCE_CHARS else None


def _encode(obj: object, ascii_: bool) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_).encode("utf-8", "surrogatepass")


def _as_read(text: str) -> str:
    """What any JSON reader sees for ``text`` written with ``\\u`` escapes: an escaped high+low
    surrogate pair is one character (RFC 8259 §7), so only unpaired surrogates stay invalid."""
    return json.loads(json.dumps(text, ensure_ascii=True))


# -- one record, arbitrary Unicode ------------------------------------------------------------------
@given(user=any_text, text=any_text, ascii_=st.booleans())
@example(user="u", text="smile \ud83d\ude00 now", ascii_=True)  # an escaped pair is one valid character
@example(user="u", text="smile \ud83d\ude00 now", ascii_=False)  # the same pair unescaped is bad UTF-8
@example(user="u", text="lone \ud83d here", ascii_=True)
@FUZZ
def test_any_user_and_text_is_read_exactly_or_refused_at_its_line(user, text, ascii_):
    good = _encode({"user": "ok", "text": "a fine sentence"}, True)
    path, result = _read(good + b"\n" + _encode({"user": user, "text": text}, ascii_) + b"\n")
    if ascii_:
        user, text = _as_read(user), _as_read(text)
    user_ok = user.strip() != ""
    try:
        user.encode("utf-8")
    except UnicodeEncodeError:
        user_ok = False
    # Unescaped lone surrogates are invalid UTF-8 bytes in the file itself.
    surrogates = any(0xD800 <= ord(c) <= 0xDFFF for c in user + text)
    if not ascii_ and (not user_ok or _valid_text(text) is None) and surrogates:
        _assert_error_at(result, path, 2, "invalid UTF-8")
        return
    if not user_ok:
        _assert_error_at(result, path, 2, '"user"')
    elif _valid_text(text) is None:
        _assert_error_at(result, path, 2, '"text"')
    else:
        assert not isinstance(result, CorpusError), result
        assert [(r.user, r.text, r.line) for r in result] == [
            ("ok", "a fine sentence", 1), (user.strip(), _valid_text(text), 2),
        ]


@given(st.lists(st.text(control_char, min_size=1, max_size=10), min_size=1, max_size=5))
@example(["\ud800\udc00" * 3])  # found by CI: escaped pairs read as U+10000, a valid character
@FUZZ
def test_control_and_format_characters_between_words(separators):
    words = [f"w{i}" for i in range(len(separators) + 1)]
    text = words[0] + "".join(sep + w for sep, w in zip(separators, words[1:]))
    path, result = _read(_encode({"user": "u", "text": text}, True) + b"\n")
    expected = _valid_text(_as_read(text))
    if expected is None:
        _assert_error_at(result, path, 1, "not valid Unicode")
    else:
        assert [r.text for r in result] == [expected]


# -- invalid UTF-8 in the file ---------------------------------------------------------------------
INVALID_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xc3"]


@given(
    texts=st.lists(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20), min_size=1, max_size=6),
    where=st.integers(min_value=0), at=st.integers(min_value=0), bad=st.sampled_from(INVALID_UTF8),
)
@FUZZ
def test_invalid_utf8_is_refused_at_its_line_and_byte(texts, where, at, bad):
    lines = [_encode({"user": "u", "text": t}, False) for t in texts]
    row = where % len(lines)
    chars = lines[row].decode("utf-8")
    cut = at % (len(chars) + 1)  # a character boundary, so the inserted bytes stay invalid
    before = chars[:cut].encode("utf-8")
    lines[row] = before + bad + chars[cut:].encode("utf-8")
    path, result = _read(b"\n".join(lines))
    if any(_valid_text(t) is None for t in texts[:row]):
        assert isinstance(result, CorpusError)  # an earlier record is refused first
        return
    _assert_error_at(result, path, row + 1, f"invalid UTF-8 at byte {len(before)} of the line")


# -- gzip ------------------------------------------------------------------------------------------
_GOOD_LINES = b"".join(_encode({"user": f"u{i % 3}", "text": f"sentence number {i}"}, True) + b"\n" for i in range(40))
_GOOD_GZ = gzip.compress(_GOOD_LINES, mtime=0)


@given(st.integers(min_value=0, max_value=len(_GOOD_GZ) - 1))
@FUZZ
def test_every_truncation_of_a_gzip_corpus_is_refused(cut):
    path, result = _read(_GOOD_GZ[:cut], "c.jsonl.gz")
    if cut == 0:
        _assert_error_at(result, path, None, "no records")
    elif cut == 1:  # one byte is not even the gzip magic: read as (invalid) JSON text
        _assert_error_at(result, path, 1, "invalid JSON")
    else:
        _assert_error_at(result, path, None, "cannot read")


@given(st.integers(min_value=10, max_value=len(_GOOD_GZ) - 9), st.integers(min_value=1, max_value=255))
@FUZZ
def test_a_flipped_byte_in_gzip_data_is_refused_or_read_correctly(pos, flip):
    data = bytearray(_GOOD_GZ)
    data[pos] ^= flip
    path, result = _read(bytes(data), "c.jsonl.gz")
    if isinstance(result, CorpusError):
        _assert_error_at(result, path, None, "cannot read")
    else:  # only padding bits changed; the trailer's CRC32 vouches for what was inflated
        assert [(r.user, r.text) for r in result] == [(f"u{i % 3}", f"sentence number {i}") for i in range(40)]


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n\t\n", gzip.compress(b""), gzip.compress(b"\n \n")],
                         ids=["empty", "blank-lines", "gzip-empty", "gzip-blank"])
def test_empty_files_say_no_records(tmp_path, data):
    path = tmp_path / "c.jsonl"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match=f"^{path}: no records$"):
        read_records(path)


def test_a_byte_order_mark_is_accepted(tmp_path):
    """Editors on Windows start UTF-8 files with a BOM; it is not part of the first record."""
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _GOOD_LINES)
    records = read_records(path)
    assert len(records) == 40 and records[0].user == "u0" and records[0].line == 1


# -- huge lines ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line, message",
    [
        (_encode({"user": "u", "text": "word " * 400_000}, True), "1,999,999 characters"),
        (_encode({"user": "u", "text": "x" * 3_000_000}, True), "3,000,000 characters"),
        (b'{"user": "u", "text": "' + b"y" * 2_000_000, "invalid JSON"),
        (b"z" * 2_000_000, "invalid JSON"),
        (_encode({"user": "u", "text": "ok", "timestamp": "t" * 1_000_000}, True), "is not ISO 8601"),
        (_encode({"user": "u" * 1_000_000, "text": "ok", "timestamp": 5}, True), '"timestamp" must be'),
    ],
    ids=["many-words", "one-long-word", "unterminated", "garbage", "huge-timestamp", "huge-user"],
)
def test_huge_lines_are_refused_briefly_at_their_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_bytes(_GOOD_LINES + line + b"\n" + _GOOD_LINES)
    with pytest.raises(CorpusError) as info:
        read_records(path)
    _assert_error_at(info.value, path, 41, message)


def test_a_sentence_of_exactly_the_limit_is_read(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"user": "u", "text": "w" * MAX_SENTENCE_CHARS}])
    assert read_records(path)[0].text == "w" * MAX_SENTENCE_CHARS


# -- a failed seed leaves the population as it was -------------------------------------------------
def _snapshot(home) -> dict[str, tuple[str, list[str]]]:
    out = {}
    for m in members(home):
        with Device(home.device(m.device_id)) as device:
            out[m.device_id] = (device.get("user"), device.sentences())
    return out


_good_record = st.fixed_dictionaries({"user": st.sampled_from(["alice", "bob", "new person"]),
                                      "text": st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)})
_lines = st.lists(st.one_of(_good_record.map(lambda r: _encode(r, False)), st.binary(max_size=30),
                            st.builds(_encode, st.dictionaries(st.sampled_from(["user", "text", "timestamp"]),
                                                               any_text, max_size=3), st.booleans())),
                  min_size=1, max_size=8)


@given(_lines)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_failed_seed_leaves_the_existing_population_intact(lines):
    from common.layout import Home

    with tempfile.TemporaryDirectory() as tmp:
        home = Home(Path(tmp) / "home")
        base = write_jsonl(Path(tmp) / "base.jsonl", [{"user": u, "text": f"{u} says {i}"}
                                                     for u in ("alice", "bob") for i in range(3)])
        seed(home, base, min_sentences=1)
        before = _snapshot(home)
        corpus = Path(tmp) / "more.jsonl"
        corpus.write_bytes(b"\n".join(lines))
        try:
            seed(home, corpus, min_sentences=1, append=True)
        except (CorpusError, PopulationError) as exc:
            assert str(exc).startswith(str(corpus)), exc
            assert _snapshot(home) == before
        else:
            after = _snapshot(home)
            for device_id, (user, sentences) in before.items():  # appended to, never rewritten
                assert after[device_id][0] == user
                assert after[device_id][1][: len(sentences)] == sentences
        assert not [p for p in home.devices.iterdir() if p.name.startswith(".staging")]


# Two users whose device ids collided when ids were made from names (both slugged to "user" with
# the same six hex digits of SHA-1). Ids are random now; the two must still stay apart.
COLLIDING = ("李剭一", "李噲一")


def test_users_whose_device_ids_collide_get_separate_devices(tmp_path, home):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"user": u, "text": f"{u} typed {i}"} for u in COLLIDING
                                                for i in range(3)])
    seed(home, corpus, min_sentences=1)
    got = {user: device_id for device_id, (user, _) in _snapshot(home).items()}
    assert set(got) == set(COLLIDING) and len(set(got.values())) == 2
    for user, device_id in got.items():
        with Device(home.device(device_id)) as device:
            assert device.get("user") == user
            assert device.sentences() == [f"{user} typed {i}" for i in range(3)]


def test_append_never_puts_one_users_text_on_another_users_device(tmp_path, home):
    first = write_jsonl(tmp_path / "a.jsonl", [{"user": COLLIDING[0], "text": f"private {i}"} for i in range(3)])
    second = write_jsonl(tmp_path / "b.jsonl", [{"user": COLLIDING[1], "text": f"other {i}"} for i in range(3)])
    seed(home, first, min_sentences=1)
    seed(home, second, min_sentences=1, append=True)
    for user, sentences in _snapshot(home).values():
        prefixes = {s.split()[0] for s in sentences}
        assert prefixes == {"private" if user == COLLIDING[0] else "other"}, (user, prefixes)
