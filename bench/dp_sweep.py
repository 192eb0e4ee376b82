"""Recall@1 and ε of DP-FedAvg and DP-FTRL at several noise multipliers on the bundled corpus.

For each noise multiplier Z the same seeded home (copied) trains with ``fedkb train
--dp-noise Z`` (DP-FedAvg: adaptive clipping, the default server optimizer) and, for each
``--ftrl-noise`` Z, with ``--dp-mechanism ftrl --dp-noise Z --dp-clip C --min-separation B
--server-optimizer sgdm`` (DP-FTRL), for the same rounds and clients per round; then ``fedkb eval``
measures the final version on the same devices' held-out sentences. ε (and ρ for DP-FTRL) comes
from the version's manifest: DP-FedAvg's RDP accountant assumes Poisson sampling at clients /
available devices per round (``epsilon_fixed_size`` is the bound for the fixed-size draw);
DP-FTRL's tree accountant assumes no sampling, only the separation. With ``--pretrain-seconds S``
the reference home first pretrains on the bundled public text (no device data), and every run
starts from that model.

    uv run python bench/dp_sweep.py [--noise 0 0.5 1.0] [--ftrl-noise 1 4] [--min-separation 10] [--rounds 30]
        [--clients 20] [--eval-devices 100] [--delta 1e-10] [--pretrain-seconds 45]
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
    parser.add_argument("--noise", nargs="*", type=float, default=[0.0, 0.5, 1.0],
                        help="DP-FedAvg noise multipliers (0: no DP)")
    parser.add_argument("--ftrl-noise", nargs="*", type=float, default=[],
                        help="DP-FTRL noise multipliers (none by default)")
    parser.add_argument("--min-separation", type=int, default=10, help="DP-FTRL: rounds between a device's rounds")
    parser.add_argument("--ftrl-clip", type=float, default=0.1,
                        help="DP-FTRL's fixed clip (default 0.1, adaptive clipping's starting norm)")
    parser.add_argument("--ftrl-server-lr", type=float, default=1.0,
                        help="DP-FTRL's server SGD learning rate (momentum 0.9; default 1.0)")
    parser.add_argument("--delta", type=float, default=None, help="δ of every run's ε (default: fedkb train's)")
    parser.add_argument("--pretrain-seconds", type=float, default=0,
                        help="pretrain the reference home on public text first (default 0: random start)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--eval-devices", type=int, default=100)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args(argv)

    reference = shakespeare_home(args.work, vocab_size=8000)
    if args.pretrain_seconds > 0 and not (reference.pretrained / "weights.npz").is_file():
        with Stopwatch() as t:
            fedkb(reference, "pretrain", "--seconds", f"{args.pretrain_seconds:g}")
        print(f"pretrained the reference home on public text in {t.seconds:.0f} s", flush=True)
    delta = ["--dp-delta", f"{args.delta:g}"] if args.delta else []
    runs = [("gaussian", z) for z in args.noise] + [("ftrl", z) for z in args.ftrl_noise]
    results = []
    for mechanism, z in runs:
        home = Home(args.work / (f"dp-{z:g}" if mechanism == "gaussian" else f"dp-ftrl-{z:g}"))
        shutil.rmtree(home.root, ignore_errors=True)
        shutil.copytree(reference.root, home.root, ignore=shutil.ignore_patterns("state", "models", "metrics.csv",
                                                                                  "evals", "tensorboard", "baselines"))
        dp = ["--dp-noise", str(z), *delta] if z > 0 else []
        if mechanism == "ftrl":
            dp += ["--dp-mechanism", "ftrl", "--dp-clip", f"{args.ftrl_clip:g}", "--min-separation",
                   str(args.min_separation), "--server-optimizer", "sgdm", "--server-lr", f"{args.ftrl_server_lr:g}"]
        with Stopwatch() as t:
            fedkb(home, "train", "--rounds", str(args.rounds), "--clients-per-round", str(args.clients), *dp,
                  "--publish-every", str(args.rounds))
        report = home.root / "eval.json"
        fedkb(home, "eval", "--version", "0001", "--devices", str(args.eval_devices), "--no-baselines",
              "--json", str(report))
        result = json.loads(report.read_text())
        p = result["privacy"]
        row = {"mechanism": mechanism if z > 0 else "none", "noise_multiplier": z,
               "rho": p.get("rho"), "min_separation": p.get("min_separation"),
               "max_participations": p.get("max_participations"),
               "recall_at_1": result["recall_at_1"], "recall_at_3": result["recall_at_3"],
               "epsilon": p.get("epsilon"), "epsilon_fixed_size": p.get("epsilon_fixed_size"), "delta": p.get("delta"),
               "rounds": args.rounds, "clients_per_round": args.clients, "train_s": t.seconds,
               "devices": result["devices"], "predictions": result["predictions"]}
        results.append(row)
        eps = "∞ (no noise)" if row["epsilon"] is None else f"{row['epsilon']:.2f}"
        name = {"gaussian": "DP-FedAvg", "ftrl": "DP-FTRL"}[mechanism] if z > 0 else "no DP"
        rho = f", ρ = {row['rho']:.3g}" if row["rho"] is not None else ""
        print(f"{name} Z = {z:g}: recall@1 {row['recall_at_1']:.2%}, @3 {row['recall_at_3']:.2%}, "
              f"ε = {eps}{rho} at δ = {row['delta']:.2g} "
              f"({args.rounds} rounds of {args.clients}; train {t.seconds:.0f} s)", flush=True)
    emit({"runs": results})


if __name__ == "__main__":
    main()
