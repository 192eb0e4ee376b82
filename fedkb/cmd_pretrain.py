"""``fedkb pretrain``: train the model centrally on public text before the federated rounds."""

from __future__ import annotations

import argparse
from dataclasses import fields

from common.layout import Home


def _optional(kind):
    """``kind``, with 0 meaning no limit (None)."""

    def parse(value: str):
        number = kind(value)
        return None if number == 0 else number

    parse.__name__ = kind.__name__
    return parse


_METAVARS = {"tokens": "N", "seconds": "S", "learning_rate": "LR", "batch_size": "B"}


def add_pretrain_options(p: argparse.ArgumentParser, *, with_preset: bool = True, **defaults) -> None:
    """One option per ``PretrainConfig`` field, its default and help read from the field.

    ``defaults`` overrides a field's default (the demo's wall-clock budget, for one). Without
    ``with_preset`` the command's own ``--preset`` (that of ``fedkb train``) is used.
    """
    from federated.pretrain import PretrainConfig

    types = {"tokens": _optional(int), "seconds": _optional(float)}
    for f in fields(PretrainConfig):
        default = defaults.get(f.name, f.default)
        flag = f"--{f.name.replace('_', '-')}"
        if f.name == "preset":
            if with_preset:
                p.add_argument(flag, choices=("tiny", "small", "gboard"), default=default,
                               help=f"{f.metadata['help']} (default {default})")
            continue
        shown = "none" if default is None else f"{default:,}" if isinstance(default, int) else f"{default:g}"
        p.add_argument(flag, dest=f"pretrain_{f.name}", type=types.get(f.name, type(f.default)), default=default,
                       metavar=_METAVARS.get(f.name, f.name.upper()), help=f"{f.metadata['help']} (default {shown})")


def config_from(args: argparse.Namespace):
    from federated.pretrain import PretrainConfig

    values = {f.name: getattr(args, f"pretrain_{f.name}") for f in fields(PretrainConfig) if f.name != "preset"}
    return PretrainConfig(preset=args.preset, **values)


def do_pretrain(home: Home, console, corpus, config, *, indent: str = "") -> dict:
    """Runs ``pretrain`` under a progress bar; prints and returns the record."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from federated.pretrain import pretrain

    budget = " or ".join(b for b in (config.tokens and f"{config.tokens:,} tokens",
                                     config.seconds and f"{config.seconds:g} s") if b)
    with Progress(TextColumn(f"{indent}[bold]pretraining[/]"), BarColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("reading and encoding the public text…", total=1.0)

        def on_batch(tokens: int, seconds: float) -> None:
            done = max(tokens / config.tokens if config.tokens else 0,
                       seconds / config.seconds if config.seconds else 0)
            progress.update(task, completed=min(done, 1.0), description=f"{tokens:,} tokens, {tokens / seconds:,.0f}/s")

        record = pretrain(home, corpus, config, on_batch=on_batch)
    curve = record["loss_curve"]
    c = record["corpus"]
    console.print(
        f"{indent}Pretrained the {config.preset} model on {c['path']} "
        f"({c['passages']:,} passages, {c['tokens']:,} tokens, "
        f"{c['unk_rate']:.2%} <unk>) until {budget} ({record['stopped_by']} ran out first): "
        f"[bold]{record['tokens_trained']:,}[/] tokens ({record['passes']:.2f} passes) in {record['seconds']:.0f} s, "
        f"loss {curve[0][1]:.2f} → {curve[-1][1]:.2f}\n"
        f"{indent}  saved in {home.pretrained}; `fedkb train` starts a new run from it"
    )
    return record


def cmd_pretrain(home: Home, args: argparse.Namespace) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    config = config_from(args)
    from federated import public_text
    from federated.pretrain import home_tokenizer

    home_tokenizer(home)  # a missing tokenizer or corpus fails here, before TensorFlow's import
    public_text.resolve(args.corpus)
    with console.status("Loading TensorFlow…"):
        import tensorflow  # noqa: F401  (so that the progress bar starts with the work)
    do_pretrain(home, console, args.corpus, config)


def add_parsers(sub) -> None:
    p = sub.add_parser("pretrain",
                       help="train the model centrally on public text (never device text) before the rounds")
    p.add_argument("--corpus", default="public",
                   help="'public' (the bundled public-domain corpus) or a .txt[.gz] file with one passage per line, "
                        "or .jsonl[.gz] records with a \"text\" field")
    add_pretrain_options(p)
    p.set_defaults(func=cmd_pretrain)
