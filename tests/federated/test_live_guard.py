"""The live guard of ``fedkb rollout --min-live-savings-ratio``: latest gives way when live savings fell."""

from __future__ import annotations

import pytest

from federated import live_release, promotion, registry
from federated.rollout import rollout
from tests.federated.test_live_release import counts
from tests.keyboard.helpers import publish_random


def _entry(letters_saved, letters=1000, devices=20):
    return (devices, counts(100, accepted=50, letters=letters, letters_saved=letters_saved))


def _live(totals, minimum=20):
    return live_release.release(totals, minimum, origin="test")


def test_latest_gives_way_when_its_typed_savings_fall_below_the_ratio():
    live = _live({("0002", "typed"): _entry(200), ("0001", "typed"): _entry(300),
                  ("0002", "replayed"): _entry(900), ("0001", "replayed"): _entry(100)})
    d = promotion.live_guard(live, "0002", "0001", 0.9)  # typed preferred: 20 % < 0.9 × 30 %
    assert d.promoted is False and d.details["source"] == "typed"
    assert d.reason == "live keystroke savings (typed) of 0002 20.00% are below 0.9 × those of 0001 (30.00%)"
    assert promotion.live_guard(live, "0002", "0001", 0.6).promoted is True  # 20 % ≥ 0.6 × 30 % = 18 %


def test_without_a_released_pair_of_one_source_the_guard_does_not_apply():
    # typed of 0001 withheld (3 devices): replayed is compared instead.
    live = _live({("0002", "typed"): _entry(200), ("0001", "typed"): _entry(300, devices=3),
                  ("0002", "replayed"): _entry(100), ("0001", "replayed"): _entry(300)})
    d = promotion.live_guard(live, "0002", "0001", 0.5)
    assert d.promoted is False and d.details["source"] == "replayed"
    only_typed = _live({("0002", "typed"): _entry(200), ("0001", "replayed"): _entry(300)})
    d = promotion.live_guard(only_typed, "0002", "0001", 0.5)
    assert d.promoted is True and "no released live figures of one source for both 0002 and 0001" in d.reason
    assert promotion.live_guard(live, "0001", None, 0.5).promoted is True
    with pytest.raises(ValueError, match="above 0"):
        promotion.live_guard(live, "0002", "0001", 0.0)


def test_rollout_rolls_back_to_the_replaced_version_on_hand_made_live_figures(home):
    publish_random(home.models)
    publish_random(home.models, seed=1, round_num=2, promote=False)
    registry.record_decision(home.models, "0002", promoted=True, reason="test")
    live_release.record(home.server, _live({("0002", "typed"): _entry(100), ("0001", "typed"): _entry(250)}), 20)

    kept = rollout(home, min_live_savings_ratio=0.3)  # 10 % ≥ 0.3 × 25 %
    assert kept.guard["kept"] is True and kept.latest == "0002"
    report = rollout(home, min_live_savings_ratio=0.5)  # 10 % < 0.5 × 25 %
    assert report.guard["kept"] is False and report.latest == "0001"
    reg = registry.read_registry(home.models)
    assert reg["latest"] == "0001" and reg["rollbacks"]["0001"]["from"] == "0002"
    assert "below 0.5 × those of 0001" in reg["rollbacks"]["0001"]["reason"]
    assert rollout(home).guard is None  # off by default
