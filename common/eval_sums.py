"""The sums a device reports for an on-device evaluation: named, checked, added.

A device scores a model version on its own held-out split and sends only these counts, by
name (never a positional vector): how many next words it predicted, how many of them the model
could not produce at all (OOV), the hits at 1, 3 and 5, and the summed token negative
log-likelihood with its token count. Summed over devices they give recall@k, the OOV rate and the
token loss of ``lm/recall.py``; a single device's numbers are never needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from common.messages import MessageError, exact_fields

KS = (1, 3, 5)
COUNTS = ("predictions", "oov", *(f"hits_at_{k}" for k in KS), "tokens")
FIELDS = (*COUNTS, "token_nll")


def check(sums: object, where: str) -> dict[str, float]:
    """``sums`` as a dict of exactly ``FIELDS``; ``MessageError`` naming ``where`` and the field otherwise.

    Counts are non-negative integers, the loss a finite non-negative number, hits at a larger k
    at least those at a smaller one, and neither hits nor OOV words more than the predictions.
    """
    exact_fields(sums, FIELDS, where, "evaluation sums")
    out: dict[str, float] = {}
    for name in FIELDS:
        value = sums[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise MessageError(f"{where}: {name} must be a finite non-negative number, got {value!r}")
        if name in COUNTS and value != int(value):
            raise MessageError(f"{where}: {name} must be a whole count, got {value!r}")
        out[name] = float(value)
    hits = [out[f"hits_at_{k}"] for k in KS]
    if hits != sorted(hits) or hits[-1] > out["predictions"] or out["oov"] > out["predictions"]:
        raise MessageError(f"{where}: hits at 1/3/5 {hits} and OOV {out['oov']:g} must not decrease with k "
                           f"nor exceed the {out['predictions']:g} predictions")
    return out


def zero() -> dict[str, float]:
    return {name: 0.0 for name in FIELDS}


def add(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {name: float(a[name]) + float(b[name]) for name in FIELDS}


def summary(total: Mapping[str, float]) -> dict[str, float | int | None]:
    """Recall@k, the OOV rate and the token loss of summed sums, named as ``fedkb eval`` names them."""
    n, tokens = total["predictions"], total["tokens"]
    loss = total["token_nll"] / tokens if tokens else None
    return {"predictions": int(n), **{f"recall_at_{k}": total[f"hits_at_{k}"] / n if n else 0.0 for k in KS},
            "oov_rate": total["oov"] / n if n else 0.0, "token_loss": loss,
            "perplexity": math.exp(loss) if loss is not None and loss < 700 else None}
