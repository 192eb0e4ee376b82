"""The published n-gram table format (``common/artifacts.py``): round trip, and every bad line named."""

from __future__ import annotations

import gzip
import re

import pytest

from common import artifacts
from common.artifacts import ArtifactError, ngrams_to_bytes, read_ngrams
from tokenizer.specials import BOS

TABLE = {
    1: {("i",): 4, ("am",): 3, ("naïve",): 2},
    2: {("<s>", "i"): 2, ("i", "am"): 3},
    3: {("<s>", "i", "am"): 2},
}


def _write(tmp_path, text: str, name: str = "ngrams.tsv.gz"):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    return path


def test_round_trip_is_sorted_and_deterministic(tmp_path):
    data = ngrams_to_bytes(TABLE)
    assert data == ngrams_to_bytes(TABLE)  # no time in the gzip header: same table, same sha256
    assert gzip.decompress(data).decode() == (
        "1\tam\t3\n1\ti\t4\n1\tnaïve\t2\n2\t<s> i\t2\n2\ti am\t3\n3\t<s> i am\t2\n")
    path = tmp_path / artifacts.NGRAMS
    path.write_bytes(data)
    assert read_ngrams(path) == TABLE
    path.write_bytes(ngrams_to_bytes({}))
    assert read_ngrams(path) == {}


def test_the_format_is_an_optional_file_and_uses_the_one_sentence_start():
    assert artifacts.NGRAMS == "ngrams.tsv.gz" and artifacts.NGRAMS in artifacts.OPTIONAL_FILES
    assert artifacts.NGRAMS not in artifacts.FILES  # versions without it stay valid
    assert artifacts.NGRAM_BOS == BOS


@pytest.mark.parametrize("line, why", [
    ("1\tthe", "3 tab-separated fields"),
    ("1\tthe\t3\textra", "3 tab-separated fields"),
    ("0\tthe\t3", "order '0' is not a positive integer"),
    ("x\tthe\t3", "order 'x'"),
    ("²\tthe\t3", "order"),  # a digit to str.isdigit, not to int()
    ("2\tthe\t3", "expected 2 words"),
    ("1\tthe cat\t3", "expected 1 words"),
    ("2\tthe  cat\t3", "expected 2 words"),
    ("2\tthe\u00a0cat x\t3", "expected 2 words"),
    ("1\t\t3", "expected 1 words"),
    ("1\t<s>\t3", "<s> may only be the first word"),
    ("3\t<s> <s> i\t3", "<s> may only be the first word"),
    ("2\ti <s>\t3", "<s> may only be the first word"),
    ("1\tthe\t0", "count '0' is not a positive integer"),
    ("1\tthe\t-2", "count '-2'"),
    ("1\tthe\t2.5", "count '2.5'"),
    ("1\tthe\t3\r", "count '3\\r'"),
])
def test_a_bad_line_is_refused_naming_file_and_line(tmp_path, line, why):
    path = _write(tmp_path, f"1\tam\t1\n{line}\n")
    with pytest.raises(ArtifactError, match=rf"ngrams.tsv.gz, line 2: .*{re.escape(why)}") as err:
        read_ngrams(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text", ["1\ti\t4\n1\tam\t3\n", "1\ti\t4\n1\ti\t4\n", "2\ti am\t1\n1\ti\t4\n"])
def test_unsorted_or_repeated_lines_are_refused(tmp_path, text):
    with pytest.raises(ArtifactError, match="line 2: .*out of order or repeated"):
        read_ngrams(_write(tmp_path, text))


def test_a_damaged_file_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="missing"):
        read_ngrams(tmp_path / "absent.tsv.gz")
    (tmp_path / "plain.tsv.gz").write_bytes(b"1\ti\t4\n")
    with pytest.raises(ArtifactError, match="plain.tsv.gz: not a gzip file"):
        read_ngrams(tmp_path / "plain.tsv.gz")
    data = ngrams_to_bytes(TABLE)
    (tmp_path / "cut.tsv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="cut.tsv.gz: not a gzip file"):
        read_ngrams(tmp_path / "cut.tsv.gz")
    (tmp_path / "latin.tsv.gz").write_bytes(gzip.compress("1\tna\xefve\t2\n".encode("latin-1")))
    with pytest.raises(ArtifactError, match="latin.tsv.gz: not UTF-8"):
        read_ngrams(tmp_path / "latin.tsv.gz")
    with pytest.raises(ArtifactError, match="last line is cut short"):
        read_ngrams(_write(tmp_path, "1\ti\t4\n1\tj\t4"))


def test_a_line_break_inside_a_word_is_not_a_new_line(tmp_path):
    # splitlines() would split at U+2028 and report a wrong line; the format splits at "\n" only.
    with pytest.raises(ArtifactError, match="line 1: expected 1 words"):
        read_ngrams(_write(tmp_path, "1\ta\u2028b\t4\n"))


def test_the_writer_refuses_what_the_reader_would(tmp_path):
    for bad in ({1: {("a b",): 1}}, {1: {("a",): 0}}, {2: {("a",): 1}}, {1: {("<s>",): 1}}, {1: {("a\tb",): 1}}):
        with pytest.raises(ValueError):
            ngrams_to_bytes(bad)
