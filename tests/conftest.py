"""Shared fixtures: a throw-away fedkb home and small corpora written on the fly."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow

import pytest
from hypothesis import settings

from common.layout import Home

# Property tests draw the same examples on every run by default (seeded from each test's name), so
# a clean clone's `uv run pytest` passes or fails reproducibly. To explore new random examples:
# `uv run pytest --hypothesis-profile=explore` (a failure prints the example to pin with @example).
# No per-example deadline: it is a timing assertion, and on a loaded 2-core machine one example of
# test_ftrl took over Hypothesis's default 200 ms; speed is measured under bench/, not here.
settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile("default")  # `--hypothesis-profile` (pytest option) overrides it

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """Compiles the project's modules once, in the controlling process, before any test runs.

    Where PYTHONDONTWRITEBYTECODE is set (as on CI), every ``python -m fedkb.cli`` a test starts
    would otherwise compile the project from source again: about 1.2 s of CPU per process. (The
    installed packages are compiled at install time: ``uv sync --compile-bytecode`` in .ci/run.)
    """
    if not hasattr(config, "workerinput"):  # the controller, not an xdist worker
        import compileall
        import tomllib

        packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
        for package in (*packages["packages"], "bench", "tests"):
            compileall.compile_dir(REPO / package, quiet=1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with long tests run first, then files with slow tests, each file's tests in their own order.

    The xdist workers take whole files (``--dist loadfile``) in this order as they come free: a
    minute-long file taken last would leave one worker running it alone at the end.
    """
    long = {item.path for item in items if item.get_closest_marker("long")}
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path not in long, item.path not in slow))  # stable: each group keeps its order


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """Four users with 12, 11, 10 and 3 sentences of plain English."""
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "the", "dog", "ran", "to", "the", "park", "with",
             "a", "red", "ball"]
    records = []
    for u, n in (("alice", 12), ("bob", 11), ("carol", 10), ("dave", 3)):
        for i in range(n):
            text = " ".join(words[(i + j + len(u)) % len(words)] for j in range(6 + i % 4))
            records.append({"user": u, "text": text})
    return write_jsonl(tmp_path / "corpus.jsonl", records)


def synthetic_corpus(path: Path, users: int = 60, sentences: int = 12, seed: int = 0) -> Path:
    """``users`` users typing ``sentences`` sentences each from a small English vocabulary."""
    import random

    rnd = random.Random(seed)
    words = [
        "the", "a", "cat", "dog", "sat", "ran", "on", "in", "to", "park", "mat", "ball", "red", "big",
        "small", "and", "then", "with", "my", "your", "good", "morning", "night", "love", "you", "thank",
        "see", "tomorrow",
    ]
    records = [
        {"user": f"user{u:03d}", "text": " ".join(rnd.choice(words) for _ in range(rnd.randint(3, 12)))}
        for u in range(users) for _ in range(sentences)
    ]
    return write_jsonl(path, records)


@pytest.fixture
def seeded_home(tmp_path: Path, home: Home) -> Home:
    """A home with 60 seeded devices and a 64-piece tokenizer (no TensorFlow needed)."""
    from federated.population import seed
    from federated.vocabulary import train_tokenizer
    from tokenizer.vocab import TokenizerConfig

    seed(home, synthetic_corpus(tmp_path / "synthetic.jsonl"))
    train_tokenizer(home, TokenizerConfig(vocab_size=64))
    return home
