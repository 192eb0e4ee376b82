"""The device population: seeding devices from a corpus, their availability, and eligibility.

Each device carries a seeded *availability model*: its own probabilities of being idle,
charging and on an unmetered network, by day and by night in its own time zone. Round ``r``
of training happens at simulated hour ``r mod 24`` (UTC), so in any round a realistic share of
devices is ineligible (most train at night, as in Gboard) and who is eligible changes from
round to round. A small index (``devices/population.sqlite``) lists devices and their
availability models — never text, never user names — so that picking a round's clients costs
the same whatever the population size. Device ids are random (``keyboard.store.new_device_id``);
which user a device belongs to is written only in that device's own status record.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common import signing
from common.errors import FedkbError
from common.layout import Home
from federated import tls
from federated.configs import SeedConfig
from federated.corpus import Record, group_by_user, read_records
from keyboard.availability import NIGHT_HOURS, Availability, draw_conditions  # noqa: F401  (re-exported)
from keyboard.controls import takes_part
from keyboard.store import Device, devices_of_users, new_device_id

INDEX_NAME = "population.sqlite"


class PopulationError(FedkbError):
    """Seeding or reading the population failed; the message says what to do."""


@dataclass(frozen=True)
class Member:
    """One row of the population index: no user name (that stays in the device's status record)."""

    device_id: str
    availability: Availability


def _index(home: Home) -> sqlite3.Connection:
    home.devices.mkdir(parents=True, exist_ok=True)
    path = home.devices / INDEX_NAME
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY, "
        "availability TEXT NOT NULL, position INTEGER NOT NULL)"
    )
    if "user" in {row[1] for row in db.execute("PRAGMA table_info(devices)")}:
        db.close()
        raise PopulationError(
            f"{path} was written by an older fedkb that kept user names in the population index and in "
            "device ids; seed a new population in another home (--home DIR), or move this one's devices/ away"
        )
    return db


def members(home: Home) -> list[Member]:
    """Every device of the population, in seeding order."""
    if not (home.devices / INDEX_NAME).is_file():
        return []
    with _index(home) as db:
        rows = db.execute("SELECT device_id, availability FROM devices ORDER BY position").fetchall()
    return [Member(d, Availability(**json.loads(a))) for d, a in rows]


def taking_part(home: Home, population: Sequence[Member]) -> list[Member]:
    """The members whose owners did not opt out of federated computations (``keyboard/controls.py``).

    Opens every device: for computations over the whole population (vocabulary, n-grams).
    """
    kept = []
    for member in population:
        with Device(home.device(member.device_id)) as device:
            if takes_part(device.status()):
                kept.append(member)
    return kept


def register(home: Home, new: Sequence[Member]) -> None:
    """Adds members to the index in one transaction."""
    db = _index(home)
    try:
        db.execute("BEGIN IMMEDIATE")
        start = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM devices").fetchone()[0]
        db.executemany(
            "INSERT INTO devices (device_id, availability, position) VALUES (?, ?, ?)",
            [(m.device_id, json.dumps(asdict(m.availability)), start + i) for i, m in enumerate(new)],
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        db.close()


@dataclass(frozen=True)
class SeedReport:
    corpus: Path
    records: int
    users: int
    devices_created: int
    devices_appended: int
    sentences_written: int
    dropped_small_users: int


def seed(
    home: Home,
    corpus: Path,
    *,
    min_sentences: int = SeedConfig.min_sentences,
    max_devices: int | None = SeedConfig.max_devices,
    append: bool = False,
    seed: int = SeedConfig.seed,
) -> SeedReport:
    """Creates one device per corpus user, all or nothing.

    The whole corpus is read and validated before anything is written; new devices are
    built in a staging folder and moved into place only when all of them are complete. Each
    new device gets a random id; its user's name goes into its own status record only. ``seed``
    draws the availability models (deterministic), not the ids.
    """
    if min_sentences < 1:
        raise PopulationError("--min-sentences must be at least 1")
    existing = {m.device_id: m for m in members(home)}
    # --append finds a user's device as the person would: by the name in each device's own record
    by_user = {u: d for u, d in devices_of_users(home.devices).items() if d in existing} if append else {}
    taken = set(existing) | ({p.name for p in home.devices.iterdir()} if home.devices.is_dir() else set())
    if existing and not append:
        raise PopulationError(
            f"{home.devices} already holds {len(existing)} devices; pass --append to add to them, "
            "or choose another --home"
        )
    records = read_records(corpus)
    users = group_by_user(records, corpus)
    kept = {u: recs for u, recs in users.items() if len(recs) >= min_sentences}
    dropped = len(users) - len(kept)
    chosen = list(kept.items())[:max_devices] if max_devices is not None else list(kept.items())
    if not chosen:
        raise PopulationError(
            f"{corpus}: no user has at least {min_sentences} records ({len(users)} users); lower --min-sentences"
        )
    rng = np.random.default_rng(seed)
    staging = home.devices / f".staging-{uuid.uuid4().hex[:8]}"
    new_members: list[Member] = []
    to_append: list[tuple[str, list[Record]]] = []
    moved: list[Path] = []
    written = 0
    coordinator_key = signing.public_key(home.keys)  # enrolment pins it: devices install only versions it signed
    try:
        for user, recs in chosen:
            availability = Availability.sample(rng)
            if user in by_user:
                to_append.append((by_user[user], recs))
                continue
            device_id = new_device_id(taken=taken)
            taken.add(device_id)
            with Device(staging / device_id, create=True) as device:
                device.set(user=user, availability=asdict(availability), source=str(corpus))
                written += device.append_many((r.timestamp, r.text) for r in recs)
            signing.pin(staging / device_id, coordinator_key)
            if (home.tls / tls.CA_KEY).is_file():  # the coordinator serves TLS: enrol with a credential too
                tls.issue_device(home.tls, staging / device_id)
            new_members.append(Member(device_id, availability))
        for member in new_members:
            target = home.device(member.device_id)
            if target.exists():
                raise PopulationError(f"{target} exists but is not in the population index; move it away")
            (staging / member.device_id).rename(target)
            moved.append(target)
        register(home, new_members)
    except BaseException:
        for target in moved:
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for device_id, recs in to_append:
        with Device(home.device(device_id)) as device:
            written += device.append_many((r.timestamp, r.text) for r in recs)
    return SeedReport(
        corpus=corpus,
        records=len(records),
        users=len(users),
        devices_created=len(new_members),
        devices_appended=len(to_append),
        sentences_written=written,
        dropped_small_users=dropped,
    )


# -- availability and eligibility ---------------------------------------------------------------
def availability_arrays(population: Sequence[Member]) -> dict[str, np.ndarray]:
    """The population's availability models as column arrays, for vectorized draws."""
    fields = ("tz_offset_hours", "idle_day", "idle_night", "charging_day", "charging_night", "unmetered")
    return {f: np.array([getattr(m.availability, f) for m in population], dtype=np.float64) for f in fields}


def round_conditions(population: Sequence[Member], round_num: int, seed: int,
                     arrays: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every device's conditions at training round ``round_num`` (simulated hour ``round_num mod 24``)."""
    rng = np.random.default_rng([seed, round_num, 0xE11])
    return draw_conditions(arrays or availability_arrays(population), round_num % 24, rng)


def conditions_now(population: Sequence[Member], now: dt.datetime | None = None) -> dict[str, np.ndarray]:
    """Every device's conditions at the current wall-clock hour (for ``population show``)."""
    now = now or dt.datetime.now(dt.UTC)
    hour_key = int(now.timestamp() // 3600)
    return draw_conditions(availability_arrays(population), now.hour, np.random.default_rng([hour_key, 0xE11]))


def available(conditions: dict[str, np.ndarray]) -> np.ndarray:
    return conditions["idle"] & conditions["charging"] & conditions["unmetered"]


@dataclass(frozen=True)
class Selection:
    """The clients picked for one round and how many devices could have taken part."""

    device_ids: list[str]
    available: int  # idle, charging and unmetered at this round
    population: int
    eligible: int | None = None  # available with enough train sentences (Poisson sampling's base)
    rate: float | None = None  # the Poisson sampling rate q = K / eligible (None: a fixed-size draw)


def poisson_select(
    home: Home, population: Sequence[Member], round_num: int, k: int, *, key, seed: int, min_examples: int,
    utc_hour: int | None = None, draw: int = 0, arrays: dict[str, np.ndarray] | None = None,
) -> Selection:
    """Poisson sampling: each eligible device takes part with probability q = K / eligible.

    Eligible = idle, charging and unmetered at this round, with at least ``min_examples`` sentences
    in the train split, and not opted out by its owner (``keyboard/controls.py``). The availability
    draws (the simulated world) follow ``seed``; who takes part follows ``key``
    (``federated/sampling.py``), a secret unless the run was given ``--seed``. Every available
    device is opened to learn whether it is eligible, since q divides by the eligible devices.
    """
    from federated import sampling

    arrays = arrays or availability_arrays(population)
    if utc_hour is None:
        ok = available(round_conditions(population, round_num, seed, arrays))
    else:
        ok = available(draw_conditions(arrays, utc_hour, np.random.default_rng([seed, round_num, draw, 0xE11])))
    eligible = []
    for index in np.flatnonzero(ok):
        device_id = population[int(index)].device_id
        with Device(home.device(device_id)) as device:
            status = device.status()
        if status["train_sentences"] >= min_examples and takes_part(status):
            eligible.append(device_id)
    q = sampling.rate(k, len(eligible))
    chosen = sampling.poisson(key, eligible, q, round_num, draw)
    return Selection(chosen, int(ok.sum()), len(population), eligible=len(eligible), rate=q)
