"""Federated evaluation: each device measures a model version on its own held-out split.

On the device, the version runs in the device's own runtime (``keyboard.lm``, the numpy model
the keyboard uses) with the same whole-word beam the keyboard shows, so what is measured is what
people see; the model's own scores come from ``keyboard/evaluate.py``, the function live device
agents run (``federated/live_eval.py``). The device writes its own result under
``devices/<id>/eval/`` and contributes only named sums (a nested ``OrderedDict`` of float64 scalars
and arrays; ``own`` holds exactly ``common/eval_sums.py``'s fields) — predictions, hits at 1/3/5,
OOV words, token loss, a one-hot bin of its own recall@1, and its live counts per version and
source (``common/live_counts.py``) — to a TFF ``federated_sum`` of that struct, run in the TFF
runtime. The server sees the sums, never a device's numbers: recall, loss and the histogram of
per-device recall@1 (from which quantiles are read) are all computed from them, and live counts
are released per version and source only from enough devices (``federated/live_release.py``).
Baselines are scored on the same devices and the same words.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from common import live_counts
from common.atomic import atomic_write
from common.errors import FedkbError
from common.layout import DeviceLayout, Home
from federated import live_release
from keyboard.evaluate import load_suggester, model_scores
from keyboard.mix import build_product, load_ngrams
from keyboard.predictor import ModelPredictor
from keyboard.store import Device
from keyboard.suggest import WordSuggester
from lm.recall import KS, RecallCounts, quantiles_from_histogram, recall_counts

HIST_EDGES = np.linspace(0.0, 1.0, 21)  # per-device recall@1 in 5-point bins
_COUNT_FIELDS = ("predictions", "oov", *(f"hits_at_{k}" for k in KS))

Sums = OrderedDict  # a device's contribution: named float64 scalars and arrays, nested; TFF sums it as a struct


def _counts(c: RecallCounts) -> Sums:
    return OrderedDict(zip(_COUNT_FIELDS, map(np.float64, (c.predictions, c.oov, *(c.hits[k] for k in KS)))))


def _recall_from(s: Mapping[str, float]) -> RecallCounts:
    return RecallCounts(int(s["predictions"]), int(s["oov"]), {k: int(s[f"hits_at_{k}"]) for k in KS})


# The product and its ablation, each scored on the device exactly as the keyboard suggests
# (``keyboard.mix``): the parts each row mixes. The LSTM alone is the version's own row.
PRODUCT_ROWS = {"lstm_personal": ("lstm", "personal"), "product": None}  # None: every part the version has


# A device that fine-tuned a personal model reports, for its own held-out split, the hits of the
# global model and of its personal one (Wang et al. 2019): summed, they give the before/after.
_PERSONAL_FIELDS = ("devices", "predictions", "global_hits_at_1", "global_hits_at_3",
                    "personal_hits_at_1", "personal_hits_at_3")


def _personal(device_dir: Path, version_name: str) -> Sums:
    path = DeviceLayout(device_dir).personalization
    try:
        rec = json.loads(path.read_text())
        if rec.get("global_version") != version_name:
            raise ValueError("personalized from another version")
        g, p = rec["global"], rec["personal"]
        n = float(g["predictions"])
        values = [1.0, n, g["recall_at_1"] * n, g["recall_at_3"] * n, p["recall_at_1"] * n, p["recall_at_3"] * n]
    except (OSError, ValueError, KeyError, TypeError):
        values = [0.0] * len(_PERSONAL_FIELDS)
    return OrderedDict(zip(_PERSONAL_FIELDS, map(np.float64, values)))


_LIVE_FIELDS = (*live_counts.FIELDS, "devices")


def live_key(version: str, source: str) -> str:
    return f"{version}/{source}"


def _live(device: Device) -> Sums:
    """The device's live counts by ``version/source``, with ``devices`` 1 where it finished some word."""
    out = Sums()
    for source in live_counts.SOURCES:
        for version, counts in sorted(device.live_counts(source=source).items()):
            if version.isascii() and version.isdigit() and live_release.contributes(counts):
                out[live_key(version, source)] = OrderedDict(
                    (name, np.float64(counts[name] if name != "devices" else 1)) for name in _LIVE_FIELDS)
    return out


def _pad_live(contributions: list[Sums]) -> None:
    """Gives every device every ``version/source`` any device has, as zeros: TFF sums one struct type."""
    keys = sorted({key for c in contributions for key in c.get("live", {})})
    zeros = OrderedDict((name, np.float64(0)) for name in _LIVE_FIELDS)
    for c in contributions:
        own = c.pop("live", {})
        if keys:
            c["live"] = OrderedDict((key, own.get(key, zeros)) for key in keys)


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
) -> Sums:
    """Runs on the device: evaluates on its held-out split, writes its own record, returns named sums only.

    ``products`` maps a product row to ``(lstm predictor, n-gram model or None, parts)``. The sums
    are those of ``common/eval_sums.py`` (``own``), the device count and a one-hot bin of its own
    recall@1, the personalization before/after, the counts of each product row and baseline, and
    its live counts by ``version/source`` (``live``; any device's keys are added as zeros by
    ``evaluate`` so that every device sends the same structure).
    """
    with Device(device_dir) as device:
        splits = device.splits()
        live = _live(device)
    heldout = splits.heldout
    own, nll, tokens = model_scores(suggester, heldout)  # the scoring the live agent runs too
    hist = np.zeros(len(HIST_EDGES) - 1)
    if own.predictions:
        hist[min(np.searchsorted(HIST_EDGES, own.recall(1), side="right") - 1, len(hist) - 1)] = 1
    record = {"model_version": version_name, **own.summary(), "token_loss": nll / tokens if tokens else None,
              "heldout_sentences": len(heldout)}
    sums = Sums(own=Sums(**_counts(own), tokens=np.float64(tokens), token_nll=np.float64(nll)),
                devices=np.float64(own.predictions > 0), recall_at_1_histogram=hist,
                personalization=_personal(device_dir, version_name))
    shared: dict[int, SharedLSTM] = {}
    rows = Sums()
    for name, (lstm, ngrams, parts) in (products or {}).items():
        counts = product_counts(splits, shared.setdefault(id(lstm), SharedLSTM(lstm)), ngrams, parts)
        record[name] = counts.summary()
        rows[name] = _counts(counts)
    # Pooled-text references: summed, not kept in the device's record.
    refs = Sums((name, _counts(recall_counts(predictor, heldout))) for name, predictor in baselines.items())
    for part, value in (("products", rows), ("baselines", refs), ("live", live)):
        if value:  # an empty struct is left out rather than summed
            sums[part] = value
    eval_dir = DeviceLayout(device_dir).eval
    eval_dir.mkdir(exist_ok=True)
    atomic_write(eval_dir / f"{version_name}.json", json.dumps(record, indent=2).encode())
    return sums


def _struct_type(value):
    """The TFF type of a contribution: a named struct (``OrderedDict``) of float64 tensors."""
    import tensorflow_federated as tff

    if isinstance(value, Mapping):
        return tff.StructWithPythonType([(k, _struct_type(v)) for k, v in value.items()], OrderedDict)
    return tff.TensorType(np.float64, np.shape(value))


_SUM_COMPUTATIONS: dict[str, object] = {}


def federated_sum(contributions: list[Sums]) -> Sums:
    """Sums the devices' named sums with a TFF ``federated_sum`` of their struct, in the current TFF context."""
    import tensorflow_federated as tff

    value_type = _struct_type(contributions[0])
    key = str(value_type)
    if key not in _SUM_COMPUTATIONS:
        @tff.federated_computation(tff.FederatedType(value_type, tff.CLIENTS))
        def summed(values):
            return tff.federated_sum(values)

        _SUM_COMPUTATIONS[key] = summed
    return _SUM_COMPUTATIONS[key](contributions)


def aggregate(total: Mapping, minimum: int | None = None) -> dict:
    """Turns the summed sums into the reported aggregates (recall as fractions).

    Live counts are released per ``version/source`` from at least ``minimum`` contributing devices
    (default ``ledger.MIN_RELEASE_DEVICES``), under ``live``.
    """
    from federated.ledger import MIN_RELEASE_DEVICES

    own = total["own"]
    nll, tokens = float(own["token_nll"]), float(own["tokens"])
    hist = np.asarray(total["recall_at_1_histogram"], np.float64)
    result = {
        "devices": int(total["devices"]),
        **_recall_from(own).summary(),
        "token_loss": float(nll / tokens) if tokens else None,
        "perplexity": float(np.exp(nll / tokens)) if tokens else None,
        "per_device_recall_at_1": {
            "quantiles": quantiles_from_histogram(HIST_EDGES, hist),
            "histogram": {"edges": HIST_EDGES.round(4).tolist(), "counts": [int(x) for x in hist]},
        },
        "baselines": {name: _recall_from(row).summary() for name, row in total.get("baselines", {}).items()},
        "products": {name: _recall_from(row).summary() for name, row in total.get("products", {}).items()},
    }
    pers = {name: float(v) for name, v in total["personalization"].items()}
    if pers["devices"] and pers["predictions"]:
        before = {k: pers[f"global_hits_at_{k}"] / pers["predictions"] for k in (1, 3)}
        after = {k: pers[f"personal_hits_at_{k}"] / pers["predictions"] for k in (1, 3)}
        result["personalization"] = {
            "devices": int(pers["devices"]), "predictions": int(pers["predictions"]),
            "global_recall_at_1": before[1], "personal_recall_at_1": after[1],
            "global_recall_at_3": before[3], "personal_recall_at_3": after[3],
            "relative_change_at_1": (after[1] - before[1]) / before[1] if before[1] else None,
        }
    result["live"] = live_release.release(live_totals(total), MIN_RELEASE_DEVICES if minimum is None else minimum,
                                          origin="fedkb eval")
    return result


def live_totals(total: Mapping) -> live_release.Totals:
    """The summed live counts of a summed struct, by (version, source), with their number of devices."""
    totals: live_release.Totals = {}
    for key, row in total.get("live", {}).items():
        version, source = key.split("/")
        totals[(version, source)] = (round(float(row["devices"])),
                                     {name: round(float(row[name])) for name in live_counts.FIELDS})
    return totals


class TooFewDevices(FedkbError, ValueError):
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
    baselines: Mapping[str, object] | None = None, on_device=None, on_live=None,
) -> dict:
    """Federated evaluation of one version on ``device_ids``; returns the aggregates.

    Refused (``TooFewDevices``) below ``ledger.MIN_RELEASE_DEVICES`` devices. The devices' live
    counts are released under ``live`` and entered in the ledger, unless ``on_live`` takes their
    summed totals instead (``live_release.Totals``), for a caller that adds those of several
    evaluations before releasing them (then ``live`` is left out).
    """
    check_min_devices(len(device_ids), f"evaluating version {version_name}")
    baselines = dict(baselines or {})
    suggester = load_suggester(version_dir)
    lstm, ngrams = ModelPredictor(version_dir), load_ngrams(version_dir)
    # Without published n-grams the product is the LSTM with the personal model: one row, not two.
    products = {name: (lstm, ngrams, parts) for name, parts in PRODUCT_ROWS.items()
                if ngrams is not None or parts is None}
    contributions = []
    for device_id in device_ids:
        contributions.append(device_contribution(home.device(device_id), version_name, suggester, baselines,
                                                 products))
        if on_device:
            on_device(device_id)
    if not contributions:
        raise TooFewDevices("no devices to evaluate on: none has held-out sentences and takes part")
    _pad_live(contributions)
    total = federated_sum(contributions)
    result = aggregate(total)
    from federated import ledger

    ledger.append(home.server, {"kind": "evaluation", "version": version_name, "devices": len(contributions),
                                "live": False})
    if on_live is not None:
        on_live(live_totals(total))
        del result["live"]
    else:
        live_release.log(home.server, result["live"], live=False)
    return result
