"""The privacy accounting of a training run, mixed into ``Session``: the ledger entry of a round,
the (ε, δ) spent so far, and how the participants were drawn (what the ε assumes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from federated import ledger

if TYPE_CHECKING:
    from federated.program import Session

    _Base = Session
else:
    _Base = object


class PrivacyAccounting(_Base):
    """What a session's rounds spend of privacy, from the ledger (``federated/ledger.py``)."""

    def _ledger_entry(self, round_num: int, selection, metrics: dict, released: dict) -> dict:
        rate = getattr(selection, "rate", None)
        if rate is None:  # clients a caller chose itself (no Poisson draw): no amplification
            how, rate = "first-come", 1.0
        else:
            how = "poisson-public" if self.sampling.public else "poisson-secret"
        return {"kind": "round", "run_id": self.run_id, "round": round_num, "clients": len(selection.device_ids),
                "eligible": getattr(selection, "eligible", None), "q": rate, "sampling": how,
                "noise": self.privacy.dp_noise, "mechanism": self.privacy.dp_mechanism,
                "min_separation": self.privacy.min_separation, "population": selection.population,
                "tokens": metrics.get("num_tokens"), "metrics_released": "loss" in released,
                "metrics": metrics}  # the server's own view of the round: kept private, not released

    def privacy_spent(self, round_num: int) -> dict:
        """(ε, δ) of this run's rounds up to ``round_num`` (re-runs included), and the whole ledger's total."""
        rounds = [r for r in ledger.entries(self.home.server, "round")
                  if r.get("run_id") == self.run_id and r["round"] <= round_num]
        population = max([len(self.population)] + [int(r.get("population", 0)) for r in rounds])
        delta = self.privacy.dp_delta or ledger.default_delta(population)
        out = ledger.training_spent(rounds, delta=delta) if self.privacy.dp_noise > 0 else {
            "epsilon": None, "delta": delta, "rounds": len(rounds)}
        total = ledger.total(self.home.server, population=population, dp_delta=self.privacy.dp_delta)
        out.update(accountant=ledger.ACCOUNTANT if self.privacy.dp_noise > 0 else None, adjacency=ledger.ADJACENCY,
                   sampling=self.sampling_assumption(rounds), sampling_public=self.sampling.public,
                   noise_multiplier=self.privacy.dp_noise, clip=self.privacy.dp_clip, population=population,
                   secure_aggregation=self.privacy.secure_agg,
                   ledger_epsilon=total["epsilon"], ledger_delta=total["delta"])
        if self.privacy.ftrl:
            from federated.ftrl import max_participations

            out.update(mechanism="ftrl", min_separation=self.privacy.min_separation,
                       max_participations=max_participations(len(rounds), self.privacy.min_separation),
                       accountant="zCDP tree accountant (tensorflow_privacy compute_zcdp_single_tree), converted to "
                                  "(ε, δ) by dp_accounting's RDP accountant",
                       sampling=self.sampling_assumption(rounds) + f"; DP-FTRL assumes no sampling: a device takes "
                                f"part at most once every {self.privacy.min_separation} rounds")
        return out

    def sampling_assumption(self, rounds: list[dict]) -> str:
        """How this run's participants were drawn, in words (what the ε assumes)."""
        text = self.sampling.assumption
        if self.live:
            text += " (live rounds: the eligible devices that had checked in when the round selected)"
        if any(r.get("sampling") == "first-come" for r in rounds):
            text += "; some rounds' clients were chosen without a Poisson draw and are accounted without amplification"
        return text
