"""The bundled public-domain pretraining text (federated/corpora/public.txt.gz) reads as documented."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tokenizer.words import words

PUBLIC = Path(__file__).resolve().parents[2] / "federated" / "corpora" / "public.txt.gz"


@pytest.fixture(scope="module")
def lines() -> list[str]:
    raw = PUBLIC.read_bytes()
    assert raw[:2] == b"\x1f\x8b", "not gzip"
    text = gzip.decompress(raw).decode("utf-8")  # strict: invalid UTF-8 raises
    assert text.endswith("\n")
    return text[:-1].split("\n")


@pytest.fixture(scope="module")
def word_counts(lines: list[str]) -> list[int]:
    return [len(words(line)) for line in lines]


def test_size_and_shape(lines: list[str], word_counts: list[int]) -> None:
    assert 1_000_000 <= PUBLIC.stat().st_size <= 3_500_000
    assert sum(word_counts) >= 500_000
    assert all(line.strip() == line and line for line in lines), "an empty line or stray white space"
    assert all("\t" not in line and "  " not in line for line in lines), "white space not collapsed"
    assert all(len(line) <= 10_000 for line in lines)  # the longest sentence a device accepts


def test_every_line_has_a_word(word_counts: list[int]) -> None:
    assert all(word_counts)


def test_each_source_is_there(lines: list[str]) -> None:
    text = "\n".join(lines)
    # Austen: a heroine of each of the six novels; her dialogue in double quotes
    for name in ("Elinor", "Elizabeth", "Fanny", "Emma", "Catherine", "Anne"):
        assert text.count(name) >= 50, name
    assert sum(line.startswith('"') for line in lines) >= 5_000
    # King James Bible, without verse numbers ("Ge1:1 ")
    assert text.count("LORD") >= 500 and text.count(" thee") >= 500
    assert not any(line[:1].isdigit() and ":" in line[:8] for line in lines[:200])
    # State of the Union addresses, without the transcripts' [Applause] notes
    assert text.count("Congress") >= 500
    assert "[Applause]" not in text and "[Laughter]" not in text


def test_no_boilerplate(lines: list[str]) -> None:
    text = "\n".join(lines)
    for junk in ("Gutenberg", "CHAPTER I", "Chapter 1\n", "Holy Bible, Authorized", "The President. ", "_"):
        assert junk not in text, junk
