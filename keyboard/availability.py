"""A device's availability model: its chance of being idle, charging and on an unmetered network.

Each seeded device carries its own model in its status record (by day and by night in its own
time zone). The simulation draws every device's conditions from these models at a simulated hour
(``federated/population.py``); a device agent standing in for a phone (``fedkb devices run``)
draws its own conditions from its own model at the real hour, with the device's own randomness,
so the coordinator learns only what a phone would tell it: eligible now or not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import numpy as np

NIGHT_HOURS = frozenset({22, 23, 0, 1, 2, 3, 4, 5, 6})
CONDITIONS = ("idle", "charging", "unmetered")


@dataclass(frozen=True)
class Availability:
    """A device's chance of being idle / charging / on unmetered network, by local day and night."""

    tz_offset_hours: int
    idle_day: float
    idle_night: float
    charging_day: float
    charging_night: float
    unmetered: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Availability:
        # Beta priors: phones are mostly busy and unplugged by day, idle and charging at night,
        # and usually on Wi-Fi. The means give about a quarter of devices eligible at a time.
        return cls(
            tz_offset_hours=int(rng.integers(-8, 9)),
            idle_day=float(rng.beta(2, 5)),
            idle_night=float(rng.beta(8, 2)),
            charging_day=float(rng.beta(2, 6)),
            charging_night=float(rng.beta(6, 2)),
            unmetered=float(rng.beta(6, 2)),
        )

    @classmethod
    def from_dict(cls, d: dict) -> Availability:
        names = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) != names:
            raise ValueError(f"an availability model has exactly {sorted(names)}, got {d!r}")
        return cls(**d)


def draw_conditions(arrays: dict[str, np.ndarray], utc_hour: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draws each device's idle / charging / unmetered state at one UTC hour (column arrays, one per field)."""
    local = (utc_hour + arrays["tz_offset_hours"].astype(int)) % 24
    night = np.isin(local, list(NIGHT_HOURS))
    p_idle = np.where(night, arrays["idle_night"], arrays["idle_day"])
    p_charging = np.where(night, arrays["charging_night"], arrays["charging_day"])
    u = rng.random((3, len(local)))
    return {"idle": u[0] < p_idle, "charging": u[1] < p_charging, "unmetered": u[2] < arrays["unmetered"]}


def draw_now(model: Availability, rng: np.random.Generator, now: dt.datetime | None = None) -> dict[str, bool]:
    """One device's conditions now, drawn from its own model at the current UTC hour."""
    now = now or dt.datetime.now(dt.UTC)
    arrays = {f.name: np.array([getattr(model, f.name)], np.float64) for f in fields(model)}
    drawn = draw_conditions(arrays, now.hour, rng)
    return {k: bool(drawn[k][0]) for k in CONDITIONS}
