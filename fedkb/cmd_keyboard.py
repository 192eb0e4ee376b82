"""``fedkb keyboard``: type on one device of the home, with suggestions from its installed model.

Nothing here may import TensorFlow: the keyboard runs the published model in numpy.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re

from common.layout import Home
from common.messages import DEFAULT_ADDRESS


def single_thread_blas() -> None:
    """Keeps OpenBLAS to the calling thread; call it before numpy is first imported.

    A keystroke's work is one-row matrix-vector products (``keyboard/beam.py``), too small for a
    second BLAS thread to speed up; with one, the slowest keystrokes got slower (gboard, quiet
    machine: max 19 ms against 2.6 ms; load average 5: p99 10-28 ms against 9.5-13 ms).
    ``bench/suggest_latency.py`` runs the same way; give it ``OPENBLAS_NUM_THREADS=2`` to compare.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return "user"


def default_device_id() -> str:
    """``local-<username>``: this person's own device, created on first run."""
    return "local-" + (re.sub(r"[^a-z0-9]+", "-", _login_name().lower()).strip("-") or "user")


def _valid_device_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
        raise argparse.ArgumentTypeError(
            f"device id {value!r}: use letters, digits, '.', '_' or '-' (at most 100, not starting with '.')"
        )
    return value


def open_device(home: Home, device_id: str):
    """Opens the device, creating it and adding it to the population index if it is new."""
    import datetime as dt
    from dataclasses import asdict

    import numpy as np

    from federated.population import Availability, Member, members, register
    from keyboard.store import DB_NAME, Device

    directory = home.device(device_id)
    new = not (directory / DB_NAME).is_file()
    device = Device(directory, create=new)
    if device_id not in {m.device_id for m in members(home)}:
        # A person's own device joins the simulated population like a seeded one, so `fedkb train`
        # can pick it when its availability model says it is idle, charging and on Wi-Fi.
        availability = Availability.sample(np.random.default_rng())
        user = device.get("user") or _login_name()
        device.set(user=user, availability=asdict(availability), source="keyboard",
                   created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        register(home, [Member(device_id, user, availability)])
    return device


def cmd_keyboard(home: Home, args: argparse.Namespace) -> None:
    single_thread_blas()
    from keyboard.app import KeyboardApp

    device = open_device(home, args.device or default_device_id())
    try:
        app = KeyboardApp(device, models_dir=home.models, evals_dir=home.server / "evals",
                          idle_after=args.idle_after, check_every=args.check_every,
                          server=None if args.no_federated else args.server)
        app.run()
    finally:
        device.close()


def add_parsers(sub) -> None:
    p = sub.add_parser("keyboard", help="type with next-word suggestions; sentences are logged on this device only")
    p.add_argument("--device", type=_valid_device_id,
                   help=f"device to type on (default {default_device_id()}; created if new)")
    p.add_argument("--idle-after", type=float, default=30.0,
                   help="seconds without typing before the device counts as idle (default 30)")
    p.add_argument("--check-every", type=float, default=60.0,
                   help="seconds between checks for a newly promoted model (default 60)")
    p.add_argument("--server", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                   help=f"the coordinator of live rounds (`fedkb serve`); while the device is eligible its agent "
                        f"checks in there (default {DEFAULT_ADDRESS})")
    p.add_argument("--no-federated", action="store_true",
                   help="never start the device agent: this device takes no part in live rounds")
    p.set_defaults(func=cmd_keyboard)
