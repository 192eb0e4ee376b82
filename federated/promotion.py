"""The promotion rule, one for the simulation's rollout and for live evaluation.

A candidate is promoted unless its federated recall@1 falls more than ``threshold_points``
percentage points below that of the current ``latest``, measured on the same devices; the first
version is promoted as it is (there is nothing to compare it with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from federated import registry


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    details: dict = field(default_factory=dict)


def decide(recall_at_1: float | None, latest: str | None, latest_recall_at_1: float | None,
           threshold_points: float) -> Decision:
    """Whether a candidate with ``recall_at_1`` replaces ``latest`` (whose recall@1 is ``latest_recall_at_1``)."""
    if latest is None:
        return Decision(True, "first version")
    if recall_at_1 is None or latest_recall_at_1 is None:
        raise ValueError(f"both recalls are needed to compare with {latest}; got {recall_at_1!r} and "
                         f"{latest_recall_at_1!r}")
    delta = (recall_at_1 - latest_recall_at_1) * 100
    details = {"recall_at_1": recall_at_1, "latest": latest, "latest_recall_at_1": latest_recall_at_1,
               "threshold_points": threshold_points}
    if delta < -threshold_points:
        return Decision(False, f"recall@1 {recall_at_1:.2%} is {-delta:.2f} points below {latest} "
                               f"({latest_recall_at_1:.2%}); the threshold is {threshold_points} points", details)
    return Decision(True, f"recall@1 {recall_at_1:.2%} vs {latest} {latest_recall_at_1:.2%} "
                          f"({delta:+.2f} points, threshold -{threshold_points})", details)


def record(models_dir: Path, name: str, decision: Decision, **extra: object) -> dict:
    """Records ``decision`` for version ``name`` in the registry (a promotion makes it ``latest``)."""
    return registry.record_decision(models_dir, name, promoted=decision.promoted, reason=decision.reason,
                                    **decision.details, **extra)
