"""What the ``fedkb`` commands share: the user-facing error, the training options and their configs.

The CLI (``fedkb/cli.py``) and its command modules (``fedkb/cmd_*.py``) import this; it imports
none of them, so the CLI stays a leaf that nothing imports.
"""

from __future__ import annotations

import argparse

from common.config_options import add_config_arguments
from common.errors import FedkbError
from common.layout import Home


class UserError(FedkbError):
    """An error the user can fix; printed without a traceback."""


def console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def train_config_from(args: argparse.Namespace):
    from federated.configs import TrainConfig

    return TrainConfig(
        preset=args.preset, clients_per_round=args.clients_per_round, server_optimizer=args.server_optimizer,
        client_lr=args.client_lr, client_clip_norm=args.client_clip_norm, server_lr=args.server_lr,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size, min_examples=args.min_examples,
        seed=0 if args.seed is None else args.seed, public_sampling=args.seed is not None,
    )


def privacy_config_from(args: argparse.Namespace):
    from federated.ftrl import FtrlError, check_server_optimizer
    from federated.privacy import PrivacyConfig, PrivacyError

    try:
        privacy = PrivacyConfig(dp_noise=args.dp_noise, dp_clip=args.dp_clip, dp_delta=args.dp_delta,
                                secure_agg=args.secure_agg, dp_mechanism=args.dp_mechanism,
                                min_separation=args.min_separation)
        if privacy.ftrl:
            check_server_optimizer(args.server_optimizer)
    except (PrivacyError, FtrlError) as exc:
        raise UserError(str(exc)) from None
    return privacy


def train_with_progress(home: Home, train, *, rounds: int, publish_every: int, fresh: bool, console, privacy=None,
                        pretrained: bool = True):
    """Runs ``program.run`` under a progress bar that shows loss and accuracy per round."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from federated import program

    with Progress(TextColumn("[bold]round[/]"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("building the federated computation…", total=rounds)

        def on_round(r: program.RoundResult) -> None:
            m = r.metrics
            line = (f"loss {m['loss']:.3f}  acc {m['accuracy_without_pad']:.3f}  "
                    f"{m['clients']:.0f} clients of {m['available_devices']:.0f} available  {r.seconds:.1f} s")
            progress.update(task, completed=r.round_num, description=line)
            published = f"  → published version {r.published}" if r.published else ""
            progress.console.print(f"round {r.round_num:>4}  {line}" + published)

        summary = program.run(home, train, privacy=privacy, rounds=rounds, publish_every=publish_every, fresh=fresh,
                              pretrained=pretrained, on_round=on_round)
        progress.update(task, completed=summary.end_round)
    if not summary.rounds:
        console.print(f"Already at round {summary.start_round} (asked for {rounds}); nothing to train.")
    else:
        console.print(
            f"Rounds {summary.start_round + 1}–{summary.end_round} done; metrics in {home.metrics_csv}, "
            f"checkpoints in {home.state}"
            + (f"; published {', '.join(summary.published)} in {home.models}" if summary.published else "")
        )
    if privacy is not None and summary.rounds:
        from federated import ledger
        from federated.population import members

        total = ledger.total(home.server, population=len(members(home)), dp_delta=privacy.dp_delta)
        for line in ledger.describe(total):
            console.print(line)
        if train.public_sampling:
            console.print(f"Participants were drawn from --seed {train.seed}: the sampling is public, so the ε that "
                          "holds is the one without amplification by sampling.")
    return summary


def parse_targets(value: str) -> list[str]:
    """``host:port,host:port`` -> the list, each checked."""
    targets = [t.strip() for t in value.split(",") if t.strip()]
    if not targets:
        raise argparse.ArgumentTypeError("--workers needs at least one HOST:PORT")
    for t in targets:
        host, sep, port = t.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(f"--workers: {t!r} is not HOST:PORT (for example 127.0.0.1:8001)")
    if len(set(targets)) != len(targets):
        raise argparse.ArgumentTypeError(f"--workers lists a worker twice: {value}")
    return targets


def add_train_options(p: argparse.ArgumentParser, *, clients_per_round: int | None = None) -> None:
    """Options shared by ``train``, ``serve`` and ``demo``; defaults and help from ``TrainConfig``."""
    from federated.configs import TrainConfig

    add_config_arguments(p, TrainConfig, ("clients_per_round", "preset", "server_optimizer", "client_lr",
                                          "client_clip_norm", "server_lr", "local_epochs", "batch_size",
                                          "min_examples"),
                         defaults={} if clients_per_round is None else {"clients_per_round": clients_per_round})
    p.add_argument("--seed", type=int, default=None,
                   help="make the run reproducible, for research: participants are drawn from this seed, so the "
                        "sampling is public and ε holds without amplification by sampling (default: a secret key "
                        "in server/state draws them; availability and shuffling use seed 0)")
    p.add_argument("--publish-every", type=int, default=5, help="publish a model version every N rounds and at the end")
    p.add_argument("--workers", type=parse_targets, default=None, metavar="HOST:PORT,...",
                   help="run rounds on these `fedkb worker` services instead of a local worker")
    p.add_argument("--workers-wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for every --workers service to answer before giving up (default 60)")
    p.add_argument("--no-pretrained", action="store_true",
                   help="start a new run from random weights even if `fedkb pretrain` left a pretrained model "
                        "in the home (by default a new run starts from it)")
    dp = p.add_argument_group("privacy")
    dp.add_argument("--dp-noise", type=float, default=0.0, metavar="Z",
                    help="differential privacy: Gaussian noise multiplier on the clipped updates (default 0: off)")
    dp.add_argument("--dp-clip", default=None, metavar="adaptive|C",
                    help="clip each device's update to L2 norm C, or 'adaptive' (median norm; default with --dp-noise)")
    dp.add_argument("--dp-delta", type=float, default=None,
                    help="δ of the reported (ε, δ) (default 1 / population^1.1)")
    dp.add_argument("--dp-mechanism", choices=("gaussian", "ftrl"), default="gaussian",
                    help="gaussian: DP-FedAvg, fresh noise each round, ε with amplification by sampling (default); "
                         "ftrl: DP-FTRL (Kairouz et al. 2021, as Gboard trains), tree-aggregated noise, no sampling "
                         "assumed; needs --min-separation, a fixed --dp-clip and --server-optimizer sgdm "
                         "(simulation only)")
    dp.add_argument("--min-separation", type=int, default=None, metavar="B",
                    help="ftrl: a device takes part at most once every B rounds")
    dp.add_argument("--secure-agg", action="store_true",
                    help="secure aggregation (Bonawitz et al. 2017): live rounds run it between the device agents, "
                         "which keep their own keys and shares, so the coordinator sees only masked updates and "
                         "their sum; the simulation (`fedkb train`) runs every client's side in its own process")
