"""Secure aggregation's server side and an in-process run of the whole protocol.

The protocol, its messages and the client's side are ``common.secagg`` (a device agent runs
them without importing server code); this module holds :class:`SecAggServer`, which relays
public keys and sealed shares and learns only the sum, and ``secure_sum`` /
``secure_float_sum``, which run all four rounds among simulated clients in one process.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from common import shamir
from common.secagg import (  # noqa: F401  (re-exported: the simulation's modules use them from here)
    MODULUS,
    MODULUS_BITS,
    Entropy,
    MaskedInput,
    MaskSeeds,
    PublicKeys,
    Quantizer,
    SecAggClient,
    SecAggError,
    UnmaskShares,
    _agree,
    add_mod,
    apply_masks,
    default_threshold,
    expand,
    words,
)


class SecAggServer:
    """The aggregator's side: it handles public keys, sealed shares, masked vectors, shares, a sum.

    No method takes a plaintext client vector; the only vector state it keeps is the running
    masked sum, which is uniform until ``unmask`` removes the masks of the sum as a whole.
    """

    def __init__(self, n: int, threshold: int, *, names: Sequence[str] | None = None):
        if not 2 <= threshold <= n:
            raise ValueError(f"threshold must be in [2, {n}] for {n} clients, got {threshold}")
        self.n, self.threshold = n, threshold
        self.names = list(names) if names is not None else [str(i) for i in range(n)]
        self.roster: dict[int, PublicKeys] = {}
        self.sharers: set[int] = set()
        self.survivors: set[int] = set()
        self.masked_sum: np.ndarray | None = None

    def require_quorum(self, have: Collection[int], among: Collection[int], stage: str) -> None:
        """Raises ``SecAggError`` naming the missing clients unless at least t of ``among`` are in ``have``."""
        if len(have) < self.threshold:
            missing = sorted(set(among) - set(have))
            raise SecAggError(
                f"secure aggregation failed at {stage}: {len(have)} of {len(among)} clients took part, fewer "
                f"than the threshold t={self.threshold} (tolerates {len(among) - self.threshold} dropouts); "
                f"missing: {', '.join(self.names[i] for i in missing)}"
            )

    def collect_keys(self, keys: Mapping[int, PublicKeys]) -> dict[int, PublicKeys]:
        """Round 0: the roster every client receives."""
        self.require_quorum(keys, range(self.n), "key advertisement")
        self.roster = dict(keys)
        return dict(self.roster)

    def route_shares(self, sealed: Mapping[int, Mapping[int, bytes]]) -> dict[int, dict[int, bytes]]:
        """Round 1: forwards each sealed share to its recipient (``{recipient: {sender: blob}}``)."""
        self.require_quorum(sealed, self.roster, "key sharing")
        self.sharers = set(sealed)
        return {v: {u: sealed[u][v] for u in sealed} for v in self.sharers}

    def collect_masked(self, inputs: Iterable[MaskedInput]) -> None:
        """Round 2, one message per client: adds each masked vector into the running sum."""
        for item in inputs:
            if item.client not in self.sharers or item.client in self.survivors:
                raise SecAggError(f"unexpected masked input from client {self.names[item.client]}")
            self.masked_sum = item.vector.copy() if self.masked_sum is None else add_mod(self.masked_sum, item.vector)
            self.survivors.add(item.client)
        self.require_quorum(self.survivors, self.sharers, "masked input collection")

    def collect_masked_sum(self, masked_sum: np.ndarray, survivors: Collection[int]) -> None:
        """Round 2 when the sum was formed elsewhere (TFF's ``federated_sum`` of masked vectors)."""
        self.survivors = set(survivors)
        self.require_quorum(self.survivors, self.sharers, "masked input collection")
        self.masked_sum = np.asarray(masked_sum, dtype=np.uint32)

    def unmask(self, shares: Iterable[UnmaskShares]) -> np.ndarray:
        """Round 3: the sum of the survivors' vectors mod 2^32, or a ``SecAggError`` naming who is short."""
        if self.masked_sum is None:
            raise SecAggError("unmask called before any masked input arrived")
        responses = {s.client: s for s in shares if s.client in self.survivors}
        self.require_quorum(responses, self.survivors, "unmasking")
        dropped = sorted(self.sharers - self.survivors)
        total, length = self.masked_sum, self.masked_sum.size
        for u in sorted(self.survivors):  # remove self masks
            seed_shares = {w + 1: r.self_seed[u] for w, r in responses.items() if u in r.self_seed}
            b = self._rebuild(u, seed_shares, "self-mask seed")
            total = add_mod(total, expand(b, length), -1)
        for v in dropped:  # remove the pairwise masks survivors shared with dropped clients
            s = self._rebuild(v, {w + 1: r.mask_key[v] for w, r in responses.items() if v in r.mask_key}, "mask key")
            secret = X25519PrivateKey.from_private_bytes(s)
            for u in sorted(self.survivors):
                pairwise = expand(_agree(secret, self.roster[u].mask, b"pairwise mask"), length)
                total = add_mod(total, pairwise, -1 if u < v else 1)
        return total

    def _rebuild(self, client: int, shares: dict[int, int], what: str) -> bytes:
        if len(shares) < self.threshold:
            raise SecAggError(
                f"cannot rebuild the {what} of client {self.names[client]}: {len(shares)} shares, "
                f"threshold t={self.threshold}"
            )
        return shamir.combine(shares).to_bytes(32, "little")


# --- The in-process simulation -------------------------------------------------------------


def secure_sum(
    vectors: Sequence[np.ndarray],
    *,
    threshold: int | None = None,
    drop_after_sharing: Collection[int] = (),
    drop_during_unmasking: Collection[int] = (),
    entropy: Entropy = os.urandom,
) -> tuple[np.ndarray, list[int]]:
    """All four rounds in-process among ``len(vectors)`` clients; returns (sum mod 2^32, survivors).

    ``drop_after_sharing`` clients vanish after key sharing (their masked inputs never arrive);
    ``drop_during_unmasking`` ones send their masked input but no shares.
    """
    n = len(vectors)
    t = threshold or default_threshold(n)
    clients = [SecAggClient(i, n, t, entropy=entropy) for i in range(n)]
    server = SecAggServer(n, t)
    roster = server.collect_keys({c.index: c.advertise_keys() for c in clients})
    mailboxes = server.route_shares({c.index: c.share_keys(roster) for c in clients})
    for c in clients:
        c.receive_shares(mailboxes[c.index])
    server.collect_masked(c.mask(np.asarray(vectors[c.index], np.uint32))
                          for c in clients if c.index not in drop_after_sharing)
    survivors = sorted(server.survivors)
    total = server.unmask(clients[u].unmask_shares(survivors) for u in survivors if u not in drop_during_unmasking)
    return total, survivors


