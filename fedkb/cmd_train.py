"""``fedkb train``: federated training rounds in the simulation (resumes from the last checkpoint)."""

from __future__ import annotations

import argparse

from common.layout import Home
from fedkb.options import UserError, add_train_options, privacy_config_from, train_config_from, train_with_progress
from fedkb.options import console as _console


def cmd_train(home: Home, args: argparse.Namespace) -> None:
    check_train_inputs(home)
    console = _console()
    with console.status("Starting TensorFlow Federated…"):
        from federated import program, run_setup  # noqa: F401  (program: TensorFlow Federated loads under the status)
        from fedkb.cmd_eval import tff_runtime

    train, privacy = train_config_from(args), privacy_config_from(args)
    _, tokenizer, model = run_setup.prepare(home, train)  # fail fast, before starting the runtime
    if not args.no_pretrained:
        from federated import pretrain

        start = pretrain.starting_point(home, tokenizer, model)
        if start is not None:
            console.print(f"Pretrained model: {start.path} ({start.record['tokens_trained']:,} tokens of "
                          f"{start.record['corpus']['path']}); a new run starts from it "
                          "(--no-pretrained: random weights)")
    if args.workers and len(args.workers) > 1 and privacy.secure_agg:
        raise UserError("--secure-agg runs on one runtime: TFF's mergeable context cannot split the protocol's "
                        "rounds across --workers")
    with tff_runtime(home, console, workers=args.workers, workers_wait=args.workers_wait):
        train_with_progress(home, train, rounds=args.rounds, publish_every=args.publish_every,
                            fresh=args.fresh, console=console, privacy=privacy, pretrained=not args.no_pretrained)


def check_train_inputs(home: Home) -> None:
    """Refuses a home without devices or tokenizer before TensorFlow Federated's ~15 s import."""
    from federated.population import members
    from tokenizer.vocab import Tokenizer, TokenizerError  # sentencepiece only

    if not members(home):
        raise UserError(f"no devices in {home.devices}; run `fedkb population seed --corpus shakespeare` first")
    try:
        Tokenizer.load(home.tokenizer)
    except TokenizerError as exc:
        raise UserError(str(exc)) from None


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="run federated training rounds (resumes from the last checkpoint)")
    p.add_argument("--rounds", type=int, required=True, help="train until this many rounds are complete")
    add_train_options(p)
    p.add_argument("--fresh", action="store_true", help="discard existing checkpoints and metrics and start over")
    p.set_defaults(func=cmd_train)
