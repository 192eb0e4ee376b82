"""``fedkb ngrams gather``: the private word n-gram table, from TFF's heavy hitters over every device."""

from __future__ import annotations

import argparse

from common.errors import ConfigError
from common.layout import Home
from federated.ngrams import NgramConfig


def config_from(args: argparse.Namespace) -> NgramConfig:
    if args.dp_delta is not None and args.dp_epsilon is None:
        raise ConfigError("--dp-delta needs --dp-epsilon")
    return NgramConfig(max_per_device=args.max_per_device, max_count=args.max_count, k_anonymity=args.k_anonymity,
                       max_order=args.max_order, dp_epsilon=args.dp_epsilon,
                       dp_delta=NgramConfig.dp_delta if args.dp_delta is None else args.dp_delta)


def describe(table, config: NgramConfig) -> str:
    """Two lines for the terminal: what was released per order, and how."""
    names = {1: "words", 2: "bigrams", 3: "trigrams"}
    released = ", ".join(f"{len(table.counts.get(o, {})):,} {names.get(o, f'{o}-grams')}" for o in config.orders)
    dp = table.mechanism
    privacy = (f"DP ε={dp.epsilon:g}, δ={dp.delta:g} (noise σ={dp.noise_stddev:.1f}, threshold {dp.threshold:.1f})"
               if dp else "no DP noise")
    return (f"{released} typed on ≥ {config.k_anonymity} devices, from {table.devices} devices "
            f"in {table.seconds:.0f} s\n"
            f"  each device sketched its top {config.max_per_device} n-grams per order, counts capped at "
            f"{config.max_count}; {privacy}")


def cmd_ngrams_gather(home: Home, args: argparse.Namespace) -> None:
    from rich.console import Console

    from federated.ngrams import gather_ngrams

    config = config_from(args)
    console = Console(highlight=False, soft_wrap=True)
    with console.status("Private n-grams with TensorFlow Federated: each device sketches its most frequent n-grams…"):
        table = gather_ngrams(home, config)
    console.print(f"Gathered private n-grams: {describe(table, config)}\n  saved in {home.ngrams}; "
                  "published with every model version from now on")


def demo_stage(home: Home, console) -> None:
    """The demo's n-gram stage: gathers the table with the default settings unless one is saved."""
    from federated.ngrams import current_table, gather_ngrams, read_record

    record = read_record(home)
    if record is not None and current_table(home) is not None:
        per_order = record.get("counts_per_order", {})
        console.print(f"   reusing the n-grams in {home.ngrams} ("
                      + ", ".join(f"{n:,} of order {o}" for o, n in per_order.items()) + ")")
        return
    config = NgramConfig()
    with console.status("   devices sketch their most frequent n-grams; TFF sums the sketches (heavy hitters)…"):
        table = gather_ngrams(home, config)
    console.print("   " + describe(table, config).replace("\n", "\n   ") + "; published with each version")


def add_parsers(sub) -> None:
    ng = sub.add_parser("ngrams", help="learn word n-gram counts privately from the devices (TFF heavy hitters)")
    ng_sub = ng.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = ng_sub.add_parser("gather", help="each device sketches its top n-grams; only those k devices typed come back")
    c = NgramConfig
    p.add_argument("--max-per-device", type=int, default=c.max_per_device, metavar="M",
                   help=f"n-grams of each order a device contributes, its most frequent (default {c.max_per_device})")
    p.add_argument("--max-count", type=int, default=c.max_count, metavar="C",
                   help=f"the most one device adds to one n-gram's count (default {c.max_count})")
    p.add_argument("--k-anonymity", type=int, default=c.k_anonymity, metavar="K",
                   help=f"devices that must type an n-gram for it to be released (default {c.k_anonymity})")
    p.add_argument("--max-order", type=int, default=c.max_order, metavar="N",
                   help=f"gather orders 1..N (default {c.max_order}: words, bigrams, trigrams)")
    p.add_argument("--dp-epsilon", type=float, default=c.dp_epsilon, metavar="EPS",
                   help="add Gaussian noise and a threshold: (EPS, δ)-DP per device, all orders together "
                   "(default: no noise)")
    p.add_argument("--dp-delta", type=float, default=None, metavar="DELTA",
                   help=f"δ of the DP release (default {c.dp_delta:g})")
    p.set_defaults(func=cmd_ngrams_gather)
