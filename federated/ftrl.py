"""DP-FTRL: tree-aggregated noise, participation at most once every b rounds, and its ρ-zCDP.

Kairouz et al. 2021, "Practical and Private (Deep) Learning without Sampling or Shuffling", as
Gboard trains its language models (Xu et al. 2023): each round's clipped device updates are added
to a binary tree of cumulative sums whose every node carries Gaussian noise of ``z × clip``
(TFF's ``DifferentiallyPrivateFactory.tree_aggregation``, no tree restarts). The aggregator hands
the server the difference of consecutive noised cumulative sums, so a plain SGD(M) server step
moves the model to the initial weights plus the learning rate times the noised cumulative sum
(with momentum, a fixed linear function of it): the FTRL update. No amplification by sampling is
claimed; instead a device takes part at most once every ``b`` rounds (``Participation``), so
over T rounds at most ⌈T / b⌉ times, and the tree accountant bounds what that can reveal.

Privacy unit: one device, all its participations; neighbouring runs replace every contribution of
one device by zero (``dp_accounting``'s REPLACE_SPECIAL), each contribution bounded by the clip.

This module holds no TensorFlow at import time.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.atomic import atomic_write
from common.errors import FedkbError

MECHANISMS = ("gaussian", "ftrl")
PARTICIPATION_FILE = "participation.json"


class FtrlError(FedkbError, ValueError):
    """Settings DP-FTRL cannot run with, or a participation record that cannot be read."""


# -- settings ------------------------------------------------------------------------------------
def check_settings(*, mechanism: str, noise: float, clip, min_separation: int | None, secure_agg: bool) -> None:
    """Raises ``FtrlError`` naming the options when ``--dp-mechanism`` and the rest do not go together."""
    if mechanism not in MECHANISMS:
        raise FtrlError(f"--dp-mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
    if mechanism != "ftrl":
        if min_separation is not None:
            raise FtrlError("--min-separation belongs to --dp-mechanism ftrl; DP-FedAvg (gaussian) relies on "
                            "sampling instead")
        return
    if min_separation is None or isinstance(min_separation, bool) or not isinstance(min_separation, int) \
            or min_separation < 1:
        raise FtrlError(f"--dp-mechanism ftrl needs --min-separation B, a whole number of rounds ≥ 1 "
                        f"(a device takes part at most once every B rounds), got {min_separation!r}")
    if noise <= 0:
        raise FtrlError(f"--dp-mechanism ftrl needs --dp-noise Z > 0 (the noise on every tree node), got {noise!r}")
    if not isinstance(clip, (int, float)):
        raise FtrlError(f"--dp-mechanism ftrl needs a fixed --dp-clip C (the tree's sensitivity), got {clip!r}: "
                        "TFF's tree aggregation without restarts has no adaptive clipping")
    if secure_agg:
        raise FtrlError("--dp-mechanism ftrl does not run with --secure-agg here: the secure sum is wired to the "
                        "Gaussian DP-FedAvg aggregator only")


def check_server_optimizer(server_optimizer: str) -> None:
    """DP-FTRL's server step is SGD (with momentum): ``--server-optimizer sgdm``."""
    if server_optimizer != "sgdm":
        raise FtrlError(f"--dp-mechanism ftrl needs --server-optimizer sgdm (the FTRL update is SGD with momentum "
                        f"over the noised cumulative sums), got {server_optimizer!r}")


# -- the aggregator -------------------------------------------------------------------------------
def record_specs(model_fn) -> list:
    """The ``tf.TensorSpec`` of each trainable variable of a TFF model from ``model_fn``, in model order."""
    import tensorflow as tf

    return [tf.TensorSpec(v.shape, v.dtype) for v in model_fn().trainable_variables]


def tree_aggregator(*, noise: float, clip: float, clients_per_round: int, specs: Sequence):
    """TFF's tree-aggregation DP factory, weighted for ``build_weighted_fed_avg`` (uniform weights).

    The noise seed comes from ``secrets`` (TFF's default is the clock); it lives in the aggregator's
    state from ``initialize`` on, so the tree resumes from a checkpoint with its own noise.
    """
    import tensorflow_federated as tff

    inner = tff.aggregators.DifferentiallyPrivateFactory.tree_aggregation(
        noise_multiplier=float(noise), clients_per_round=float(clients_per_round), l2_norm_clip=float(clip),
        record_specs=list(specs), noise_seed=secrets.randbits(62),
    )
    return tff.aggregators.as_weighted_aggregator(inner)


# -- minimum separation ---------------------------------------------------------------------------
class Participation:
    """The rounds each device took part in, kept by the server beside its checkpoints.

    A device that took part in round r is not offered to the sampler again before round r + b.
    The record is written before the round's checkpoint; on resume, rounds after the checkpoint
    (a round re-run after a crash) are dropped, so the re-run sees what the first run saw.
    """

    def __init__(self, path: Path, min_separation: int, rounds: dict[str, list[int]] | None = None):
        self.path, self.min_separation = Path(path), min_separation
        self.rounds: dict[str, list[int]] = rounds or {}

    @classmethod
    def load(cls, state_dir: Path, min_separation: int, *, done: int) -> Participation:
        """The record in ``state_dir`` up to round ``done`` (a new one when there is none)."""
        path = Path(state_dir) / PARTICIPATION_FILE
        if not path.is_file():
            return cls(path, min_separation)
        try:
            data = json.loads(path.read_text())
            rounds = {str(d): sorted(int(r) for r in rs if int(r) <= done) for d, rs in data["rounds"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FtrlError(f"{path}: unreadable participation record ({exc}); pass --fresh to start over") from None
        return cls(path, min_separation, {d: rs for d, rs in rounds.items() if rs})

    def last_round(self, device_id: str) -> int | None:
        rs = self.rounds.get(device_id)
        return rs[-1] if rs else None

    def may_take_part(self, device_id: str, round_num: int) -> bool:
        last = self.last_round(device_id)
        return last is None or round_num - last >= self.min_separation

    def offered(self, population: Sequence, arrays: dict[str, np.ndarray] | None, round_num: int):
        """The members (and their availability columns) the sampler may pick from in ``round_num``."""
        keep = [i for i, m in enumerate(population) if self.may_take_part(m.device_id, round_num)]
        members = [population[i] for i in keep]
        if arrays is None:
            return members, None
        index = np.asarray(keep, dtype=np.int64)
        return members, {k: v[index] for k, v in arrays.items()}

    def record(self, round_num: int, device_ids: Sequence[str]) -> None:
        """Adds round ``round_num``'s participants (refusing a device inside its separation) and saves."""
        for device_id in device_ids:
            rs = self.rounds.setdefault(device_id, [])
            if round_num in rs:
                continue  # the same round recorded again (a re-run)
            if not self.may_take_part(device_id, round_num):
                raise FtrlError(f"device {device_id} took part in round {self.last_round(device_id)} and may not "
                                f"again before round {self.last_round(device_id) + self.min_separation} "
                                f"(--min-separation {self.min_separation}); round {round_num} selected it")
            rs.append(round_num)
            rs.sort()
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"min_separation": self.min_separation, "rounds": self.rounds}
        atomic_write(self.path, json.dumps(data, sort_keys=True).encode())

    def max_participations(self) -> int:
        return max((len(rs) for rs in self.rounds.values()), default=0)


# -- accounting -----------------------------------------------------------------------------------
def max_participations(rounds: int, min_separation: int) -> int:
    """At most this many rounds of ``rounds`` can include one device: ⌈T / b⌉."""
    return math.ceil(rounds / min_separation)


def zcdp(noise: float, rounds: int, min_separation: int) -> float:
    """ρ of ``rounds`` rounds of one tree (no restarts) with node noise ``noise`` × clip.

    ``tensorflow_privacy``'s tree accountant (Kairouz et al. 2021, appendix D.2) finds the worst
    placement of ⌈T / b⌉ participations at least b rounds apart over the tree's leaves, and the
    sum S of the squared number of a device's contributions in each node: ρ = S / (2 z²).
    """
    from tensorflow_privacy.privacy.analysis import tree_aggregation_accountant as tree

    # In the accountant's terms, rounds x and y of one device have y - x - 1 rounds between them.
    return float(tree.compute_zcdp_single_tree(noise_multiplier=noise, total_steps=rounds,
                                               max_participation=max_participations(rounds, min_separation),
                                               min_separation=min_separation - 1))


def epsilon_from_zcdp(rho: float, delta: float) -> float:
    """(ε, δ) of a ρ-zCDP mechanism, by ``dp_accounting``'s RDP conversion.

    ρ-zCDP is RDP of α ρ at every order α, which is exactly the RDP curve of a Gaussian mechanism
    with noise multiplier 1 / √(2ρ); ``dp_accounting`` converts that curve to ε at ``delta``.
    """
    import dp_accounting
    from dp_accounting import rdp

    if not math.isfinite(rho):
        return math.inf
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(1.0 / math.sqrt(2.0 * rho)))
    return float(accountant.get_epsilon(delta))


def spent(*, noise: float, clip, rounds: int, min_separation: int, delta: float, population: int,
          secure_agg: bool = False) -> dict:
    """The privacy of ``rounds`` DP-FTRL rounds, in the keys ``privacy.spent`` reports."""
    out = {"mechanism": "ftrl", "epsilon": None, "epsilon_fixed_size": None, "rho": None, "delta": delta,
           "accountant": "zcdp-tree", "noise_multiplier": noise, "clip": clip, "rounds": rounds,
           "population": population, "secure_aggregation": secure_agg, "min_separation": min_separation,
           "max_participations": max_participations(rounds, min_separation) if rounds else 0,
           "adjacency": "all contributions of one device replaced by zero (sensitivity: the clip per round)",
           "sampling": f"none assumed: a device takes part at most once every {min_separation} rounds, "
                       "no amplification by sampling"}
    if noise <= 0 or rounds < 1:
        if noise <= 0:
            out["accountant"] = None
        return out
    out["rho"] = zcdp(noise, rounds, min_separation)
    out["epsilon"] = epsilon_from_zcdp(out["rho"], delta)
    return out
