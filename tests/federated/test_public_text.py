"""Reading public text strictly: every bad line names its file and line."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from federated.public_text import PublicTextError, is_jsonl, read, resolve


def test_reads_plain_text_one_passage_per_line(tmp_path: Path):
    path = tmp_path / "pub.txt"
    path.write_text("The cat sat.\n\n  Then   the dog ran!  \n", encoding="utf-8")
    text = read(path)
    assert text.passages == ["The cat sat.", "Then the dog ran!"]  # blank lines skipped, spaces collapsed
    assert text.word_counts() == {"the": 2, "cat": 1, "sat": 1, "then": 1, "dog": 1, "ran": 1}
    assert len(text.sha256) == 64


def test_reads_gzip_and_jsonl(tmp_path: Path):
    lines = [{"text": "Good morning, my lord."}, {"text": "   "}, {"text": "Good night", "source": "x"}]
    path = tmp_path / "pub.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode()))
    assert read(path).passages == ["Good morning, my lord.", "Good night"]  # a blank "text" is skipped
    plain = tmp_path / "pub.txt.gz"
    plain.write_bytes(gzip.compress(b"\xef\xbb\xbfone two\nthree\n"))  # a BOM is not text
    assert read(plain).passages == ["one two", "three"]


def test_format_is_chosen_by_name():
    assert is_jsonl(Path("a.jsonl")) and is_jsonl(Path("a.JSONL.gz")) and is_jsonl(Path("x.y.ndjson"))
    assert not is_jsonl(Path("a.txt")) and not is_jsonl(Path("a.txt.gz")) and not is_jsonl(Path("corpus"))


@pytest.mark.parametrize("name, content, message", [
    ("p.txt", b"fine\ncaf\xe9 au lait\n", "p.txt:2: invalid UTF-8 at byte 3 of the line"),
    ("p.jsonl", b'{"text": "ok"}\n\n{"text": "unterminated}\n', "p.jsonl:3: invalid JSON"),
    ("p.jsonl", b'{"text": "ok"}\n["a list"]\n', 'p.jsonl:2: expected a JSON object with a "text" field, got list'),
    ("p.jsonl", b'{"body": "no text"}\n', 'p.jsonl:1: missing "text"'),
    ("p.jsonl", b'{"text": 42}\n', 'p.jsonl:1: "text" must be a string, got int'),
    ("p.jsonl", b'{"text": "lone \\ud800 surrogate"}\n', 'p.jsonl:1: "text" is not valid Unicode'),
    ("p.txt", b"", "p.txt: no text (the file is empty or blank)"),
    ("p.txt", b"\n  \n\t\n", "p.txt: no text"),
    ("p.txt", b"... !!!\n--\n", "p.txt: 2 lines but not one word"),
    ("p.txt", b"w " * 60_000, "p.txt:1: 119,999 characters in one passage"),
])
def test_bad_input_names_file_and_line(tmp_path: Path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PublicTextError, match="^" + re.escape(f"{tmp_path}/{message}")):
        read(path)


def test_unreadable_and_missing_files(tmp_path: Path):
    broken = tmp_path / "p.txt.gz"
    broken.write_bytes(gzip.compress(b"hello world\n")[:-6])  # truncated
    with pytest.raises(PublicTextError, match="p.txt.gz: cannot read"):
        read(broken)
    with pytest.raises(PublicTextError, match="nope.txt: no such file"):
        resolve(tmp_path / "nope.txt")
    assert resolve(str(broken)) == broken
