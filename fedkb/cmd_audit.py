"""``fedkb audit``: how much of a planted canary each published model memorized, with and without DP."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from common.atomic import atomic_write
from common.layout import Home
from fedkb.options import UserError, add_train_options, privacy_config_from, train_config_from
from fedkb.options import console as _console

HELP = """\
Plants canary sentences on devices and measures how much each published model memorized them:
the exposure of Carlini et al. 2019 ("The Secret Sharer"), log2|R| - log2(rank of the canary
among all |R| candidates of its format, by the model's log-perplexity). A canary is a few prefix
words and S secret words, all drawn from the W most frequent whole-word pieces of the home's
tokenizer (so the model can learn them); |R| = W^S candidates are enumerated exactly. The audit
trains once without DP and once per --dp-noise level, each from the same planted population.

It works on a COPY of the home: the population index, the first --devices devices' typing logs
(read through SQLite's backup API, read-only), the tokenizer and the pretrained model are copied
into a scratch folder (--work, or a temporary folder removed afterwards), and the canaries are
planted and the models trained there. The home's devices and server state are never written,
except the result, <home>/server/audit.json, which `fedkb report` shows."""


def cmd_audit(home: Home, args: argparse.Namespace) -> None:
    from federated.audit import RESULT_FILE, AuditConfig, audit, check_home, dp_runs
    from fedkb.cmd_eval import tff_runtime

    console = _console()
    config = AuditConfig(canaries=args.canaries, canary_devices=args.canary_devices, repeats=args.repeats,
                         prefix_words=args.prefix_words, secret_words=args.secret_words, space=args.space,
                         devices=args.devices,
                         seed=0 if args.seed is None else args.seed)  # which canaries, on which devices
    noises = args.dp_noise_levels
    if any(not z > 0 for z in noises):
        raise UserError(f"--dp-noise: every level must be > 0 (the no-DP run is always made), got {noises}")
    check_home(home, config)  # before TensorFlow starts
    if args.work:
        work = Path(args.work)
        if work.resolve().is_relative_to(home.root.resolve()):
            raise UserError(f"--work {work} is inside the home {home.root}; give a folder outside it")
        if work.exists() and (not work.is_dir() or any(work.iterdir())):
            raise UserError(f"--work {work}: must be a new or empty folder")
    args.dp_noise = 0.0
    train, base = train_config_from(args), privacy_config_from(args)  # (imports TensorFlow)
    runs = dp_runs(noises, args.dp_clip, args.dp_delta, base)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fedkb-audit-"))
    try:
        with tff_runtime(Home(work / "runtime"), console, workers=args.workers,
                         workers_wait=args.workers_wait):
            result = audit(home, work, config, train, runs, rounds=args.rounds, publish_every=args.publish_every,
                           pretrained=not args.no_pretrained, on_event=lambda s: console.print(s),
                           on_round=lambda r: console.print(
                               f"  round {r.round_num:>3}  loss {r.metrics['loss']:.3f}  {len(r.clients)} clients"
                               + (f"  → version {r.published}" if r.published else "")))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    home.server.mkdir(parents=True, exist_ok=True)
    atomic_write(home.server / RESULT_FILE, json.dumps(result, indent=2).encode())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    from eval.audit import render_terminal

    render_terminal(result, console)
    console.print(f"Result: {home.server / RESULT_FILE}" + (f" and {args.json}" if args.json else "")
                  + (f"; scratch homes kept in {work}" if args.work else ""))
    console.print(json.dumps(summary_line(result)))


def summary_line(result: dict) -> dict:
    """The last version's mean exposure per run (the figure the audit is for), as one JSON object."""
    def last(run: dict) -> dict:
        v = run["versions"][-1] if run["versions"] else {}
        return {"mean_exposure": v.get("mean_exposure"), "mean_control_exposure": v.get("mean_control_exposure"),
                "epsilon": (v.get("privacy") or {}).get("epsilon")}

    return {"audit": {run["name"]: last(run) for run in result["runs"]},
            "max_exposure": result["max_exposure"], "space": result["space"]}


def add_parsers(sub) -> None:
    p = sub.add_parser("audit", help="plant canaries in a scratch copy of the population and measure their "
                                     "exposure in models trained with and without DP",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                       conflict_handler="resolve")
    p.add_argument("--rounds", type=int, default=30, help="rounds of each training run (default 30)")
    p.add_argument("--work", help="scratch folder for the copied population and the runs, new or empty; kept "
                                  "afterwards (default: a temporary folder, removed)")
    p.add_argument("--devices", type=int, default=None, help="copy only the first N devices (default: all)")
    p.add_argument("--canaries", type=int, default=4, help="canary sentences (default 4)")
    p.add_argument("--canary-devices", type=int, default=1, help="devices each canary is planted on (default 1)")
    p.add_argument("--repeats", type=int, default=10, help="copies of the canary on each of its devices (default 10)")
    p.add_argument("--prefix-words", type=int, default=3,
                   help="words of the canary format before the secret (default 3)")
    p.add_argument("--secret-words", type=int, default=2, help="S, words in the secret slot (default 2)")
    p.add_argument("--space", type=int, default=300,
                   help="W, candidate words (the tokenizer's most frequent whole-word pieces); |R| = W^S (default 300)")
    p.add_argument("--json", help="also write the result to this file")
    add_train_options(p)
    # The audit takes several noise levels (this replaces `train`'s --dp-noise); a no-DP run is always made.
    p.add_argument("--dp-noise", dest="dp_noise_levels", type=_noise_levels, default=[1.0], metavar="Z[,Z…]",
                   help="noise multipliers of the DP runs, comma-separated (default 1.0); a no-DP run is always made")
    p.set_defaults(func=cmd_audit)


def _noise_levels(value: str) -> list[float]:
    try:
        levels = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--dp-noise: {value!r} is not a comma-separated list of numbers") from None
    if not levels:
        raise argparse.ArgumentTypeError("--dp-noise needs at least one level")
    return levels
