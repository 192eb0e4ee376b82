"""A live round's secure aggregation at the coordinator: the four stages between real parties.

The devices run the client side (``common.secagg.SecAggClient``, driven by
``keyboard/secure_upload.py``) in their own processes; this is the relay and the aggregator
(``federated.secagg.SecAggServer``). Each stage collects one message per expected device and
closes when all have arrived, or when its deadline passes with enough of them:

1. ``keys``: each device's two X25519 public keys. Closes at the report goal (K devices that
   finished training) or the round's deadline; devices arriving after it are late. The roster
   fixes t = ``SecAggConfig.threshold(len(roster))``.
2. ``shares``: each roster member's sealed shares, one per roster member; the coordinator
   forwards them and cannot read them (AES-GCM under keys only the two devices agree).
3. ``masked``: each sharer's masked vector, added into a running sum mod 2^32. A device that
   shared keys and then vanished is dropped; its pairwise masks are removed through its peers'
   shares of its mask key.
4. ``unmask``: each survivor's shares (self-mask seeds of survivors, mask keys of the dropped).
   With t of them the sum is unmasked; no single update is ever seen.

Everything a device sends is checked (its task, the stage, sizes, dtypes, the index sets it
must cover); a refusal names the device, and it leaves that device out of the stages after.
The coordinator cannot check an update's norm under masking: the device clips it, and the
quantizer's range bounds what any one device can add to the sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common import messages, shamir
from common.secagg import SHARE_BLOB_BYTES, MaskedInput, PublicKeys, SecAggError, UnmaskShares, UpdateCodec
from federated.secagg import SecAggServer

STAGES = ("keys", "shares", "masked", "unmask")


@dataclass
class SecureCollection:
    """One round's stages; methods are called under the coordinator's lock."""

    order: list[str]  # selected device ids; a device's index is its place here
    codec: UpdateCodec
    report_goal: int  # K: the keys stage closes once this many devices have advertised
    threshold_of: object  # roster size -> t (SecAggConfig.threshold)
    stage: str = "keys"  # the open stage; "done" once unmasked
    failed: str | None = None
    keys: dict[int, PublicKeys] = field(default_factory=dict)
    sealed: dict[int, dict[int, bytes]] = field(default_factory=dict)
    masked: dict[int, np.ndarray] = field(default_factory=dict)
    unmasks: dict[int, UnmaskShares] = field(default_factory=dict)
    refused: set[int] = field(default_factory=set)
    server: SecAggServer | None = None
    mailboxes: dict[int, dict[int, bytes]] = field(default_factory=dict)
    total: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.index = {d: i for i, d in enumerate(self.order)}

    # -- what the open stage waits for ----------------------------------------------------------
    def expected(self) -> set[int]:
        if self.stage == "keys":
            return set(range(len(self.order))) - self.refused
        if self.stage == "shares":
            return set(self.server.roster) - self.refused
        if self.stage == "masked":
            return set(self.server.sharers) - self.refused
        return set(self.server.survivors) - self.refused

    def _received(self) -> dict:
        return {"keys": self.keys, "shares": self.sealed, "masked": self.masked, "unmask": self.unmasks}[self.stage]

    def complete(self) -> bool:
        """Whether the open stage can close now, without waiting for its deadline."""
        if self.stage == "keys":
            return len(self.keys) >= self.report_goal or not self.expected() - set(self.keys)
        return not self.expected() - set(self._received())

    def closed(self, stage: str) -> bool:
        return STAGES.index(stage) < (STAGES.index(self.stage) if self.stage in STAGES else len(STAGES))

    # -- a device's message ---------------------------------------------------------------------
    def submit(self, device_id: str, stage: str, header: dict, arrays: dict[str, np.ndarray]) -> None:
        """Stores a device's message for ``stage``; ``MessageError`` says why it cannot count."""
        if stage not in STAGES:
            raise messages.MessageError(f"no secure-aggregation stage {stage!r}")
        i = self.index.get(device_id)
        if i is None:
            raise messages.MessageError("not selected for this round")
        if self.failed:
            raise messages.MessageError(f"secure aggregation failed: {self.failed}")
        if self.closed(stage):
            received = {"keys": self.keys, "shares": self.sealed, "masked": self.masked, "unmask": self.unmasks}[stage]
            if i in received:
                return  # a repeat after a held call timed out: the reply is ready
            raise messages.MessageError(f"the {stage} stage closed before this message arrived (late)")
        if stage != self.stage:
            raise messages.MessageError(f"sent {stage} while the round is at {self.stage}")
        if i in self.refused:
            raise messages.MessageError("an earlier message of this device was refused")
        if i not in self.expected():
            raise messages.MessageError(f"not a party to the {stage} stage")
        if i in self._received():
            return  # a repeat (the device's held call timed out and it asked again)
        try:
            self._store(i, stage, header, arrays)
        except messages.MessageError:
            self.refused.add(i)
            raise

    def _store(self, i: int, stage: str, header: dict, arrays: dict[str, np.ndarray]) -> None:
        if stage == "keys":
            cipher, mask = (_bytes(arrays, name, 32) for name in ("cipher", "mask"))
            self.keys[i] = PublicKeys(cipher, mask)
        elif stage == "shares":
            roster = set(self.server.roster)
            got = {_index(name, "to") for name in arrays}
            if got != roster:
                raise messages.MessageError(f"shares for {sorted(got)}; the roster is {sorted(roster)}")
            self.sealed[i] = {_index(name, "to"): _bytes(arrays, name, SHARE_BLOB_BYTES) for name in arrays}
        elif stage == "masked":
            vector = arrays.get("vector")
            if vector is None or vector.dtype != np.uint32 or vector.shape != (self.codec.length,):
                raise messages.MessageError(f"a masked input is uint32[{self.codec.length}]")
            self.masked[i] = vector
        else:
            self_seed = _shares(messages.field(header, "self_seed", dict))
            mask_key = _shares(messages.field(header, "mask_key", dict))
            survivors, dropped = self.server.survivors, self.server.sharers - self.server.survivors
            if set(self_seed) != survivors or set(mask_key) != dropped:
                raise messages.MessageError("unmasking shares must cover the survivors' self masks and the dropped "
                                            "devices' mask keys, and nothing else")
            self.unmasks[i] = UnmaskShares(i, self_seed, mask_key)

    # -- the round driver -----------------------------------------------------------------------
    def close_stage(self) -> None:
        """Closes the open stage with what arrived; ``SecAggError`` if too few took part."""
        try:
            if self.stage == "keys":
                roster = {i: k for i, k in self.keys.items() if i not in self.refused}
                if len(roster) < 2:
                    raise SecAggError(f"{len(roster)} device(s) advertised keys; secure aggregation needs at least 2")
                t = self.threshold_of(len(roster))
                self.server = SecAggServer(len(self.order), t, names=self.order)
                self.server.collect_keys(roster)
                self.stage = "shares"
            elif self.stage == "shares":
                kept = {i: s for i, s in self.sealed.items() if i not in self.refused}
                self.mailboxes = self.server.route_shares(kept)
                self.stage = "masked"
            elif self.stage == "masked":
                self.server.collect_masked(MaskedInput(i, v) for i, v in sorted(self.masked.items()))
                self.stage = "unmask"
            elif self.stage == "unmask":
                self.total = self.server.unmask(self.unmasks.values())
                self.stage = "done"
        except SecAggError as exc:
            self.failed = str(exc)
            raise

    def reply(self, device_id: str, stage: str) -> tuple[dict, dict[str, np.ndarray]]:
        """What a device gets once ``stage`` has closed."""
        i = self.index[device_id]
        if stage == "keys":
            if i not in self.server.roster:
                return {"status": "failed", "reason": "the keys stage closed without this device (late)"}, {}
            roster = {str(v): [k.cipher.hex(), k.mask.hex()] for v, k in self.server.roster.items()}
            return {"status": "ok", "roster": roster, "threshold": self.server.threshold}, {}
        if stage == "shares":
            box = self.mailboxes.get(i)
            if box is None:
                return {"status": "failed", "reason": "the shares stage closed without this device's shares"}, {}
            return {"status": "ok"}, {f"from{u}": np.frombuffer(blob, np.uint8) for u, blob in box.items()}
        if stage == "masked":
            if i not in self.server.survivors:
                return {"status": "failed", "reason": "the masked stage closed without this device's input"}, {}
            return {"status": "ok", "survivors": sorted(self.server.survivors)}, {}
        return {"status": "ok"}, {}

    def survivors(self) -> list[str]:
        return [self.order[i] for i in sorted(self.server.survivors)] if self.server else []


def _bytes(arrays: dict[str, np.ndarray], name: str, size: int) -> bytes:
    a = arrays.get(name)
    if a is None or a.dtype != np.uint8 or a.shape != (size,):
        raise messages.MessageError(f"{name} must be uint8[{size}]")
    return a.tobytes()


def _index(name: str, prefix: str) -> int:
    if not name.startswith(prefix) or not name[len(prefix):].isdigit():
        raise messages.MessageError(f"array {name!r} is not {prefix}<index>")
    return int(name[len(prefix):])


def _shares(d: dict) -> dict[int, int]:
    out = {}
    for k, v in d.items():
        if not (isinstance(k, str) and k.isdigit() and isinstance(v, str) and 0 < len(v) <= 2 * shamir.SHARE_BYTES):
            raise messages.MessageError("shares are {index: hex} with at most 66 bytes each")
        try:
            value = int(v, 16)
        except ValueError:
            raise messages.MessageError("a share is not hexadecimal") from None
        if value >= shamir.PRIME:
            raise messages.MessageError("a share lies outside the field")
        out[int(k)] = value
    return out
