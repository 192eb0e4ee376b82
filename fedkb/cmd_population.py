"""``fedkb population seed`` and ``fedkb population show``: the simulated devices."""

from __future__ import annotations

import argparse

from common.layout import Home
from federated.configs import SeedConfig, TrainConfig
from fedkb.options import UserError, add_config_arguments
from fedkb.options import console as _console


def cmd_population_seed(home: Home, args: argparse.Namespace) -> None:
    from federated.corpus import resolve_corpus
    from federated.population import seed

    config = SeedConfig(min_sentences=args.min_sentences, max_devices=args.max_devices, seed=args.seed)
    corpus = resolve_corpus(args.corpus)
    report = seed(home, corpus, min_sentences=config.min_sentences, max_devices=config.max_devices,
                  append=args.append, seed=config.seed)
    _console().print(
        f"Seeded [bold]{report.devices_created}[/] new devices"
        + (f" and appended to {report.devices_appended}" if report.devices_appended else "")
        + f" with {report.sentences_written:,} sentences from {report.corpus}\n"
        f"  {report.records:,} records, {report.users:,} users, "
        f"{report.dropped_small_users:,} users with fewer than {args.min_sentences} sentences left out\n"
        f"  devices are in {home.devices}"
    )


def cmd_population_show(home: Home, args: argparse.Namespace) -> None:
    from rich.table import Table

    from federated.population import available, conditions_now, members
    from keyboard.store import Device

    population = members(home)
    if not population:
        raise UserError(f"no devices in {home.devices}; run `fedkb population seed --corpus shakespeare` first")
    cond = conditions_now(population)
    ok = available(cond)
    table = Table(title=f"Devices in {home.devices}")
    table.add_column("device", overflow="ellipsis", no_wrap=True, min_width=12, max_width=22)
    for col in ("sent.", "train", "held", "idle", "chg.", "wifi", "round"):
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    total = eligible = 0
    shown = population if args.all else population[: args.limit]
    statuses = {}
    for i, m in enumerate(population):
        with Device(home.device(m.device_id)) as device:
            st = device.status()
        statuses[m.device_id] = st
        total += st["sentences"]
        eligible += bool(ok[i]) and st["train_sentences"] >= args.min_examples
    yes = lambda b: "✓" if b else "·"  # noqa: E731
    for i, m in enumerate(shown):
        st = statuses[m.device_id]
        table.add_row(m.device_id, str(st["sentences"]), str(st["train_sentences"]),
                      str(st["heldout_sentences"]), yes(cond["idle"][i]), yes(cond["charging"][i]),
                      yes(cond["unmetered"][i]), str(st.get("last_round") or "-"))
    console = _console()
    console.print(table)
    console.print("  sent. = sentences logged, held = held-out (newest 20 %), chg. = charging, "
                  "wifi = unmetered network, round = last federated round joined")
    if len(shown) < len(population):
        console.print(f"  … {len(population) - len(shown)} more (use --all)")
    console.print(
        f"[bold]{len(population)}[/] devices, {total:,} sentences; eligible now (idle, charging, unmetered, "
        f"≥ {args.min_examples} train sentences): [bold]{eligible}[/] ({eligible / len(population):.0%})"
    )


def add_parsers(sub) -> None:
    pop = sub.add_parser("population", help="seed and inspect the device population")
    pop_sub = pop.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = pop_sub.add_parser("seed", help="create one device per user of a JSONL corpus")
    p.add_argument("--corpus", required=True,
                   help="'shakespeare' (bundled) or a JSONL / JSONL.gz file of {user, text[, timestamp]}")
    add_config_arguments(p, SeedConfig, ("min_sentences", "max_devices"))
    p.add_argument("--append", action="store_true", help="add to an existing population")
    add_config_arguments(p, SeedConfig, ("seed",))
    p.set_defaults(func=cmd_population_seed)
    p = pop_sub.add_parser("show", help="devices, sentences, and how many are eligible now")
    p.add_argument("--limit", type=int, default=20, help="rows to show (default 20)")
    p.add_argument("--all", action="store_true", help="show every device")
    add_config_arguments(p, TrainConfig, ("min_examples",))
    p.set_defaults(func=cmd_population_show)
