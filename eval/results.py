"""The figures ``fedkb report`` reads: one evaluation, its baselines, one round's metrics.

Plain dataclasses that ``eval/report.py`` loads and ``eval/plots.py`` draws; they import nothing
else of the repo, so neither of those modules imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE_LABELS = {  # the references of ``fedkb eval --references``: fitted on pooled raw text, labelled so
    "unigram": "unigram (pooled reference)",
    "ngram": "KN trigram (pooled reference)",
    "centralized_lstm": "LSTM, central (pooled reference)",
}


@dataclass(frozen=True)
class BaselineResult:
    name: str
    recall_at_1: float | None = None
    recall_at_3: float | None = None
    recall_at_5: float | None = None
    oov_rate: float | None = None
    predictions: float | None = None
    train_tokens: float | None = None

    def recall(self, k: int) -> float | None:
        return getattr(self, f"recall_at_{k}")

    @property
    def label(self) -> str:
        return BASELINE_LABELS.get(self.name, self.name)


@dataclass(frozen=True)
class EvalResult:
    path: Path
    version: str
    round: int | None = None
    created: str | None = None
    devices: int | None = None
    predictions: int | None = None
    recall_at_1: float | None = None
    recall_at_3: float | None = None
    recall_at_5: float | None = None
    token_loss: float | None = None
    perplexity: float | None = None
    oov_rate: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    histogram_edges: tuple[float, ...] = ()
    histogram_counts: tuple[float, ...] = ()
    baselines: dict[str, BaselineResult] = field(default_factory=dict)
    products: dict[str, BaselineResult] = field(default_factory=dict)  # the product and its ablation rows
    promoted: bool | None = None
    promotion_reason: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] | None = None
    personalization: dict[str, Any] | None = None  # devices' global vs personal recall (Wang et al. 2019)

    def recall(self, k: int) -> float | None:
        return getattr(self, f"recall_at_{k}")


@dataclass(frozen=True)
class RoundMetrics:
    round: int
    loss: float | None = None
    accuracy_without_pad: float | None = None
    clients: float | None = None
    available_devices: float | None = None
    num_tokens: float | None = None
    round_seconds: float | None = None
