"""The messages a device and the coordinator exchange, as bytes: a JSON header and named arrays.

Both sides import this module and nothing else of each other's. A message is

    b"FKB1" | header length (4 bytes, big-endian) | header (UTF-8 JSON object) | npz of the arrays

The arrays travel as an uncompressed ``.npz`` read with ``allow_pickle=False``, so a message
can carry weights and model deltas but never code. ``unpack`` refuses anything that is not such
a message and says why; sizes are bounded by the transport (``MAX_MESSAGE_BYTES``).

The round protocol (Bonawitz et al. 2019, "Towards Federated Learning at Scale"):

* ``CheckIn`` (device → coordinator): ``device_id``, ``eligible`` (idle, charging, unmetered)
  and ``train_sentences``, ``tokenizer_sha256``. The call is held open while the coordinator
  selects. The reply is ``{"kind": "task", ...}`` with the round's starting weights as arrays,
  or ``{"kind": "retry", "after": seconds, "reason": ...}``.
* ``Upload`` (device → coordinator): ``task_id``, ``device_id``, ``round``, ``weight``,
  ``metrics`` and the model delta as arrays. The reply is ``{"accepted": bool, "reason": ...}``.
* ``Tokenizer`` (device → coordinator): the SentencePiece model a task's ``tokenizer_sha256``
  names, for a device that does not have it yet.
* ``SecureAggregation`` (device → coordinator), in a round with secure aggregation instead of
  ``Upload``: ``task_id``, ``device_id``, ``round``, ``stage`` (keys, shares, masked, unmask) and
  the stage's message (``common.secagg``; the task carries the device's ``secagg`` index and the
  ``UpdateCodec``). The call is held until the stage closes; the reply is ``{"status": "ok"}``
  with the stage's result, ``"pending"`` (ask again) or ``"failed"`` with a reason.
* ``Version`` (device → coordinator): ``device_id``, ``have`` (the version installed) and ``want``
  (a version to evaluate, or null for ``latest``). The reply is ``latest``'s name and ``version``,
  the name of the version whose files the arrays carry, or null when the device has it already
  (``common/version_message.py``).
* ``EvalReport`` (device → coordinator): ``device_id``, ``eval_id``, ``version`` and ``sums``, the
  named sums (``common/eval_sums.py``) of each version of an evaluation task (``candidate`` and,
  when there is one, ``latest``). A check-in may be answered ``{"kind": "evaluate", "eval_id",
  "version", "baseline"}`` while a candidate is evaluated. The reply is ``{"accepted": bool, "reason"}``.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

MAGIC = b"FKB1"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # the transport's limit; a small-preset task is ~5 MB
SERVICE = "fedkb.Coordinator"
DEFAULT_ADDRESS = "127.0.0.1:50151"  # where `fedkb serve` listens and devices look for it by default


def is_loopback(address: str) -> bool:
    """Whether ``HOST:PORT`` names this machine only (no TLS needed there)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


class MessageError(ValueError):
    """Bytes that are not a well-formed fedkb message; the text says what is wrong."""


def exact_fields(obj: object, fields: tuple[str, ...], where: str, what: str) -> Mapping:
    """``obj`` if it is an object with exactly ``fields``; ``MessageError`` naming ``where`` and ``what`` otherwise."""
    if not isinstance(obj, Mapping):
        raise MessageError(f"{where}: {what} must be an object with {', '.join(fields)}, got {type(obj).__name__}")
    missing, extra = set(fields) - set(obj), set(obj) - set(fields)
    if missing or extra:
        raise MessageError(f"{where}: {what} must have exactly {', '.join(fields)}; "
                           f"missing {sorted(missing)}, unexpected {sorted(extra)}")
    return obj


def pack(header: Mapping, arrays: Mapping[str, np.ndarray] | bytes | None = None) -> bytes:
    """A message; ``arrays`` may be ``pack_arrays``' bytes, so arrays sent to many are serialized once."""
    head = json.dumps(dict(header), sort_keys=True, allow_nan=False).encode("utf-8")
    body = arrays if isinstance(arrays, bytes) else pack_arrays(arrays)
    return MAGIC + struct.pack(">I", len(head)) + head + body


def pack_arrays(arrays: Mapping[str, np.ndarray] | None) -> bytes:
    if not arrays:
        return b""
    body = io.BytesIO()
    np.savez(body, **{k: np.asarray(v) for k, v in arrays.items()})
    return body.getvalue()


def unpack(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of a message; ``MessageError`` if ``data`` is not one."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise MessageError("not a fedkb message (bad magic)")
    (n,) = struct.unpack(">I", data[4:8])
    if 8 + n > len(data):
        raise MessageError(f"header of {n} bytes runs past the end of a {len(data)}-byte message")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"header is not UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise MessageError("header is not a JSON object")
    rest = data[8 + n:]
    arrays: dict[str, np.ndarray] = {}
    if rest:
        try:
            with np.load(io.BytesIO(rest), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile, numpy and ValueError all signal a damaged archive
            raise MessageError(f"arrays are not a readable npz ({type(exc).__name__}: {exc})") from None
    return header, arrays


def field(header: Mapping, name: str, kind: type | tuple[type, ...]):
    """``header[name]`` if it is present and of ``kind``; ``MessageError`` naming it otherwise."""
    if name not in header:
        raise MessageError(f"missing {name!r}")
    value = header[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise MessageError(f"{name!r} must be {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise MessageError(f"{name!r} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


# -- the task's client settings ------------------------------------------------------------
WEIGHTINGS = ("examples", "uniform")


@dataclass(frozen=True)
class LocalTraining:
    """The client settings a round's task carries."""

    client_lr: float
    client_clip_norm: float
    local_epochs: int
    batch_size: int
    max_examples_per_client: int
    seed: int
    weighting: str = "examples"  # "uniform" under DP: every device counts once

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        for name in ("local_epochs", "batch_size", "max_examples_per_client"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.client_lr > 0 and self.client_clip_norm > 0):
            raise ValueError("client_lr and client_clip_norm must be positive")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LocalTraining:
        names = {f.name for f in fields(cls)}
        if set(d) != names:
            raise ValueError(f"client settings must have exactly {sorted(names)}, got {sorted(d)}")
        return cls(**d)


def max_update_norm(settings: LocalTraining) -> float:
    """The largest global L2 norm a delta can have: each local step moves at most lr x clip."""
    steps = math.ceil(settings.max_examples_per_client / settings.batch_size) * settings.local_epochs
    return settings.client_lr * settings.client_clip_norm * steps


def max_weight(settings: LocalTraining) -> float:
    return float(settings.max_examples_per_client * settings.local_epochs) if settings.weighting == "examples" else 1.0
