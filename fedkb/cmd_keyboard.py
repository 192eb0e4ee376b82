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


def _valid_device_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
        raise argparse.ArgumentTypeError(
            f"device id {value!r}: use letters, digits, '.', '_' or '-' (at most 100, not starting with '.')"
        )
    return value


def _valid_user(value: str) -> str:
    if not value.strip() or len(value) > 200:
        raise argparse.ArgumentTypeError(f"user name {value[:60]!r}: give 1 to 200 characters, not only spaces")
    return value


def open_device(home: Home, *, device_id: str | None = None, user: str | None = None):
    """The device to type on: by ``device_id`` (it must exist), or the one whose status record names ``user``.

    A person finds their device by the name in each device's own status record (read on the
    device side; the server's index and the ids hold no names). With neither argument the user is
    this login's name. A user with no device gets a new one, with a random id. Either way the
    device is added to the population index if it is not in it yet.
    """
    import datetime as dt
    from dataclasses import asdict

    import numpy as np

    from federated.population import Availability, Member, members, register
    from keyboard.store import Device, devices_of_users, new_device_id

    if device_id is None:
        user = user or _login_name()
        device_id = devices_of_users(home.devices).get(user)
    if device_id is None:
        taken = {p.name for p in home.devices.iterdir()} if home.devices.is_dir() else set()
        device = Device(home.device(new_device_id(taken=taken)), create=True)
        device.set(user=user, source="keyboard",
                   created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    else:
        device = Device(home.device(device_id))  # DeviceError naming the folder if there is none
        if device.get("user") is None:
            device.set(user=_login_name())
    if device.id not in {m.device_id for m in members(home)}:
        # A person's own device joins the simulated population like a seeded one, so `fedkb train`
        # can pick it when its availability model says it is idle, charging and on Wi-Fi.
        availability = Availability.sample(np.random.default_rng())
        device.set(availability=asdict(availability))
        register(home, [Member(device.id, availability)])
    return device


def cmd_keyboard(home: Home, args: argparse.Namespace) -> None:
    single_thread_blas()
    from keyboard.app import KeyboardApp
    from keyboard.output import stdout_for_text_only, write_text

    device = open_device(home, device_id=args.device, user=args.user)
    try:
        app = KeyboardApp(device, models_dir=home.models, evals_dir=home.evals, references_dir=home.references,
                          idle_after=args.idle_after, check_every=args.check_every,
                          server=None if args.no_federated else args.server, once=args.once)
        if args.print:
            with stdout_for_text_only():
                app.run()
            write_text(app.session_text())
        else:
            app.run()
    finally:
        device.close()


def cmd_device_forget_learned(home: Home, args: argparse.Namespace) -> None:
    """``fedkb device forget-learned``: the settings screen's "forget what this device learned", by id or user."""
    from keyboard.forget import forget_learned, what_learning_would_go
    from keyboard.store import Device

    with Device(home.device(_device_id(home, args))) as device:
        if not args.yes and not _confirmed(what_learning_would_go(device)):
            print("Nothing was forgotten.")
            return
        gone = forget_learned(device)
    print(f"device {device.id}: forgot what it learned" + (" (and its personal model)" if gone.personal_model else "")
          + f"; kept the {gone.kept_sentences:,} sentences of its log")


def _device_id(home: Home, args: argparse.Namespace) -> str:
    from keyboard.store import DeviceError, devices_of_users

    if args.device is not None:
        return args.device
    device_id = devices_of_users(home.devices).get(args.user)
    if device_id is None:
        raise DeviceError(f"no device under {home.devices} has a status record naming the user {args.user!r}")
    return device_id


def _confirmed(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:  # no terminal to answer from: the safe answer
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def cmd_device_delete(home: Home, args: argparse.Namespace) -> None:
    """``fedkb device delete``: what F8 does in the keyboard, for a device picked by id or user."""
    from keyboard.forget import forget, what_would_go
    from keyboard.store import Device

    device_id = _device_id(home, args)
    with Device(home.device(device_id)) as device:
        if not args.yes and not _confirmed(what_would_go(device, home.references)):
            print("Nothing was deleted.")
            return
        gone = forget(device, home.references)
    print(f"device {device_id}: deleted {gone.sentences:,} sentences"
          + (", its personal model" if gone.personal_model else "")
          + (f" and the references fitted on pooled text ({gone.references})" if gone.references else ""))


def _device_and_yes(p) -> None:
    """``--user NAME`` or ``--device ID`` (one is required) and ``--yes``."""
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=_valid_user, metavar="NAME", help="the device whose status record names this user")
    who.add_argument("--device", type=_valid_device_id, metavar="ID", help="the device with this id")
    p.add_argument("--yes", action="store_true", help="do not ask first")


def add_delete_parser(device_sub) -> None:
    """``fedkb device delete`` and ``fedkb device forget-learned``.

    Registered under ``fedkb device`` by ``cmd_live``.
    """
    p = device_sub.add_parser("delete", help="delete a device's typing log, its personal model and the pooled "
                                             "references, as F8 does in the keyboard")
    _device_and_yes(p)
    p.set_defaults(func=cmd_device_delete)
    p = device_sub.add_parser("forget-learned", help="keep a device's typing log but forget what the device learned "
                                                     "from it (personal model, word counts, caches), as the keyboard's "
                                                     "settings screen (F9) does")
    _device_and_yes(p)
    p.set_defaults(func=cmd_device_forget_learned)


def add_parsers(sub) -> None:
    p = sub.add_parser("keyboard", help="type with next-word suggestions; sentences are logged on this device only")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--user", type=_valid_user, metavar="NAME",
                     help=f"type on the device whose own status record names this user; created, with a random "
                          f"id, if there is none (default: your login name, {_login_name()!r})")
    who.add_argument("--device", type=_valid_device_id, metavar="ID",
                     help="type on this existing device (its id, as `fedkb population show` lists it)")
    p.add_argument("--idle-after", type=float, default=30.0,
                   help="seconds without typing before the device counts as idle (default 30)")
    p.add_argument("--check-every", type=float, default=60.0,
                   help="seconds between checks for a newly promoted model (default 60)")
    p.add_argument("--server", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                   help=f"the coordinator of live rounds (`fedkb serve`); while the device is eligible its agent "
                        f"checks in there (default {DEFAULT_ADDRESS})")
    p.add_argument("--no-federated", action="store_true",
                   help="never start the device agent in this session (to opt the device out for good, turn "
                        "federated off in the settings screen, F9)")
    p.add_argument("--print", action="store_true",
                   help="when the keyboard closes, write the sentences finished in this session (incognito ones "
                        "too: only the log leaves them out), one a line, then the unfinished line if it holds "
                        "text, to standard output; nothing else goes there, so msg=$(fedkb keyboard --print) works")
    p.add_argument("--once", action="store_true",
                   help="close the keyboard after the first finished sentence (Enter or . ! ?); with --print, "
                        "msg=$(fedkb keyboard --print --once) holds that sentence")
    p.set_defaults(func=cmd_keyboard)
