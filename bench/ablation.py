"""The product's ablation: each part added in turn, every row scored on the same devices' words.

Two demo runs on the same corpus, seed and settings, one with public-data pretraining switched
off (``fedkb demo --no-pretrained``) and one with the demo's defaults. From their evaluations:

    global LSTM alone            run without pretraining, the federated LSTM's own beam
     + personal model            the same LSTM mixed with the device's personal model
     + private n-grams           ... and with the n-grams published with the version
     + pretraining               the same three parts, the LSTM federated from the pretrained one
    the product                  what ``fedkb demo`` gives with its defaults (the row above)
    unigram, KN trigram, centralized LSTM   the references, fitted on pooled text (labelled so; the
                                 defaults run passes ``--references``, so they are in its
                                 ``references/evals/``, outside ``server/``)

It writes ``ablation.json`` into the defaults run's ``server/`` so ``fedkb report`` shows the table,
prints the table, and ends with one JSON line.

    uv run python bench/ablation.py [--corpus shakespeare|PATH] [--work DIR] [--eval-devices N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fedbench import DEFAULT_WORK, emit  # first: repo on sys.path

from common.layout import Home

REPO = Path(__file__).resolve().parent.parent
ROWS = ("global LSTM alone", " + personal model", " + private n-grams", " + pretraining", "the product",
        "unigram (reference)", "KN trigram (pooled reference)", "centralized LSTM (pooled reference)")


def demo(home: Path, corpus: str, extra: list[str]) -> tuple[dict, float]:
    """Runs ``fedkb demo`` in a fresh home; returns its evaluation of the installed version and seconds.

    With ``--references`` in ``extra`` the references' rows (``<home>/references/evals/``) are added
    under ``"baselines"``.
    """
    shutil.rmtree(home, ignore_errors=True)
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "fedkb.cli", "--home", str(home), "demo", "--corpus", corpus, *extra],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"fedkb demo {' '.join(extra)} failed:\n{out.stderr[-3000:]}")
    evals = sorted(Home(home).evals.glob("*.json"))
    if not evals:
        raise SystemExit(f"fedkb demo left no evaluation in {Home(home).evals}")
    result = json.loads(evals[-1].read_text())
    refs = Home(home).reference_evals / evals[-1].name
    if refs.is_file():
        result["baselines"] = json.loads(refs.read_text())["baselines"]
    return result, time.monotonic() - started


def rows(plain: dict, pretrained: dict) -> list[dict]:
    """The ablation table from the two runs' evaluation results (recall as fractions)."""
    def row(name: str, result: dict | None) -> dict:
        keys = ("recall_at_1", "recall_at_3", "recall_at_5", "oov_rate", "predictions")
        return {"row": name, **({k: result.get(k) for k in keys} if result else {k: None for k in keys})}

    products, base = plain.get("products", {}), pretrained.get("baselines", {})
    ngrams = "lstm_personal" in products  # without published n-grams "product" is LSTM + personal
    return [
        row(ROWS[0], plain),
        row(ROWS[1], products.get("lstm_personal" if ngrams else "product")),
        row(ROWS[2], products.get("product") if ngrams else None),
        row(ROWS[3], pretrained.get("products", {}).get("product")),
        row(ROWS[4], pretrained.get("products", {}).get("product")),
        row(ROWS[5], base.get("unigram")),
        row(ROWS[6], base.get("ngram")),
        row(ROWS[7], base.get("centralized_lstm")),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="shakespeare",
                        help="the bundled corpus or a JSONL file (default shakespeare)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK / "ablation")
    parser.add_argument("--eval-devices", type=int, default=None, help="devices that evaluate (default: the demo's)")
    args = parser.parse_args(argv)

    extra = [] if args.eval_devices is None else ["--eval-devices", str(args.eval_devices)]
    plain, plain_s = demo(args.work / "no-pretraining", args.corpus, [*extra, "--no-pretrained"])
    pretrained, pretrained_s = demo(args.work / "defaults", args.corpus, [*extra, "--references"])
    table = rows(plain, pretrained)
    record = {"bench": "ablation", "corpus": args.corpus, "devices": pretrained.get("devices"),
              "predictions": pretrained.get("predictions"), "rows": table,
              "demo_seconds": {"no_pretraining": round(plain_s, 1), "defaults": round(pretrained_s, 1)}}
    (args.work / "defaults" / "server" / "ablation.json").write_text(json.dumps(record, indent=2))
    print(f"ablation on {args.corpus}: {record['devices']} devices, {record['predictions']:,} predictions each row")
    print(f"{'':38} {'recall@1':>9} {'recall@3':>9} {'recall@5':>9}")
    for r in table:
        print(f"{r['row']:38} " + " ".join(f"{100 * r[k]:8.1f}%" if r[k] is not None else f"{'–':>9}"
                                          for k in ("recall_at_1", "recall_at_3", "recall_at_5")))
    emit(record)


if __name__ == "__main__":
    main()
