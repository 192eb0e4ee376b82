"""Federated evaluation: each device measures a model version on its own held-out split.

On the device, the version runs in the device's own runtime (``keyboard.lm``, the numpy model
the keyboard uses) with the same whole-word beam the keyboard shows, so what is measured is what
people see; the model's own scores come from ``keyboard/evaluate.py``, the function live device
agents run (``federated/live_eval.py``). The device writes its own result under ``devices/<id>/eval/`` and contributes only a
vector of sums — predictions, hits at 1/3/5, OOV words, token loss, and a one-hot bin of its own
recall@1 — to a TFF ``federated_sum`` run in the TFF runtime. The server sees the sums, never a
device's numbers: recall, loss and the histogram of per-device recall@1 (from which quantiles are
read) are all computed from them. Baselines are scored on the same devices and the same words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lm.recall import KS, RecallCounts, quantiles_from_histogram, recall_counts
from common.atomic import atomic_write
from common.layout import Home
from keyboard.evaluate import load_suggester, model_scores
from keyboard.mix import build_product, load_ngrams
from keyboard.predictor import ModelPredictor
from keyboard.store import Device
from keyboard.suggest import WordSuggester

HIST_EDGES = np.linspace(0.0, 1.0, 21)  # per-device recall@1 in 5-point bins
_COUNT_FIELDS = ("predictions", "oov", *(f"hits_at_{k}" for k in KS))


def _counts_vector(c: RecallCounts) -> list[float]:
    return [c.predictions, c.oov, *(c.hits[k] for k in KS)]


def _counts_from(v: Sequence[float]) -> RecallCounts:
    return RecallCounts(int(v[0]), int(v[1]), {k: int(x) for k, x in zip(KS, v[2:])})


@dataclass(frozen=True)
class Layout:
    """Where each quantity sits in a device's contribution vector: own counts, loss, histogram,
    personalization, then the counts of each product row (``PRODUCT_ROWS``) and of each baseline."""

    baselines: tuple[str, ...]
    products: tuple[str, ...] = ()


# The product and its ablation, each scored on the device exactly as the keyboard suggests
# (``keyboard.mix``): the parts each row mixes. The LSTM alone is the version's own row.
PRODUCT_ROWS = {"lstm_personal": ("lstm", "personal"), "product": None}  # None: every part the version has


# A device that fine-tuned a personal model reports, for its own held-out split, the hits of the
# global model and of its personal one (Wang et al. 2019): summed, they give the before/after.
_PERSONAL_FIELDS = ("devices", "predictions", "global_hits_at_1", "global_hits_at_3",
                    "personal_hits_at_1", "personal_hits_at_3")


def _personal_vector(device_dir: Path, version_name: str) -> list[float]:
    path = Path(device_dir) / "eval" / "personalization.json"
    try:
        rec = json.loads(path.read_text())
        if rec.get("global_version") != version_name:
            raise ValueError("personalized from another version")
        g, p = rec["global"], rec["personal"]
        n = float(g["predictions"])
        return [1.0, n, g["recall_at_1"] * n, g["recall_at_3"] * n, p["recall_at_1"] * n, p["recall_at_3"] * n]
    except (OSError, ValueError, KeyError, TypeError):
        return [0.0] * len(_PERSONAL_FIELDS)


class SharedLSTM:
    """The LSTM part of the product rows of one device, each answer computed once for all rows.

    The product rows of the ablation ask the same LSTM the same questions (the same contexts, the
    same finished sentences); the answers do not depend on the rest of the mix.
    """

    def __init__(self, lstm):
        self.lstm = lstm
        self.version = getattr(lstm, "version", None)
        self._scored: dict[tuple, list] = {}
        self._log_probs: dict[tuple, np.ndarray] = {}

    def scored(self, context, partial: str, k: int):
        key = (tuple(context), partial, k)
        if key not in self._scored:
            self._scored[key] = self.lstm.scored(list(context), partial, k)
        return self._scored[key]

    def word_log_probs(self, sentences):
        missing = [ws for ws in sentences if tuple(ws) not in self._log_probs]
        for ws, lp in zip(missing, self.lstm.word_log_probs(missing) if missing else []):
            self._log_probs[tuple(ws)] = lp
        return [self._log_probs[tuple(ws)] for ws in sentences]

    def can_produce(self, word: str) -> bool:
        return self.lstm.can_produce(word)


def product_counts(splits, lstm, ngrams, parts) -> RecallCounts:
    """Recall of the product as this device's keyboard would suggest: the personal model and the
    weights from its train split, then each held-out sentence typed in time order and learned once
    finished, as live typing is (prequential)."""
    product = build_product(splits.train, lstm=lstm, ngrams=ngrams, parts=parts)
    total = RecallCounts(hits={k: 0 for k in KS})
    for sentence in splits.heldout:
        total = total + recall_counts(product, [sentence])
        product.observe(sentence)
    return total


def device_contribution(
    device_dir: Path, version_name: str, suggester: WordSuggester, baselines: Mapping[str, object],
    products: Mapping[str, tuple] | None = None,
) -> np.ndarray:
    """Runs on the device: evaluates on its held-out split, writes its own record, returns sums only.

    ``products`` maps a product row to ``(lstm predictor, n-gram model or None, parts)``.
    """
    with Device(device_dir) as device:
        splits = device.splits()
    heldout = splits.heldout
    own, nll, tokens = model_scores(suggester, heldout)  # the scoring the live agent runs too
    hist = np.zeros(len(HIST_EDGES) - 1)
    if own.predictions:
        hist[min(np.searchsorted(HIST_EDGES, own.recall(1), side="right") - 1, len(hist) - 1)] = 1
    record = {"model_version": version_name, **own.summary(), "token_loss": nll / tokens if tokens else None,
              "heldout_sentences": len(heldout)}
    vector = [*_counts_vector(own), nll, tokens, float(own.predictions > 0), *hist,
              *_personal_vector(device_dir, version_name)]
    shared: dict[int, SharedLSTM] = {}
    for name, (lstm, ngrams, parts) in (products or {}).items():
        counts = product_counts(splits, shared.setdefault(id(lstm), SharedLSTM(lstm)), ngrams, parts)
        record[name] = counts.summary()
        vector += _counts_vector(counts)
    for predictor in baselines.values():  # pooled-text references: summed, not kept in the device's record
        vector += _counts_vector(recall_counts(predictor, heldout))
    eval_dir = Path(device_dir) / "eval"
    eval_dir.mkdir(exist_ok=True)
    atomic_write(eval_dir / f"{version_name}.json", json.dumps(record, indent=2).encode())
    return np.asarray(vector, np.float64)


_SUM_COMPUTATIONS: dict[int, object] = {}


def federated_sum(vectors: list[np.ndarray]) -> np.ndarray:
    """Sums device vectors with a TFF ``federated_sum`` in the current TFF context."""
    import tensorflow_federated as tff

    size = len(vectors[0])
    if size not in _SUM_COMPUTATIONS:
        @tff.federated_computation(tff.FederatedType(tff.TensorType(np.float64, [size]), tff.CLIENTS))
        def summed(values):
            return tff.federated_sum(values)

        _SUM_COMPUTATIONS[size] = summed
    return np.asarray(_SUM_COMPUTATIONS[size](vectors), np.float64)


def aggregate(total: np.ndarray, layout: Layout) -> dict:
    """Turns the summed vector into the reported aggregates (recall as fractions)."""
    n = len(_COUNT_FIELDS)
    own = _counts_from(total[:n])
    nll, tokens, devices = total[n : n + 3]
    hist = total[n + 3 : n + 3 + len(HIST_EDGES) - 1]
    result = {
        "devices": int(devices),
        **own.summary(),
        "token_loss": float(nll / tokens) if tokens else None,
        "perplexity": float(np.exp(nll / tokens)) if tokens else None,
        "per_device_recall_at_1": {
            "quantiles": quantiles_from_histogram(HIST_EDGES, hist),
            "histogram": {"edges": HIST_EDGES.round(4).tolist(), "counts": [int(x) for x in hist]},
        },
        "baselines": {},
    }
    offset = n + 3 + len(hist)
    pers = dict(zip(_PERSONAL_FIELDS, total[offset : offset + len(_PERSONAL_FIELDS)]))
    offset += len(_PERSONAL_FIELDS)
    result["products"] = {}
    for name in layout.products:
        result["products"][name] = _counts_from(total[offset : offset + n]).summary()
        offset += n
    if pers["devices"] and pers["predictions"]:
        before = {k: pers[f"global_hits_at_{k}"] / pers["predictions"] for k in (1, 3)}
        after = {k: pers[f"personal_hits_at_{k}"] / pers["predictions"] for k in (1, 3)}
        result["personalization"] = {
            "devices": int(pers["devices"]), "predictions": int(pers["predictions"]),
            "global_recall_at_1": before[1], "personal_recall_at_1": after[1],
            "global_recall_at_3": before[3], "personal_recall_at_3": after[3],
            "relative_change_at_1": (after[1] - before[1]) / before[1] if before[1] else None,
        }
    for i, name in enumerate(layout.baselines):
        result["baselines"][name] = _counts_from(total[offset + i * n : offset + (i + 1) * n]).summary()
    return result


class TooFewDevices(ValueError):
    """An evaluation over fewer devices than may be released."""


def check_min_devices(devices: int, what: str, minimum: int | None = None) -> None:
    """Refuses sums over fewer than ``minimum`` devices (default ``ledger.MIN_RELEASE_DEVICES``)."""
    from federated.ledger import MIN_RELEASE_DEVICES

    minimum = MIN_RELEASE_DEVICES if minimum is None else minimum
    if devices < minimum:
        raise TooFewDevices(f"{what}: {devices} device(s) with held-out sentences, fewer than the minimum of {minimum} "
                            "whose sums may be released (a sum over so few devices would show each one's figures); "
                            f"evaluate on at least {minimum} devices")


def evaluate(
    home: Home, device_ids: Sequence[str], version_name: str, version_dir: Path,
    baselines: Mapping[str, object] | None = None, on_device=None,
) -> dict:
    """Federated evaluation of one version on ``device_ids``; returns the aggregates.

    Refused (``TooFewDevices``) below ``ledger.MIN_RELEASE_DEVICES`` devices.
    """
    check_min_devices(len(device_ids), f"evaluating version {version_name}")
    baselines = dict(baselines or {})
    suggester = load_suggester(version_dir)
    lstm, ngrams = ModelPredictor(version_dir), load_ngrams(version_dir)
    # Without published n-grams the product is the LSTM with the personal model: one row, not two.
    products = {name: (lstm, ngrams, parts) for name, parts in PRODUCT_ROWS.items()
                if ngrams is not None or parts is None}
    vectors = []
    for device_id in device_ids:
        vectors.append(device_contribution(home.device(device_id), version_name, suggester, baselines, products))
        if on_device:
            on_device(device_id)
    if not vectors:
        raise ValueError("no devices to evaluate on")
    total = federated_sum(vectors)
    from federated import ledger

    ledger.append(home.server, {"kind": "evaluation", "version": version_name, "devices": len(vectors), "live": False})
    return aggregate(total, Layout(tuple(baselines), tuple(products)))
