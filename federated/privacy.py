"""Privacy of training: which aggregator sums the devices' updates, and the ε it spends.

Differential privacy is TFF's ``DifferentiallyPrivateFactory`` (McMahan et al. 2018, "Learning
Differentially Private Recurrent Language Models": DP-FedAvg for a keyboard LM): each device's
model update is clipped to an L2 norm — fixed, or adapted each round towards the median update
norm (Andrew et al. 2021) — and Gaussian noise of ``noise_multiplier × clip`` is added to the
sum. That aggregator is unweighted (a device's influence must be bounded, whatever its data
size), so DP runs use uniform client weighting. The privacy spent is computed by
``dp_accounting``'s RDP accountant from the noise, the per-round sampling rate and the rounds.

This module holds no TensorFlow at import time; ``model_aggregator`` imports TFF when called.
"""

from __future__ import annotations

import collections
import math
from dataclasses import asdict, dataclass, replace

from common.errors import FedkbError


class PrivacyError(FedkbError, ValueError):
    """Bad privacy settings, or a ledger that cannot be read."""


@dataclass(frozen=True)
class PrivacyConfig:
    """How updates leave the devices and are summed. Saved with the checkpoint and every version."""

    dp_noise: float = 0.0  # Gaussian noise multiplier z (noise std / clip); 0 = no noise
    dp_clip: str | float | None = None  # "adaptive", a fixed L2 norm, or None (= adaptive when z > 0)
    dp_delta: float | None = None  # δ of the reported (ε, δ); None = 1 / population
    target_unclipped_quantile: float = 0.5  # adaptive clipping tracks this quantile of update norms
    initial_clip: float = 0.1  # adaptive clipping's starting norm
    secure_agg: bool = False  # pairwise-masked secure aggregation (federated/secagg.py)
    dp_mechanism: str = "gaussian"  # "gaussian" (DP-FedAvg) or "ftrl" (DP-FTRL, federated/ftrl.py)
    min_separation: int | None = None  # ftrl: a device takes part at most once every this many rounds

    def __post_init__(self) -> None:
        if not (isinstance(self.dp_noise, (int, float)) and math.isfinite(self.dp_noise) and self.dp_noise >= 0):
            raise PrivacyError(f"--dp-noise must be a finite number ≥ 0, got {self.dp_noise!r}")
        clip = self.dp_clip
        if isinstance(clip, str) and clip != "adaptive":
            try:
                clip = float(clip)
            except ValueError:
                raise PrivacyError(f"--dp-clip must be 'adaptive' or a positive number, got {self.dp_clip!r}") from None
            object.__setattr__(self, "dp_clip", clip)
        if isinstance(self.dp_clip, (int, float)) and not (math.isfinite(self.dp_clip) and self.dp_clip > 0):
            raise PrivacyError(f"--dp-clip must be 'adaptive' or a positive number, got {self.dp_clip!r}")
        if self.dp_noise > 0 and self.dp_clip is None:
            object.__setattr__(self, "dp_clip", "adaptive")
        if self.dp_delta is not None and not 0 < self.dp_delta < 1:
            raise PrivacyError(f"--dp-delta must be in (0, 1), got {self.dp_delta!r}")
        if not 0 < self.target_unclipped_quantile < 1:
            raise PrivacyError(f"target unclipped quantile must be in (0, 1), got {self.target_unclipped_quantile}")
        if not self.initial_clip > 0:
            raise PrivacyError(f"initial clip must be positive, got {self.initial_clip}")
        if self.secure_agg and self.dp_clip == "adaptive":
            raise PrivacyError("--secure-agg with DP needs a fixed --dp-clip C: adaptive clipping also sums "
                               "a count of clipped updates, which secure aggregation does not cover here")
        from federated.ftrl import FtrlError, check_settings

        try:
            check_settings(mechanism=self.dp_mechanism, noise=self.dp_noise, clip=self.dp_clip,
                           min_separation=self.min_separation, secure_agg=self.secure_agg)
        except FtrlError as exc:
            raise PrivacyError(str(exc)) from None

    @property
    def ftrl(self) -> bool:
        """DP-FTRL: tree-aggregated noise and a minimum separation between a device's rounds."""
        return self.dp_mechanism == "ftrl"

    @property
    def dp(self) -> bool:
        """Updates are clipped (and noised when ``dp_noise`` > 0) by the DP aggregator."""
        return self.dp_clip is not None

    def as_dict(self) -> dict:
        out = asdict(self)
        if not self.ftrl:  # as recorded before DP-FTRL existed, so those checkpoints still resume
            del out["dp_mechanism"], out["min_separation"]
        return out


def clipped_count_stddev(noise: float, clients_per_round: int) -> float:
    """Noise on the adaptive clip's count of unclipped devices.

    TFF's default (0.05 K) only works with K > 10 z; at least z keeps the extra noise the
    updates need for it to about 15 % (their multiplier becomes z / sqrt(1 - 1/4)).
    """
    return max(0.05 * clients_per_round, noise)


def model_aggregator(privacy: PrivacyConfig, clients_per_round: int, *, secure=None, record_specs=None):
    """The TFF aggregator of model updates for ``privacy``: None is TFF's weighted mean.

    ``secure`` is the ``SecAggConfig`` used when ``privacy.secure_agg`` is on; with DP as well,
    the clipped updates are summed securely and the server adds the noise to the unmasked sum.
    ``record_specs`` (the trainable weights' ``tf.TensorSpec``s) sizes DP-FTRL's tree.
    """
    import tensorflow_federated as tff

    if privacy.ftrl:
        from federated.ftrl import tree_aggregator

        if record_specs is None:
            raise PrivacyError("DP-FTRL's tree aggregator needs the model's weight specs")
        return tree_aggregator(noise=privacy.dp_noise, clip=float(privacy.dp_clip),
                               clients_per_round=clients_per_round, specs=record_specs)

    if privacy.secure_agg:
        from federated.secagg_factory import dp_secure_aggregator, secure_aggregator

        if secure is None:
            raise PrivacyError("secure aggregation needs its settings (a SecAggConfig)")
        if not privacy.dp:
            return secure_aggregator(secure)
        clipped = replace(secure, clip=float(privacy.dp_clip))
        return tff.aggregators.as_weighted_aggregator(
            dp_secure_aggregator(clipped, noise_multiplier=privacy.dp_noise, clients_per_round=clients_per_round))
    if not privacy.dp:
        inner = None
    elif privacy.dp_clip == "adaptive":
        inner = tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
            noise_multiplier=privacy.dp_noise, clients_per_round=float(clients_per_round),
            initial_l2_norm_clip=privacy.initial_clip, target_unclipped_quantile=privacy.target_unclipped_quantile,
            clipped_count_stddev=(clipped_count_stddev(privacy.dp_noise, clients_per_round)
                                  if privacy.dp_noise else None),
        )
    else:
        inner = tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
            noise_multiplier=privacy.dp_noise, clients_per_round=float(clients_per_round), clip=float(privacy.dp_clip),
        )
    return None if inner is None else tff.aggregators.as_weighted_aggregator(inner)


# -- accounting -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundSample:
    """Who could have been picked in one round and how many were."""

    clients: int
    available: int


def spent(privacy: PrivacyConfig, ledger: list[RoundSample], population: int) -> dict:
    """The (ε, δ) as fedkb reported it before the ledger (``federated/ledger.py``) replaced it.

    Kept for ``bench/epsilon_headline.py``, which compares the old headline with the new one.

    ε is None when no noise was added. The main figure treats each round as Poisson sampling
    with rate clients / available devices (add-or-remove-one device adjacency), the analysis of
    McMahan et al. 2018; our sampler draws exactly that many devices uniformly without
    replacement, so ``epsilon_fixed_size`` also gives the figure for that sampler under
    replace-one adjacency (sensitivity 2 × clip), which is larger, as an upper bound.
    """
    delta = privacy.dp_delta or (1.0 / max(population, 1))
    if privacy.ftrl:
        from federated import ftrl

        return ftrl.spent(noise=privacy.dp_noise, clip=privacy.dp_clip, rounds=len(ledger),
                          min_separation=privacy.min_separation, delta=delta, population=population,
                          secure_agg=privacy.secure_agg)
    out = {"epsilon": None, "epsilon_fixed_size": None, "delta": delta, "accountant": "rdp",
           "noise_multiplier": privacy.dp_noise, "clip": privacy.dp_clip, "rounds": len(ledger),
           "population": population, "secure_aggregation": privacy.secure_agg,
           "sampling": "clients / available devices per round"}
    if privacy.dp_noise <= 0 or not ledger:
        if privacy.dp_noise <= 0:
            out["accountant"] = None
        return out
    import dp_accounting
    from dp_accounting import rdp

    rounds = collections.Counter((r.clients, max(r.available, r.clients)) for r in ledger if r.clients > 0)
    if not rounds:
        return out
    poisson = rdp.RdpAccountant()
    gaussian = dp_accounting.GaussianDpEvent(privacy.dp_noise)
    for (clients, available), count in rounds.items():
        poisson.compose(dp_accounting.PoissonSampledDpEvent(clients / available, gaussian), count)
    out["epsilon"] = float(poisson.get_epsilon(delta))
    # Without replacement: each distinct rate costs about a second in dp_accounting, so every
    # round is charged at the largest rate seen, which gives an upper bound.
    clients, available = max(rounds, key=lambda ca: ca[0] / ca[1])
    fixed = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    half = dp_accounting.GaussianDpEvent(privacy.dp_noise / 2)  # replacing a device moves the sum by 2 clips
    fixed.compose(dp_accounting.SampledWithoutReplacementDpEvent(available, clients, half), sum(rounds.values()))
    out["epsilon_fixed_size"] = float(fixed.get_epsilon(delta))
    return out
