"""Shamir secret sharing, t-of-n over the prime field Z_p with p = 2^521 - 1.

Secure aggregation shares 256-bit secrets (a mask seed, an X25519 secret key) among the round's
clients; the Mersenne prime M521 is a field comfortably larger than those. Written here because
no well-kept Shamir library is among the project's dependencies (pycryptodome has one, over
GF(2^128) for 16-byte secrets only, and is not installed). Python integers do the arithmetic.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

PRIME = (1 << 521) - 1  # Mersenne prime M521, > any 256-bit secret
SHARE_BYTES = 66  # bytes that hold an element of Z_PRIME


def split(secret: int, n: int, t: int, entropy: Callable[[int], bytes] = os.urandom) -> list[int]:
    """Shares of ``secret`` at x = 1..n; any ``t`` of them rebuild it, fewer reveal nothing."""
    if not 1 <= t <= n:
        raise ValueError(f"threshold must be in [1, {n}], got {t}")
    if not 0 <= secret < PRIME:
        raise ValueError("secret must lie in [0, 2^521 - 1)")
    coeffs = [secret] + [int.from_bytes(entropy(SHARE_BYTES + 8), "little") % PRIME for _ in range(t - 1)]
    shares = []
    for x in range(1, n + 1):
        y = 0
        for c in reversed(coeffs):  # Horner
            y = (y * x + c) % PRIME
        shares.append(y)
    return shares


def combine(shares: Mapping[int, int]) -> int:
    """The secret from shares ``{x: y}`` by Lagrange interpolation at 0 (needs >= t of them)."""
    secret = 0
    for xi, yi in shares.items():
        num = den = 1
        for xj in shares:
            if xj != xi:
                num, den = num * -xj % PRIME, den * (xi - xj) % PRIME
        secret = (secret + yi * num * pow(den, -1, PRIME)) % PRIME
    return secret
