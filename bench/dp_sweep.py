"""Recall@1 and ε of DP-FedAvg at several noise multipliers on the bundled corpus.

For each noise multiplier Z the same seeded home (copied) trains with ``fedkb train
--dp-noise Z`` for the same rounds and clients per round, then ``fedkb eval`` measures the
final version on the same devices' held-out sentences. ε comes from the version's manifest
(RDP accountant, δ = 1/population).

    uv run python bench/dp_sweep.py [--noise 0 0.5 1.0] [--rounds 30] [--clients 20] [--eval-devices 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from fedbench import DEFAULT_WORK, Home, Stopwatch, emit, shakespeare_home  # first: repo on sys.path

REPO = Path(__file__).resolve().parent.parent


def fedkb(home: Home, *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "fedkb.cli", "--home", str(home.root), *args], cwd=REPO,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"fedkb {' '.join(args)} failed:\n{out.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.5, 1.0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--eval-devices", type=int, default=100)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args(argv)

    reference = shakespeare_home(args.work, vocab_size=8000)
    results = []
    for z in args.noise:
        home = Home(args.work / f"dp-{z:g}")
        shutil.rmtree(home.root, ignore_errors=True)
        shutil.copytree(reference.root, home.root, ignore=shutil.ignore_patterns("state", "models", "metrics.csv",
                                                                                  "evals", "tensorboard", "baselines"))
        dp = ["--dp-noise", str(z)] if z > 0 else []
        with Stopwatch() as t:
            fedkb(home, "train", "--rounds", str(args.rounds), "--clients-per-round", str(args.clients), *dp,
                  "--publish-every", str(args.rounds))
        report = home.root / "eval.json"
        fedkb(home, "eval", "--version", "0001", "--devices", str(args.eval_devices), "--no-baselines",
              "--json", str(report))
        result = json.loads(report.read_text())
        p = result["privacy"]
        row = {"noise_multiplier": z, "recall_at_1": result["recall_at_1"], "recall_at_3": result["recall_at_3"],
               "epsilon": p.get("epsilon"), "epsilon_fixed_size": p.get("epsilon_fixed_size"), "delta": p.get("delta"),
               "rounds": args.rounds, "clients_per_round": args.clients, "train_s": t.seconds,
               "devices": result["devices"], "predictions": result["predictions"]}
        results.append(row)
        eps = "∞ (no noise)" if row["epsilon"] is None else f"{row['epsilon']:.2f}"
        print(f"Z = {z:g}: recall@1 {row['recall_at_1']:.2%}, @3 {row['recall_at_3']:.2%}, ε = {eps} at δ = "
              f"{row['delta']:.2g} ({args.rounds} rounds of {args.clients}; train {t.seconds:.0f} s)", flush=True)
    emit({"runs": results})


if __name__ == "__main__":
    main()
