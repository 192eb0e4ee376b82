"""A device's secure upload: its update leaves only masked, through the four stages of
Bonawitz et al. (CCS 2017) run with the coordinator as relay (``federated/live_secagg.py``).

The keys, the self-mask seed and the Shamir shares are made here, in the device's own process,
and never leave it except as the protocol sends them: public keys, shares sealed for one peer
each, a masked vector, and at the end the shares that unmask the *sum*. The coordinator holds
each call open until its stage closes; a reply of ``pending`` means ask again with the same
message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from common import messages
from common.secagg import PublicKeys, SecAggClient, SecAggError, UpdateCodec

STAGE_TIMEOUT = 90.0  # seconds one held call may take; a pending reply is asked again


class SecureUploadFailed(Exception):
    """The coordinator ended this device's part in the round; the text says why."""


def secure_upload(call, device_id: str, task: dict, delta: list[np.ndarray], weight: float, metrics: dict, *,
                  entropy: Callable[[int], bytes] = os.urandom, on_stage: Callable[[str], None] = lambda s: None,
                  deadline_seconds: float = 600.0) -> dict:
    """Runs this device's side of the task's secure aggregation; returns the coordinator's last reply."""
    spec = messages.field(task, "secagg", dict)
    codec = UpdateCodec.from_dict(messages.field(spec, "codec", dict))
    index, n = int(spec["index"]), int(spec["n"])
    vector = codec.encode(delta, weight, metrics)  # before any key leaves: a bad update fails here
    client = SecAggClient(index, n, n, entropy=entropy)  # t is fixed by the roster
    base = {"device_id": device_id, "task_id": task["task_id"], "round": task["round"]}

    def stage(name: str, header: dict | None = None, arrays: dict | None = None):
        request = messages.pack({**base, **(header or {}), "stage": name}, arrays)
        give_up = time.monotonic() + deadline_seconds
        while True:
            reply, out = messages.unpack(call(request, timeout=STAGE_TIMEOUT))
            if reply.get("status") != "pending" or time.monotonic() > give_up:
                break
        if reply.get("status") != "ok":
            raise SecureUploadFailed(f"{name}: {reply.get('reason', reply.get('status'))}")
        on_stage(name)
        return reply, out

    keys = client.advertise_keys()
    reply, _ = stage("keys", arrays={"cipher": _u8(keys.cipher), "mask": _u8(keys.mask)})
    try:
        roster = {int(v): PublicKeys(bytes.fromhex(c), bytes.fromhex(m)) for v, (c, m) in reply["roster"].items()}
        sealed = client.share_keys(roster, threshold=int(reply["threshold"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SecureUploadFailed(f"keys: a malformed roster ({exc})") from None
    _, boxes = stage("shares", arrays={f"to{v}": _u8(blob) for v, blob in sealed.items()})
    try:
        client.receive_shares({int(name[4:]): a.tobytes() for name, a in boxes.items()})
    except Exception as exc:  # cryptography's InvalidTag: a share was altered on the way
        raise SecureUploadFailed("shares: a share addressed to this device does not open "
                                 f"({type(exc).__name__})") from None
    reply, _ = stage("masked", arrays={"vector": client.mask(vector).vector})
    try:
        shares = client.unmask_shares([int(v) for v in reply["survivors"]])
    except SecAggError as exc:
        raise SecureUploadFailed(f"unmask: {exc}") from None
    reply, _ = stage("unmask", {"self_seed": {str(v): format(s, "x") for v, s in shares.self_seed.items()},
                                "mask_key": {str(v): format(s, "x") for v, s in shares.mask_key.items()}})
    return reply


def _u8(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8)
