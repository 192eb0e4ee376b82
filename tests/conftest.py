"""Shared fixtures: a throw-away fedkb home and small corpora written on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedkb.home import Home

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """Four users with 12, 11, 10 and 3 sentences of plain English."""
    words = "the cat sat on a mat and then the dog ran to the park with a red ball".split()
    records = []
    for u, n in (("alice", 12), ("bob", 11), ("carol", 10), ("dave", 3)):
        for i in range(n):
            text = " ".join(words[(i + j + len(u)) % len(words)] for j in range(6 + i % 4))
            records.append({"user": u, "text": text})
    return write_jsonl(tmp_path / "corpus.jsonl", records)
