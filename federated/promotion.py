"""The promotion rule, one for the simulation's rollout and for live evaluation.

A candidate is promoted unless its federated recall@1 falls more than ``threshold_points``
percentage points below that of the current ``latest``, measured on the same devices; the first
version is promoted as it is (there is nothing to compare it with).

A candidate has no live figures before devices run it, so live metrics cannot decide its
promotion; they guard the version already rolled out instead (as a staged rollout does):
``live_guard`` says whether ``latest`` should give way to the version it replaced because its
keystroke savings while people typed fell below ``ratio`` times those of that version
(``fedkb rollout --min-live-savings-ratio``, off by default).
"""

from __future__ import annotations

from collections.abc import Mapping
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


def live_guard(live: Mapping[str, Mapping[str, dict]], latest: str, previous: str | None, ratio: float) -> Decision:
    """Whether ``latest`` stays (``promoted``) or gives way to ``previous``, on live keystroke savings.

    ``live`` is ``{version: {source: entry}}`` of ``federated/live_release.py``. Both versions are
    compared on the same source: typed by people if both have released figures, else replayed by
    simulated typists; without such a pair (or without ``previous``) ``latest`` stays and the
    reason says why the guard could not apply.
    """
    if not ratio > 0:
        raise ValueError(f"the minimum live savings ratio must be above 0, got {ratio}")
    if previous is None:
        return Decision(True, f"live guard: {latest} replaced no earlier version")
    pair = next(((source, live[latest][source], live[previous][source]) for source in ("typed", "replayed")
                 if all("withheld" not in live.get(v, {}).get(source, {"withheld": ""}) for v in (latest, previous))),
                None)
    if pair is None:
        return Decision(True, f"live guard: no released live figures of one source for both {latest} and "
                              f"{previous} (a version has none until enough devices typed with it)")
    source, now, before = pair
    savings, savings_before = now["summary"]["keystroke_savings"], before["summary"]["keystroke_savings"]
    details = {"source": source, "keystroke_savings": savings, "previous": previous,
               "previous_keystroke_savings": savings_before, "min_live_savings_ratio": ratio,
               "devices": now["devices"], "previous_devices": before["devices"]}
    if savings is None or savings_before is None:
        return Decision(True, f"live guard: no letters typed with {latest} or {previous} ({source})", details)
    if savings < ratio * savings_before:
        return Decision(False, f"live keystroke savings ({source}) of {latest} {savings:.2%} are below {ratio:g} × "
                               f"those of {previous} ({savings_before:.2%})", details)
    return Decision(True, f"live keystroke savings ({source}) of {latest} {savings:.2%} vs {previous} "
                          f"{savings_before:.2%}: at least {ratio:g} ×", details)
