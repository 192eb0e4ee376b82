"""The product's ablation table (written by ``bench/ablation.py``), as the report shows it.

``<home>/server/ablation.json`` holds one row per step — the global LSTM alone, with the personal
model, with the private n-grams, with pretraining, the product — and the pooled references, all
scored on the same devices' held-out words. The report shows it when the file exists.
"""

from __future__ import annotations

import json
from pathlib import Path

from common.errors import FedkbError

FILE = "ablation.json"
COLUMNS = ("ablation", "recall@1", "recall@3", "recall@5")


class AblationError(FedkbError):
    """``ablation.json`` cannot be read; the message names the file."""


def load(server_dir: Path) -> dict | None:
    """The ablation record, or None when no ablation was run for this home."""
    path = Path(server_dir) / FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        rows = record["rows"]
        for row in rows:
            for key in ("recall_at_1", "recall_at_3", "recall_at_5"):
                if row[key] is not None and not isinstance(row[key], (int, float)):
                    raise TypeError(f"{key} of {row['row']!r} is {row[key]!r}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise AblationError(f"{path}: not an ablation record ({exc})") from None
    return record


def table_rows(record: dict) -> list[tuple[str, ...]]:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    return [(r["row"], *(pct(r[k]) for k in ("recall_at_1", "recall_at_3", "recall_at_5"))) for r in record["rows"]]


def title(record: dict) -> str:
    return (f"ablation on {record.get('corpus', '?')}: {record.get('devices', '?')} devices, "
            f"{record.get('predictions', 0):,} predictions per row (bench/ablation.py)")
