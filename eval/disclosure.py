"""What left the devices in a run, stated from the server's own records (no TensorFlow).

Four things can leave a device, and each is recorded where it arrived: vocabulary counts
(``server/tokenizer/tokenizer.json``: a plain sum of word counts, or heavy-hitter sketches),
n-gram sketches (``server/ngrams/ngrams.json``: heavy hitters of each device's top n-grams),
model updates (``server/state/run.json``: masked by secure aggregation or not, with or without
DP noise), and evaluation sums (every ``server/evals/*.json``). The report prints this
statement so that a reader knows what the server could have seen.

One more thing can take raw text off the devices: ``fedkb eval --references`` pools every
device's train sentences into the evaluating process to fit the references. It records that in
``<home>/references/pooled.json`` before fitting anything; while that folder exists, the statement
says so and where the references are, instead of "never".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.layout import METRICS_CSV, RUN_JSON


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def vocabulary_line(server_dir: Path) -> str:
    tok = _read(server_dir / "tokenizer" / "tokenizer.json")
    if tok is None:
        return "vocabulary: no tokenizer yet"
    g = tok.get("gathering") or {}
    if g.get("method") == "heavy_hitters":
        dp = g.get("dp")
        dp_text = f", DP ε = {dp.get('epsilon')}" if isinstance(dp, dict) else ", no DP"
        return (f"vocabulary: heavy-hitter sketches (IBLT) of each device's top {g.get('max_words_per_device')} words, "
                f"summed; words released only if typed on ≥ {g.get('k_anonymity')} devices{dp_text}")
    return "vocabulary: each device's word counts, summed (plain: the server saw the summed table of all words)"


def ngrams_line(server_dir: Path) -> str:
    record = _read(server_dir / "ngrams" / "ngrams.json")
    if record is None:
        return "n-grams: none gathered"
    p = record.get("privacy") or {}
    config = record.get("config") or {}
    dp = p.get("dp")
    dp_text = f", DP ε = {dp.get('epsilon')}" if isinstance(dp, dict) else ", no DP"
    return (f"n-grams: heavy-hitter sketches (IBLT) of each device's top {p.get('max_per_device')} n-grams of orders "
            f"1-{config.get('max_order')}, counts capped at {p.get('max_count')}, summed; n-grams released only if "
            f"typed on ≥ {p.get('k_anonymity')} devices{dp_text}")


def updates_line(server_dir: Path, privacy_spent: dict[str, Any] | None) -> str:
    run = _read(server_dir / RUN_JSON)
    if run is None:
        return "model updates: no training run recorded"
    p = run.get("privacy") or {}
    masked = _masking(p.get("secure_agg"), *_rounds_by_mode(server_dir / METRICS_CSV))
    if p.get("dp_noise"):
        eps = (privacy_spent or {}).get("epsilon")
        eps_text = (f"ε = {eps:.2f}, δ = {privacy_spent.get('delta'):.2g}" if isinstance(eps, (int, float))
                    else "ε not computed")
        dp = f"clipped ({p.get('dp_clip')}) with Gaussian noise ×{p.get('dp_noise')}: {eps_text}"
        if p.get("dp_mechanism") == "ftrl":
            rho = (privacy_spent or {}).get("rho")
            rho_text = f"ρ = {rho:.3g} (zCDP), " if isinstance(rho, (int, float)) else ""
            dp = (f"clipped ({p.get('dp_clip')}), summed into a tree of cumulative sums with Gaussian noise "
                  f"×{p.get('dp_noise')} on every node (DP-FTRL), each device at most once every "
                  f"{p.get('min_separation')} rounds, no sampling assumed: {rho_text}{eps_text}")
    elif p.get("dp_clip"):
        dp = f"clipped to {p.get('dp_clip')}, no noise (no DP guarantee)"
    else:
        dp = "no DP"
    return f"model updates: {masked}; {dp}"


def _rounds_by_mode(metrics_csv: Path) -> tuple[int, int]:
    """(live rounds, simulated rounds) recorded in metrics.csv (a live round's row has live = 1)."""
    import csv

    if not metrics_csv.is_file():
        return 0, 0
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    live = sum(1 for r in rows if r.get("live") not in (None, "", "0", "0.0"))
    return live, len(rows) - live


def _masking(secure_agg: bool, live: int, simulated: int) -> str:
    if not secure_agg:
        return "unmasked (the server saw each update)"
    parts = []
    if live:
        parts.append(f"{live} live round(s) masked by secure aggregation between the device agents (the coordinator "
                     "held no device's keys and received only masked updates and their sum)")
    if simulated or not live:
        parts.append(f"{simulated} simulated round(s) masked by simulated secure aggregation (the protocol ran "
                     "inside the server process, which also played the clients and so held each update)")
    return "; ".join(parts)


def raw_text_line(references_dir: Path | None) -> str:
    """Whether raw text left the devices: only to fit the references, if ``references_dir`` holds any."""
    if references_dir is None or not Path(references_dir).is_dir() or not any(Path(references_dir).iterdir()):
        return "raw text and token ids: never (they stay in devices/<id>/)"
    pooled = _read(Path(references_dir) / "pooled.json") or {}
    names = {"unigram": "unigram", "ngram": "Kneser-Ney trigram", "centralized_lstm": "centralized LSTM"}
    what = ", ".join(names.get(n, str(n)) for n in pooled.get("references") or names)
    how_many = (f"the train sentences of {pooled['devices']} devices ({pooled.get('sentences')} sentences)"
                if isinstance(pooled.get("devices"), int) else "the devices' train sentences")
    when = f" at {pooled['pooled_at']}" if pooled.get("pooled_at") else ""
    return (f"raw text: POOLED for the references — {how_many} were read into the evaluating process{when} to "
            f"fit the {what} references (fedkb eval --references), which are kept in {references_dir}, outside "
            "server/; deleting any device's data deletes them. Otherwise raw text and token ids stay in devices/<id>/")


def live_lines(server_dir: Path) -> list[str]:
    """What left the devices as live metrics (``federated/live_release.py``), if any were summed."""
    record = _read(server_dir / "live_metrics.json")
    if record is None:
        return []
    return [f"live metrics: sums of each device's typing counts (words, suggestions shown and accepted, letters saved) "
            f"per version and source, released only from ≥ {record.get('min_devices')} devices; each device's own "
            "counts stay on it"]


def ledger_lines(server_dir: Path) -> list[str]:
    """The privacy ledger (``federated/ledger.py``): the total and each part of what left the devices."""
    from federated import ledger

    run = _read(server_dir / RUN_JSON) or {}
    total = ledger.total(server_dir, dp_delta=(run.get("privacy") or {}).get("dp_delta"))
    if not total["parts"] and not total["outside_epsilon"]:
        return ["privacy ledger: no release recorded in state/ledger.jsonl (releases made before the ledger "
                "existed are not in it)"]
    return ledger.describe(total)


def statement(server_dir: Path, privacy_spent: dict[str, Any] | None = None,
              references_dir: Path | None = None) -> list[str]:
    """One line per kind of data that left the devices (``references_dir``: ``<home>/references``), then the
    privacy ledger."""
    return [
        vocabulary_line(server_dir),
        ngrams_line(server_dir),
        updates_line(server_dir, privacy_spent),
        "evaluation: per-round sums of hits, predictions and losses, and a histogram of per-device recall@1; "
        "each device's own result stays on it",
        *live_lines(server_dir),
        raw_text_line(references_dir),
        *ledger_lines(server_dir),
    ]
