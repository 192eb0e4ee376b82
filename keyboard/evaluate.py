"""On-device evaluation of a model version: what a device computes on its own held-out split.

The version runs in the device's own runtime (``keyboard.lm``, the numpy model the keyboard
uses) with the same whole-word beam the keyboard shows, so what is measured is what people see.
Both the simulation (``federated/evaluation.py``) and the live device agent score with
``model_scores``; the agent sends only ``named_sums`` (``common/eval_sums.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from common import artifacts, eval_sums
from keyboard.lm import NumpyLM
from keyboard.suggest import WordSuggester
from lm.recall import KS, RecallCounts, recall_counts, token_nll
from tokenizer.vocab import Tokenizer


def load_suggester(version_dir: Path) -> WordSuggester:
    """The whole-word predictor for a (verified) version directory."""
    return WordSuggester(NumpyLM.load(version_dir), Tokenizer.load(Path(version_dir) / artifacts.TOKENIZER))


def model_scores(suggester: WordSuggester, heldout: Sequence[str]) -> tuple[RecallCounts, float, int]:
    """Recall counts at 1/3/5, the summed token NLL and the token count of ``suggester`` on ``heldout``."""
    counts = recall_counts(suggester, heldout)
    nll, tokens = token_nll(suggester.lm, suggester.tok.encode, heldout)
    return counts, float(nll), int(tokens)


def named_sums(counts: RecallCounts, nll: float, tokens: int) -> dict[str, float]:
    """The scores as the named sums a device reports (``common.eval_sums.FIELDS``)."""
    sums = {"predictions": counts.predictions, "oov": counts.oov, "token_nll": nll, "tokens": tokens,
            **{f"hits_at_{k}": counts.hits[k] for k in KS}}
    return eval_sums.check(sums, "this device's evaluation")


def version_sums(version_dir: Path, heldout: Sequence[str]) -> dict[str, float]:
    """Scores the (verified) version in ``version_dir`` on ``heldout``; returns the named sums."""
    return named_sums(*model_scores(load_suggester(version_dir), heldout))
