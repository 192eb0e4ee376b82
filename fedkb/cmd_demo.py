"""``fedkb demo`` (the whole story on the bundled corpus) and ``fedkb serve --simulate`` (rounds as devices allow)."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from common.layout import Home
from federated.configs import RolloutConfig

PUBLIC_CORPUS = "public"  # the bundled public-domain text (federated/corpora/PUBLIC-SOURCE.md)
PRETRAIN_SECONDS = 45.0  # the demo's wall-clock budget for pretraining
PIECES = "devices"  # where SentencePiece's word counts come from (measured: public text adds nothing, rounds take 2.4x)


def cmd_demo(home: Home, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.rule import Rule

    from federated.corpus import resolve_corpus
    from federated.population import members, seed
    from federated.vocabulary import train_tokenizer
    from fedkb.cmd_eval import do_eval, do_report, do_rollout, tff_runtime
    from fedkb.options import (
        privacy_config_from,
        train_config_from,
        train_with_progress,
    )
    from tokenizer.vocab import Tokenizer, TokenizerConfig, TokenizerError

    console = Console(highlight=False, soft_wrap=True)
    started = time.monotonic()
    console.print(Rule(f"fedkb demo — home {home.root}"))

    def stage(title: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:5.0f} s[/] [bold]{title}")

    stage("1. Devices[/]")
    existing = members(home)
    if existing:
        console.print(f"   reusing the {len(existing)} devices already in {home.devices}")
    else:
        report = seed(home, resolve_corpus(args.corpus), min_sentences=10, seed=args.seed or 0)
        console.print(f"   seeded {report.devices_created} devices (one per speaking role) with "
                      f"{report.sentences_written:,} sentences; raw text stays in each device's own log")

    stage("2. Vocabulary[/]")
    try:
        tok = Tokenizer.load(home.tokenizer)
        console.print(f"   reusing the tokenizer in {home.tokenizer} ({tok.vocab_size} pieces)")
    except TokenizerError:
        from federated.heavy_hitters import HeavyHittersConfig
        from federated.vocabulary import default_character_coverage

        gathering = HeavyHittersConfig()
        with console.status("   devices sketch their most frequent words; TFF sums the sketches (heavy hitters)…"):
            coverage = default_character_coverage(gathering, args.pieces)
            vocab = train_tokenizer(home, TokenizerConfig(vocab_size=args.vocab_size, character_coverage=coverage),
                                    gathering, pieces=args.pieces)
        console.print(f"   {vocab.devices} devices each sketched up to {gathering.max_words_per_device} "
                      "of their words; "
                      f"from the summed sketches (words typed on ≥ {gathering.k_anonymity} devices) SentencePiece "
                      f"learned {vocab.vocab_size} pieces"
                      + (" with the bundled public text's word counts" if args.pieces == "both" else "")
                      + "; no device's word list reached the server")

    stage("2b. Private n-grams[/]")
    from fedkb.cmd_ngrams import demo_stage

    demo_stage(home, console)

    stage("2c. Public pretraining[/]")
    demo_pretrain(home, console, args)

    train = train_config_from(args)
    with tff_runtime(home, console, workers=args.workers, workers_wait=args.workers_wait):
        stage(f"3. Federated training[/] — {args.rounds} rounds of FedAvg, {train.clients_per_round} "
                      f"eligible devices per round (idle, charging, unmetered)")
        if args.live:
            from fedkb.cmd_live import run_live

            console.print("   live rounds: each device is its own process and the coordinator never opens its log")
            run_live(home, train, privacy_config_from(args), rounds=args.rounds, publish_every=args.publish_every,
                     pretrained=not args.no_pretrained, devices=args.live_devices, processes=args.live_processes,
                     log=console.print)
        else:
            train_with_progress(home, train, privacy=privacy_config_from(args), rounds=args.rounds,
                                publish_every=args.publish_every, fresh=False,
                                console=console, pretrained=not args.no_pretrained)
        stage("4. Rollout[/] — the newest version is evaluated against latest, then installed")
        do_rollout(home, console, threshold=RolloutConfig.threshold, devices=args.eval_devices, seed=args.seed or 0)
        if args.typed_sentences > 0:
            from federated.rollout import eval_devices

            typists = eval_devices(home, args.eval_devices, args.seed or 0)  # the devices stage 5 evaluates on
            stage(f"4b. Typing[/] — simulated typists on the {len(typists)} evaluating devices each type "
                  f"{args.typed_sentences} of their newest held-out sentences with the installed keyboard; "
                  "each device keeps its live counts")
            demo_typing(home, console, typists, sentences=args.typed_sentences)
        stage(f"5. On-device evaluation[/] — {args.eval_devices or 'all'} devices measure the installed "
                      "model on their held-out sentences; only sums leave them"
              + (" (and references fitted on pooled text, --references)" if args.references else ""))
        do_eval(home, console, version=None, devices=args.eval_devices, seed=args.seed or 0, references=args.references)
    console.print(Rule("report"))
    html = Path(args.html) if args.html else home.server / "reports" / "report.html"
    do_report(home, console, html)
    console.print(f"demo finished in {time.monotonic() - started:.0f} s")


def demo_typing(home: Home, console, device_ids: list[str], *, sentences: int) -> None:
    """Replayed typing (``keyboard/replay.py``) on ``device_ids`` that have an installed version, so the
    evaluation's federated live metrics have counts to sum; they are labelled "replayed"."""
    from common import live_counts
    from keyboard.install import read_pointer
    from keyboard.replay import replay_on_device

    total, typed_on = live_counts.zero(), 0
    for device_id in device_ids:
        directory = home.device(device_id)
        if read_pointer(directory).get("current") is None:
            continue
        result = replay_on_device(directory, sentences)
        if result is not None:
            total, typed_on = live_counts.add(total, result[1]), typed_on + 1
    if not typed_on:
        console.print("   no device has an installed version yet: nothing was typed")
        return
    rates = live_counts.summary(total)
    console.print(f"   {typed_on} devices typed {total['words']:,} words: keystroke savings "
                  f"{rates['keystroke_savings']:.1%}, impression recall@3 {rates['impression_recall_at_3']:.1%} "
                  "(each device's own counts; only their sums over enough devices leave, in stage 5)")


def demo_pretrain(home: Home, console, args: argparse.Namespace) -> None:
    """Pretrains the model on the bundled public-domain text within the demo's budget, or reuses it."""
    if args.no_pretrained:
        console.print("   skipped (--no-pretrained): federated training starts from random weights")
        return
    from federated import pretrain, public_text
    from fedkb.cmd_pretrain import do_pretrain

    config = pretrain.PretrainConfig(preset=args.preset, tokens=None, seconds=args.pretrain_seconds,
                                     seed=args.seed or 0)
    record = pretrain.reusable(home, public_text.resolve(PUBLIC_CORPUS), config)
    if record is not None:
        console.print(f"   reusing the pretrained model in {home.pretrained} ({record['tokens_trained']:,} tokens "
                      "of public text)")
        return
    do_pretrain(home, console, PUBLIC_CORPUS, config, indent="   ")


def cmd_serve(home: Home, args: argparse.Namespace) -> None:
    from rich.console import Console

    from fedkb.cmd_eval import do_rollout, tff_runtime
    from fedkb.options import privacy_config_from, train_config_from

    console = Console(highlight=False, soft_wrap=True)
    log = lambda msg: console.print(f"[dim]{dt.datetime.now():%H:%M:%S}[/] {msg}")  # noqa: E731
    console.print("[bold]2b. Private n-grams[/]")
    from fedkb.cmd_ngrams import demo_stage

    demo_stage(home, console)

    train = train_config_from(args)
    with tff_runtime(home, console, workers=args.workers, workers_wait=args.workers_wait):
        from federated.program import Session

        session = Session(home, train, privacy=privacy_config_from(args), publish_every=args.publish_every,
                          pretrained=not args.no_pretrained)
        log(f"serving: round {session.done} done; a round every {args.interval:g} s when ≥ "
            f"{train.clients_per_round} devices are eligible (Ctrl-C stops)")
        checks = 0
        try:
            while args.max_rounds is None or session.done < args.max_rounds:
                checks += 1
                selection = session.select(session.done + 1, utc_hour=dt.datetime.now(dt.UTC).hour, draw=checks)
                if len(selection.device_ids) < train.clients_per_round:
                    log(f"{len(selection.device_ids)} of {selection.population} devices eligible; waiting")
                else:
                    r = session.run_round(selection=selection)
                    m = r.metrics
                    log(f"round {r.round_num}: loss {m['loss']:.3f}, {m['clients']:.0f} clients, {r.seconds:.1f} s"
                        + (f"; published {r.published}" if r.published else ""))
                    if r.published:
                        do_rollout(home, console, threshold=args.threshold, devices=args.eval_devices, seed=train.seed)
                time.sleep(args.interval)
        except KeyboardInterrupt:
            log(f"stopped after round {session.done}; the state is saved and `fedkb serve` resumes from it")


def add_parsers(sub) -> None:
    from fedkb.options import add_train_options

    p = sub.add_parser("demo",
                       help="the whole story on the bundled corpus: seed, vocabulary, rounds, rollout, eval, report")
    p.add_argument("--corpus", default="shakespeare", help="corpus for a new population (default: shakespeare)")
    p.add_argument("--rounds", type=int, default=60, help="federated rounds (default 60)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--eval-devices", type=int, default=50, help="devices that evaluate (default 50)")
    p.add_argument("--typed-sentences", type=int, default=5, metavar="N",
                   help="held-out sentences a simulated typist types on each evaluating device before the "
                        "evaluation, so the report has live metrics (default 5; 0: no typing)")
    p.add_argument("--html", help="where to write the HTML report (default <home>/server/reports/report.html)")
    p.add_argument("--pieces", choices=("devices", "both"), default=PIECES,
                   help=f"word counts SentencePiece learns from: the devices' heavy hitters, or those and the bundled "
                        f"public text's (default {PIECES})")
    p.add_argument("--pretrain-seconds", type=float, default=PRETRAIN_SECONDS, metavar="S",
                   help=f"wall-clock budget for pretraining on the bundled public text before the rounds "
                        f"(default {PRETRAIN_SECONDS:g}; --no-pretrained skips it)")
    p.add_argument("--live", action="store_true",
                   help="run the rounds live: a coordinator service and device agents in their own processes")
    p.add_argument("--live-devices", type=int, default=None, metavar="N",
                   help="--live: devices that run an agent (default: every device; N: the first N of the population)")
    p.add_argument("--live-processes", type=int, default=4, metavar="P",
                   help="--live: OS processes hosting the agents (default 4)")
    from fedkb.cmd_eval import add_references_option

    add_references_option(p)
    add_train_options(p, clients_per_round=10)
    p.set_defaults(func=cmd_demo, publish_every=20)

