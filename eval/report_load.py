"""The inputs of ``fedkb report``, read and checked: evaluations, training metrics, live counts.

Inputs, all under ``<home>/server``:

    evals/<version>.json   one per evaluated model version (written by ``fedkb eval``)
    metrics.csv            one row per training round (written by ``fedkb train``)
    live_metrics.json      live typing counts summed over devices, per version (``eval/live.py``)

and, only if ``fedkb eval --references`` ran, ``<home>/references/evals/<version>.json``: the rows
of the references fitted on pooled raw text, added to the version's rows.

Older eval files may lack keys; a missing value loads as None. A file that is not valid JSON, or
holds a value of the wrong type, raises :class:`ReportError` naming the file. The wording and the
rendering are ``eval/report.py`` and ``eval/report_html.py``. No TensorFlow, rich or matplotlib here.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common.errors import FedkbError
from common.layout import EVALS
from eval import live
from eval.results import BaselineResult, EvalResult, RoundMetrics


class ReportError(FedkbError):
    """An input file of the report cannot be read."""


@dataclass(frozen=True)
class ReportData:
    server_dir: Path
    evals: list[EvalResult]  # sorted by version
    rounds: list[RoundMetrics]  # sorted by round, one row per round
    references_dir: Path | None = None  # <home>/references: the pooled-text references, if any
    live: dict = field(default_factory=dict)  # server/live_metrics.json: {version: {source: entry}} (eval/live.py)

    @property
    def latest(self) -> EvalResult | None:
        return self.evals[-1] if self.evals else None


# -- loading ------------------------------------------------------------------------------------
def _num(obj: dict, key: str, where: str, kind: type = float):
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ReportError(f"{where}: '{key}' should be a number, not {v!r}")
    return kind(v)


def _obj(obj: dict, key: str, where: str) -> dict:
    v = obj.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ReportError(f"{where}: '{key}' should be an object, not {v!r}")
    return v


def _numbers(v: Any, where: str) -> tuple[float, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
        raise ReportError(f"{where} should be a list of numbers")
    return tuple(float(x) for x in v)


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def load_eval(path: Path) -> EvalResult:
    """One ``evals/<version>.json``; raises :class:`ReportError` naming the file if it is malformed."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read ({e})") from None
    if not isinstance(raw, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(raw).__name__}")
    w = str(path)
    per_device = _obj(raw, "per_device_recall_at_1", w)
    hist = _obj(per_device, "histogram", f"{w}: per_device_recall_at_1")
    quantiles = _obj(per_device, "quantiles", f"{w}: per_device_recall_at_1")
    edges = _numbers(hist.get("edges"), f"{w}: histogram edges")
    counts = _numbers(hist.get("counts"), f"{w}: histogram counts")
    if counts and len(edges) != len(counts) + 1:
        raise ReportError(f"{w}: histogram has {len(counts)} counts but {len(edges)} edges (need counts + 1)")
    baselines, products = ({name: _row(b, f"{w}: {key}.{name}") for name, b in _obj(raw, key, w).items()}
                           for key in ("baselines", "products"))
    promotion = _obj(raw, "promotion", w)
    privacy = raw.get("privacy")
    if privacy is not None and not isinstance(privacy, dict):
        raise ReportError(f"{w}: 'privacy' should be an object, not {privacy!r}")
    if privacy is not None:
        for key in ("epsilon", "delta", "noise_multiplier"):
            _num(privacy, key, f"{w}: privacy")
    if promotion.get("promoted") not in (True, False, None):
        raise ReportError(f"{w}: promotion.promoted should be true or false, not {promotion['promoted']!r}")
    version = raw.get("model_version", path.stem)
    return EvalResult(
        path=path, version=str(version), round=_num(raw, "round", w, int), created=_str(raw.get("created")),
        devices=_num(raw, "devices", w, int), predictions=_num(raw, "predictions", w, int),
        **{k: _num(raw, k, w) for k in ("recall_at_1", "recall_at_3", "recall_at_5", "token_loss",
                                         "perplexity", "oov_rate")},
        quantiles={k: _num(quantiles, k, f"{w}: quantiles") for k in quantiles},
        histogram_edges=edges, histogram_counts=counts, baselines=baselines, products=products,
        promoted=promotion.get("promoted"), promotion_reason=_str(promotion.get("reason")),
        settings=_obj(raw, "settings", w), privacy=privacy,
        personalization=raw.get("personalization") if isinstance(raw.get("personalization"), dict) else None,
    )


def _row(b: Any, where: str) -> BaselineResult:
    if not isinstance(b, dict):
        raise ReportError(f"{where} should be an object")
    return BaselineResult(where.rsplit(".", 1)[-1], *(_num(b, k, where) for k in (
        "recall_at_1", "recall_at_3", "recall_at_5", "oov_rate", "predictions", "train_tokens")))


def _float(text: str | None) -> float | None:
    try:
        v = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def load_metrics(path: Path) -> list[RoundMetrics]:
    """Rows of ``metrics.csv``; a re-run round keeps its last row; unreadable values become None."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and "round" not in reader.fieldnames:
            raise ReportError(f"{path}: no 'round' column (columns: {', '.join(reader.fieldnames)})")
        by_round: dict[int, RoundMetrics] = {}
        for row in reader:
            r = _float(row.get("round"))
            if r is None:
                continue
            by_round[int(r)] = RoundMetrics(int(r), *(_float(row.get(k)) for k in (
                "loss", "accuracy_without_pad", "clients", "available_devices", "num_tokens", "round_seconds")))
    return [by_round[r] for r in sorted(by_round)]


def _version_key(e: EvalResult):
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", e.version) if p)


def load_reference_rows(path: Path) -> dict[str, BaselineResult]:
    """The reference rows of one ``references/evals/<version>.json``; :class:`ReportError` names a bad file."""
    return load_eval(path).baselines


def load_report_data(server_dir: Path, references_dir: Path | None = None) -> ReportData:
    """Everything the report shows; a missing ``evals/`` or ``metrics.csv`` gives an empty list.

    With ``references_dir`` (``<home>/references``) each version's reference rows, if any were
    computed, are added to its evaluation.
    """
    server_dir = Path(server_dir)
    evals_dir = server_dir / EVALS
    files = sorted(p for p in evals_dir.glob("*.json") if not p.name.startswith(".")) if evals_dir.is_dir() else []
    evals = sorted((load_eval(p) for p in files), key=_version_key)
    if references_dir is not None:
        refs = Path(references_dir) / EVALS
        evals = [replace(e, baselines={**e.baselines, **load_reference_rows(refs / f"{e.version}.json")})
                 if (refs / f"{e.version}.json").is_file() else e for e in evals]
    return ReportData(server_dir, evals, load_metrics(server_dir / "metrics.csv"), references_dir,
                      live.load(server_dir))
