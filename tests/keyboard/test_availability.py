"""A device's own availability model: drawn on the device, held between check-ins."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import numpy as np
import pytest

from keyboard.availability import Availability, draw_now
from keyboard.conditions import modelled_conditions
from keyboard.store import Device

ALWAYS = Availability(tz_offset_hours=0, idle_day=1.0, idle_night=1.0, charging_day=1.0, charging_night=1.0,
                      unmetered=1.0)
NIGHT_ONLY = Availability(tz_offset_hours=2, idle_day=0.0, idle_night=1.0, charging_day=0.0, charging_night=1.0,
                          unmetered=1.0)


def test_a_device_is_eligible_at_its_own_local_night_only():
    rng = np.random.default_rng(0)
    at = lambda hour: dt.datetime(2026, 1, 1, hour, tzinfo=dt.UTC)  # noqa: E731
    assert draw_now(NIGHT_ONLY, rng, at(22)) == {"idle": True, "charging": True, "unmetered": True}  # 00:00 local
    assert draw_now(NIGHT_ONLY, rng, at(4)) == {"idle": True, "charging": True, "unmetered": True}  # 06:00 local
    assert draw_now(NIGHT_ONLY, rng, at(5)) == {"idle": False, "charging": False, "unmetered": True}  # 07:00 local
    assert draw_now(NIGHT_ONLY, rng, at(12)) == {"idle": False, "charging": False, "unmetered": True}  # 14:00 local


def test_the_model_reads_back_and_refuses_a_wrong_record():
    assert Availability.from_dict(asdict(NIGHT_ONLY)) == NIGHT_ONLY
    with pytest.raises(ValueError, match="tz_offset_hours"):
        Availability.from_dict({"idle_day": 0.5})


def test_a_draw_holds_until_its_time_is_up(tmp_path):
    half = Availability(tz_offset_hours=0, idle_day=0.5, idle_night=0.5, charging_day=0.5, charging_night=0.5,
                        unmetered=0.5)
    with Device(tmp_path / "d", create=True) as device:
        device.set(availability=asdict(half))
    now = [0.0]
    conditions = modelled_conditions(tmp_path / "d", hold_seconds=60, clock=lambda: now[0])
    first = conditions()
    seen = set()
    for t in range(1, 60):
        now[0] = float(t)
        assert conditions() == first
    for t in range(60, 60 * 200, 60):  # a new draw each minute: both states of a coin appear
        now[0] = float(t)
        seen.add(conditions()["idle"])
    assert seen == {True, False}


def test_a_device_without_a_model_is_named(tmp_path):
    with Device(tmp_path / "nomodel", create=True):
        pass
    with pytest.raises(ValueError, match="device nomodel"):
        modelled_conditions(tmp_path / "nomodel")
