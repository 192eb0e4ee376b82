"""Secure aggregation: the Bonawitz et al. (CCS 2017) protocol, honest-but-curious server.

The server learns the sum of the selected clients' integer vectors mod R = 2^32 and nothing
else, even if up to n - t clients drop out after the key exchange. Rounds, as in the paper:

0. Advertise keys: each client makes two fresh X25519 key pairs, one to encrypt the shares it
   sends to peers (c), one to agree on pairwise masks (s).
1. Share keys: each client draws a self-mask seed b and Shamir-shares b and its secret s key
   t-of-n among the clients, each share encrypted with AES-GCM under a key agreed with the
   recipient's c key, so the server that relays them reads none.
2. Masked input: client u sends y_u = x_u + PRG(b_u) + sum_v sign(u,v) PRG(s_uv) mod R, with
   s_uv = HKDF(X25519(s_u, s_v)) and sign(u,v) = +1 if u < v else -1: pairwise masks cancel
   in the sum, the self-mask hides x_u if the server later learns s_u.
3. Unmasking: each survivor hands over, for every other survivor, its share of b, and for every
   dropped client, its share of s (never both for one client). The server rebuilds the seeds,
   removes the survivors' self masks and the pairwise masks the dropped clients left behind.
(The paper's consistency-check round, with signatures, guards against an active server; the
honest-but-curious variant here omits it.)

The PRG is ChaCha20 (RFC 8439, from ``cryptography``) keyed by the 32-byte derived seed, zero
nonce: the security argument needs a cryptographic PRG, keys are fresh every round so one
nonce is enough, and ChaCha20 is made of 32-bit add/xor/rotate, so ``secagg_factory`` computes
the same keystream bit for bit in TensorFlow ops inside the client's TFF computation.

Shamir sharing is ``common.shamir`` (written here: no well-kept Shamir library is a
dependency), over the prime field of p = 2^521 - 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common import shamir

MODULUS_BITS = 32
MODULUS = 1 << MODULUS_BITS  # R: every masked value and sum lives in Z_R, i.e. uint32
Entropy = Callable[[int], bytes]


class SecAggError(RuntimeError):
    """A secure-aggregation round cannot go on; the message says who is missing and why."""


@dataclass(frozen=True)
class PublicKeys:
    """What a client advertises in round 0: two raw X25519 public keys."""

    cipher: bytes  # c_u^PK: agrees the AES-GCM key for shares sent to this client
    mask: bytes  # s_u^PK: agrees the pairwise mask seeds


@dataclass(frozen=True)
class MaskSeeds:
    """A client's masks for one round: keys (ChaCha20, as 8 little-endian uint32 words) and signs.

    Client-side secret: it goes into the client's own TFF computation, never to the server.
    """

    keys: np.ndarray  # uint32 [m, 8]: the self-mask seed first, then one per peer
    signs: np.ndarray  # int32 [m]: +1 for the self mask and higher peers, -1 for lower peers


@dataclass(frozen=True)
class MaskedInput:
    """Round 2's message: a client's vector plus masks, uniform over Z_R to anyone without seeds."""

    client: int
    vector: np.ndarray  # uint32


@dataclass(frozen=True)
class UnmaskShares:
    """Round 3's message from one survivor: its shares of survivors' b and dropped clients' s."""

    client: int
    self_seed: dict[int, int]  # survivor v -> this client's share of b_v
    mask_key: dict[int, int]  # dropped v -> this client's share of s_v^SK


def default_threshold(n: int) -> int:
    """t = floor(n/2) + 1: a majority must survive; tolerates n - t dropouts."""
    return n // 2 + 1


# --- PRG, key agreement and Z_R arithmetic -------------------------------------------------


def expand(key: bytes, length: int) -> np.ndarray:
    """``length`` uint32 words of ChaCha20 keystream (zero nonce, counter from 0) under ``key``."""
    encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return np.frombuffer(encryptor.update(bytes(4 * length)), dtype="<u4").astype(np.uint32)


def _derive(shared: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fedkb-secagg " + purpose).derive(shared)


def _agree(secret: X25519PrivateKey, public: bytes, purpose: bytes) -> bytes:
    return _derive(secret.exchange(X25519PublicKey.from_public_bytes(public)), purpose)


def add_mod(a: np.ndarray, b: np.ndarray, sign: int = 1) -> np.ndarray:
    """``a + sign * b mod 2^32`` computed in uint64, so nothing relies on silent wrap-around."""
    a64, b64 = a.astype(np.uint64), b.astype(np.uint64)
    out = a64 + b64 if sign > 0 else a64 + np.uint64(MODULUS) - b64
    return (out % np.uint64(MODULUS)).astype(np.uint32)


def words(key: bytes) -> np.ndarray:
    return np.frombuffer(key, dtype="<u4").astype(np.uint32)


def apply_masks(vector: np.ndarray, seeds: MaskSeeds) -> np.ndarray:
    """``vector + sum_j signs[j] * PRG(keys[j]) mod 2^32``: what the client's TFF computation does."""
    out = np.asarray(vector, dtype=np.uint32)
    for key, sign in zip(seeds.keys, seeds.signs):
        out = add_mod(out, expand(key.astype("<u4").tobytes(), out.size), int(sign))
    return out


# --- The two parties -----------------------------------------------------------------------


class SecAggClient:
    """One selected device's side of the protocol; it alone ever sees its plaintext vector."""

    def __init__(self, index: int, n: int, threshold: int, *, entropy: Entropy = os.urandom):
        if not 0 <= index < n:
            raise ValueError(f"client index must be in [0, {n}), got {index}")
        self.index, self.n, self.threshold, self._entropy = index, n, threshold, entropy
        self._c = X25519PrivateKey.from_private_bytes(entropy(32))
        self._s = X25519PrivateKey.from_private_bytes(entropy(32))
        self._b = entropy(32)
        self._roster: dict[int, PublicKeys] = {}
        self._held: dict[int, tuple[int, int]] = {}  # sender -> (share of s_sender, share of b_sender)
        self._peers: list[int] = []

    def advertise_keys(self) -> PublicKeys:
        return PublicKeys(self._c.public_key().public_bytes_raw(), self._s.public_key().public_bytes_raw())

    def share_keys(self, roster: Mapping[int, PublicKeys], *, threshold: int | None = None) -> dict[int, bytes]:
        """Round 1: t-of-n shares of s_u^SK and b_u, one AES-GCM ciphertext per client in ``roster``.

        A live coordinator fixes t only once it knows the roster, and sends it with the roster:
        ``threshold`` then replaces the one given at construction, and a t below a majority of
        the roster (which would let fewer clients, or the server with a few of them, rebuild a
        secret) is refused.
        """
        if threshold is not None:
            if not max(2, len(roster) // 2 + 1) <= threshold <= len(roster):
                raise SecAggError(f"client {self.index}: threshold t={threshold} for a roster of {len(roster)} is "
                                  "below a majority; refusing to share keys")
            self.threshold = threshold
        if self.index not in roster:
            raise SecAggError(f"client {self.index} is not in the roster it was sent")
        if len(roster) < self.threshold:
            raise SecAggError(f"client {self.index}: {len(roster)} clients advertised keys, "
                              f"fewer than t={self.threshold}")
        self._roster = dict(roster)
        s_secret = int.from_bytes(self._s.private_bytes_raw(), "little")
        s_shares = shamir.split(s_secret, self.n, self.threshold, self._entropy)
        b_shares = shamir.split(int.from_bytes(self._b, "little"), self.n, self.threshold, self._entropy)
        out = {}
        for v, keys in roster.items():
            plain = (s_shares[v].to_bytes(shamir.SHARE_BYTES, "little")
                     + b_shares[v].to_bytes(shamir.SHARE_BYTES, "little"))
            nonce = self._entropy(12)
            aead = AESGCM(_agree(self._c, keys.cipher, b"share encryption"))
            out[v] = nonce + aead.encrypt(nonce, plain, f"{self.index}->{v}".encode())
        return out

    def receive_shares(self, mailbox: Mapping[int, bytes]) -> None:
        """Decrypts the shares addressed to this client; their senders are the peers it masks with."""
        for u, blob in mailbox.items():
            aead = AESGCM(_agree(self._c, self._roster[u].cipher, b"share encryption"))
            plain = aead.decrypt(blob[:12], blob[12:], f"{u}->{self.index}".encode())
            k = shamir.SHARE_BYTES
            self._held[u] = (int.from_bytes(plain[:k], "little"), int.from_bytes(plain[k:], "little"))
        self._peers = sorted(v for v in self._held if v != self.index)

    def mask_seeds(self) -> MaskSeeds:
        """Round 2's secrets: the self-mask seed and one pairwise seed per peer that shared keys."""
        if self.index not in self._held:
            raise SecAggError(f"client {self.index}: masking before its shares were delivered (run receive_shares)")
        keys = [words(self._b)]
        signs = [1]
        for v in self._peers:
            keys.append(words(_agree(self._s, self._roster[v].mask, b"pairwise mask")))
            signs.append(1 if self.index < v else -1)
        return MaskSeeds(np.stack(keys), np.asarray(signs, dtype=np.int32))

    def mask(self, quantized: np.ndarray) -> MaskedInput:
        """Round 2 in numpy: the masked vector (the TFF path does the same inside TF)."""
        return MaskedInput(self.index, apply_masks(quantized, self.mask_seeds()))

    def unmask_shares(self, survivors: Collection[int]) -> UnmaskShares:
        """Round 3: b-shares for survivors, s-shares for the dropped; refuses if too few survived."""
        survivors = set(survivors)
        if len(survivors) < self.threshold:
            raise SecAggError(f"client {self.index}: {len(survivors)} survivors, "
                              f"fewer than t={self.threshold}; not revealing shares")
        if self.index not in survivors:
            raise SecAggError(f"client {self.index} was declared dropped; it sends no shares")
        return UnmaskShares(
            self.index,
            self_seed={v: b for v, (_, b) in self._held.items() if v in survivors},
            mask_key={v: s for v, (s, _) in self._held.items() if v not in survivors},
        )


# --- Quantization --------------------------------------------


@dataclass(frozen=True)
class Quantizer:
    """Clip to [-bound, bound], scale by a power of two, round to integers in Z_{2^32}.

    The scale is the largest power of two with ``bound * scale * max_clients < 2^31``, so the
    signed sum of up to ``max_clients`` clients never wraps and decodes exactly.
    """

    bound: float  # per-coordinate range: values are clipped to [-bound, bound]
    max_clients: int  # most clients whose vectors are ever summed together
    stochastic: bool = False  # unbiased stochastic rounding instead of round-to-nearest

    def __post_init__(self) -> None:
        if not self.bound > 0 or self.max_clients < 1:
            raise ValueError(f"bound must be positive and max_clients at least 1, got {self.bound}, {self.max_clients}")

    @property
    def scale(self) -> float:
        return 2.0 ** math.floor(math.log2(((1 << 31) - 1) // self.max_clients / self.bound))

    def error_bound(self, clients: int) -> float:
        """Worst |dequantized sum - sum of clipped values| per coordinate: K/(2s), or K/s stochastic."""
        return clients / self.scale * (1.0 if self.stochastic else 0.5)

    def quantize(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        y = np.clip(np.asarray(x, dtype=np.float64), -self.bound, self.bound) * self.scale
        q = np.floor(y + (rng or np.random.default_rng()).random(y.shape)) if self.stochastic else np.rint(y)
        return np.mod(q.astype(np.int64), MODULUS).astype(np.uint32)

    def dequantize(self, total: np.ndarray) -> np.ndarray:
        signed = np.asarray(total, dtype=np.int64)
        signed = np.where(signed >= MODULUS // 2, signed - MODULUS, signed)
        return signed / self.scale


# --- One update as one vector ----------------------------------------------------------------

SHARE_BLOB_BYTES = 12 + 2 * shamir.SHARE_BYTES + 16  # a sealed share pair: nonce | ciphertext | GCM tag
METRIC_NAMES = ("loss_x_examples", "examples", "tokens", "correct", "batches")


@dataclass(frozen=True)
class UpdateCodec:
    """How a device's update becomes one vector in Z_2^32 for secure aggregation, and back.

    It does what the simulation's ``secagg_factory.secure_aggregator`` does inside TFF: clip the
    delta to L2 norm ``clip`` (TFF's ``clipping_factory``), weight it (``MeanFactory``), quantize
    weight x delta in [-clip x max_weight, clip x max_weight] and the weight in
    [-max_weight, max_weight] with ``max_clients`` clients' headroom. The round's metric sums
    ride in the same vector (quantized in [-metric_bound, metric_bound]), so the coordinator
    learns them only summed, like the model. The coordinator sends the codec with the task;
    the device encodes, the coordinator decodes the unmasked sum.
    """

    names: tuple[str, ...]  # the model's trainable tensors, in order
    shapes: tuple[tuple[int, ...], ...]  # and their shapes
    clip: float
    max_weight: float
    max_clients: int
    metric_bound: float = float(1 << 20)

    @property
    def _quantizers(self) -> tuple[Quantizer, Quantizer, Quantizer]:
        return (Quantizer(self.clip * self.max_weight, self.max_clients), Quantizer(self.max_weight, self.max_clients),
                Quantizer(self.metric_bound, self.max_clients))

    @property
    def length(self) -> int:
        return sum(math.prod(s) for s in self.shapes) + 1 + len(METRIC_NAMES)

    def encode(self, delta: Mapping[str, np.ndarray], weight: float, metrics: Mapping[str, float]) -> np.ndarray:
        if set(delta) != set(self.names):
            raise SecAggError(f"the update's tensors {sorted(delta)} are not the task's {sorted(self.names)}")
        for name, shape in zip(self.names, self.shapes):
            if tuple(np.shape(delta[name])) != tuple(shape):
                raise SecAggError(f"{name} is {list(np.shape(delta[name]))}; the task's is {list(shape)}")
        value_q, weight_q, metric_q = self._quantizers
        flat = [np.asarray(delta[name], np.float32).ravel() for name in self.names]
        norm = np.float32(math.sqrt(sum(float(np.sum(np.square(f, dtype=np.float64))) for f in flat)))
        if norm > self.clip:  # as tf.clip_by_global_norm scales, in float32
            flat = [f * np.float32(self.clip / norm) for f in flat]
        w = np.float32(weight)
        vector = np.concatenate([f * w for f in flat]) if flat else np.zeros(0, np.float32)
        return np.concatenate([value_q.quantize(vector), weight_q.quantize(np.asarray([w])),
                               metric_q.quantize(np.asarray([float(metrics.get(k, 0.0)) for k in METRIC_NAMES]))])

    def decode(self, total: np.ndarray) -> tuple[list[np.ndarray], float, dict[str, float]]:
        """(the weighted mean delta, the weight sum, the metric sums) from the sum of encodings."""
        value_q, weight_q, metric_q = self._quantizers
        total = np.asarray(total, np.uint32)
        if total.shape != (self.length,):
            raise SecAggError(f"a sum of {total.shape} words; this codec's vectors have {self.length}")
        n = self.length - 1 - len(METRIC_NAMES)
        value_sum = value_q.dequantize(total[:n])
        weight_sum = float(weight_q.dequantize(total[n:n + 1])[0])
        metric_sums = dict(zip(METRIC_NAMES, (float(v) for v in metric_q.dequantize(total[n + 1:]))))
        mean = (value_sum / weight_sum if weight_sum > 0 else np.zeros_like(value_sum)).astype(np.float32)
        out, at = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            out.append(mean[at:at + size].reshape(shape))
            at += size
        return out, weight_sum, metric_sums

    def as_dict(self) -> dict:
        return {"names": list(self.names), "shapes": [list(s) for s in self.shapes], "clip": self.clip,
                "max_weight": self.max_weight, "max_clients": self.max_clients, "metric_bound": self.metric_bound}

    @classmethod
    def from_dict(cls, d: Mapping) -> UpdateCodec:
        try:
            names = tuple(str(x) for x in d["names"])
            shapes = tuple(tuple(int(x) for x in s) for s in d["shapes"])
            if len(names) != len(shapes):
                raise ValueError("as many names as shapes are needed")
            return cls(names, shapes, float(d["clip"]), float(d["max_weight"]),
                       int(d["max_clients"]), float(d["metric_bound"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SecAggError(f"not an update codec: {exc}") from None
