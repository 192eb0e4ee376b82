"""Who takes part in a round: Poisson sampling at rate q over the eligible devices, from a secret key.

Amplification by sampling (the ε the ledger reports) assumes that each eligible device joins a
round independently with probability q and that nobody outside the server learns who was
drawn. So a device's Bernoulli(q) draw for round r is ``HMAC-SHA256(key, r, draw, device id)``
read as a number in [0, 1): a keyed pseudo-random function, fresh for every round and device.

* By default the key is 32 bytes from ``secrets.token_bytes`` (the OS CSPRNG), kept in the
  server's private state (``server/state/sampling.json``, mode 0600) and never released: no
  manifest, metrics row or version names it. A resumed run reads it back, so a round re-run
  after a crash draws the same devices.
* With an explicit ``--seed`` the key is derived from the seed, for research: the run is
  reproducible, but anyone who knows the seed knows who was drawn. Its privacy statement says
  that the sampling is public and reports ε without amplification beside the amplified one.

This module holds no TensorFlow.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common.errors import FedkbError

SAMPLING_FILE = "sampling.json"  # under server/state: private, never published


class SamplingError(FedkbError, ValueError):
    """The sampling key cannot be read, or does not match the run's settings."""


@dataclass(frozen=True)
class SamplingKey:
    """The key of the participants' draw; ``public`` when it derives from a published seed."""

    key: bytes
    public: bool

    @property
    def assumption(self) -> str:
        """The sampling assumption, in words, for manifests, eval JSON and the report."""
        if self.public:
            return ("Poisson sampling of the eligible devices from the public --seed: who took part can be "
                    "recomputed by anyone who knows the seed, so amplification by sampling does not hold")
        return ("Poisson sampling of the eligible devices, each independently with probability q = K / eligible, "
                "from a secret key (os CSPRNG) kept in the server's private state; the draws are never published")


def seeded_key(seed: int) -> SamplingKey:
    """The public key of a run made reproducible by ``--seed``."""
    return SamplingKey(hashlib.sha256(f"fedkb participants, seed {int(seed)}".encode()).digest(), public=True)


def load_or_create(state_dir: Path, seed: int | None, *, fresh: bool = False) -> SamplingKey:
    """The run's key: from ``--seed`` (public), else the secret one in ``state_dir``, made on first use.

    A secret key is written once, with mode 0600, before any round uses it. A run resumed with
    ``--seed`` over a secret key (or the reverse) is refused: its draws would change mid-run.
    """
    path = state_dir / SAMPLING_FILE
    record = None
    if path.is_file() and not fresh:
        try:
            record = json.loads(path.read_text())
            saved = SamplingKey(bytes.fromhex(record["key"]), bool(record["public"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SamplingError(f"{path}: unreadable sampling key ({exc}); pass --fresh to start over") from None
    if seed is not None:
        key = seeded_key(seed)
        if record is not None and saved != key:
            raise SamplingError(f"{path}: this run's participants were drawn "
                                + ("from another --seed" if saved.public else "from a secret key")
                                + f"; resume it {'with that seed' if saved.public else 'without --seed'}, "
                                "or pass --fresh")
    elif record is not None:
        if saved.public:
            raise SamplingError(f"{path}: this run's participants were drawn from a public --seed; resume it with "
                                "the same --seed, or pass --fresh for a run with secret sampling")
        return saved
    else:
        key = SamplingKey(secrets.token_bytes(32), public=False)
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"key": key.key.hex(), "public": key.public}, f)
    os.replace(tmp, path)
    return key


def rate(k: int, eligible: int) -> float:
    """The sampling rate q that gives K participants in expectation (at most 1)."""
    return min(1.0, k / eligible) if eligible > 0 else 0.0


def uniform(key: SamplingKey, round_num: int, draw: int, device_id: str) -> float:
    """The device's uniform number in [0, 1) for this round and draw (HMAC-SHA256 as a PRF)."""
    mac = hmac.new(key.key, struct.pack(">qq", round_num, draw) + device_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") / 2.0**64


def poisson(key: SamplingKey, device_ids: Sequence[str], q: float, round_num: int, draw: int = 0) -> list[str]:
    """The devices drawn: each of ``device_ids`` independently with probability ``q``."""
    if not 0 <= q <= 1:
        raise SamplingError(f"sampling rate must be in [0, 1], got {q}")
    return [d for d in device_ids if uniform(key, round_num, draw, d) < q]
