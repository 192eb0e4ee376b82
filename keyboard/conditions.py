"""A device agent's conditions (idle, charging, unmetered), as it reports them at check-in: this
machine's own (``host_conditions``), or drawn from the device's availability model for an agent
that stands in for a phone (``modelled_conditions``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from common.errors import ConfigError
from keyboard.availability import Availability, draw_now
from keyboard.store import Device


def host_conditions() -> dict[str, bool]:
    """This machine's conditions: charging from sysfs (no battery counts as mains power)."""
    supplies = list(Path("/sys/class/power_supply").glob("*"))
    batteries = [p for p in supplies if (p / "type").is_file() and (p / "type").read_text().strip() == "Battery"]
    charging = not batteries or any(
        (p / "status").is_file() and (p / "status").read_text().strip() in ("Charging", "Full") for p in batteries)
    return {"idle": True, "charging": charging, "unmetered": True}


def modelled_conditions(device_dir: Path, *, hold_seconds: float = 60.0, clock=time.monotonic):
    """Conditions drawn from the device's own availability model (its status record), for a device
    agent that stands in for a phone (``fedkb devices run --conditions model``).

    A draw holds for ``hold_seconds`` (a phone's state does not flip between two check-ins); the
    randomness is the device's own and is never sent, only the conditions are.
    """
    with Device(device_dir) as device:
        status = device.status()
    try:
        model = Availability.from_dict(status.get("availability"))
    except ValueError as exc:
        raise ConfigError(f"device {Path(device_dir).name}: {exc}") from None
    rng, drawn = np.random.default_rng(), {}

    def conditions() -> dict[str, bool]:
        if not drawn or clock() - drawn["at"] >= hold_seconds:
            drawn.update(at=clock(), value=draw_now(model, rng))
        return dict(drawn["value"])

    return conditions
