"""The ``fedkb`` command line. Heavy libraries are imported inside the commands that need them,
so ``fedkb --help`` and the keyboard never wait for TensorFlow."""

from __future__ import annotations

import argparse
import os
import signal
import sys

# Must be set before TensorFlow is imported anywhere in this process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common.layout import ENV_VAR, Home, resolve_home  # noqa: E402  (light: stdlib only)
from fedkb.options import (  # noqa: E402, F401  (light; UserError and the config helpers are used from here too)
    UserError,
    add_train_options,
    parse_targets,
    privacy_config_from,
    train_config_from,
    train_with_progress,
)
from fedkb.options import console as _console  # noqa: E402


# -- population ---------------------------------------------------------------------------------
def cmd_population_seed(home: Home, args: argparse.Namespace) -> None:
    from federated.corpus import resolve_corpus
    from federated.population import seed

    corpus = resolve_corpus(args.corpus)
    report = seed(home, corpus, min_sentences=args.min_sentences, max_devices=args.max_devices,
                  append=args.append, seed=args.seed)
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


# -- tokenizer ----------------------------------------------------------------------------------
def cmd_tokenizer_train(home: Home, args: argparse.Namespace) -> None:
    from federated.heavy_hitters import HeavyHittersConfig, HeavyHittersError
    from federated.vocabulary import default_character_coverage, train_tokenizer
    from tokenizer.vocab import TokenizerConfig

    if args.public_corpus is not None and args.pieces == "devices":
        raise UserError("--public-corpus applies only with --pieces public or --pieces both")
    private = args.gathering == "private" and args.pieces != "public"
    options = {"max_words_per_device": args.max_words_per_device, "k_anonymity": args.k_anonymity,
               "dp_epsilon": args.dp_epsilon, "dp_delta": args.dp_delta, "capacity": args.capacity,
               "max_word_bytes": args.max_word_bytes}
    given = {k: v for k, v in options.items() if v is not None}
    if not private and given:
        raise UserError(f"{', '.join('--' + k.replace('_', '-') for k in given)} apply only with --private "
                        "(and pieces from the devices)")
    if args.dp_delta is not None and args.dp_epsilon is None:
        raise UserError("--dp-delta needs --dp-epsilon")
    gathering = HeavyHittersConfig(**given) if private else None
    coverage = args.character_coverage
    if coverage is None:
        coverage = default_character_coverage(gathering, args.pieces)
    config = TokenizerConfig(vocab_size=args.vocab_size, model_type=args.model_type, character_coverage=coverage)
    console = _console()
    pieces = {"pieces": args.pieces, "public_corpus": args.public_corpus}
    if gathering is None:
        report = train_tokenizer(home, config, **pieces)
        source = (f"the summed word counts of {report.devices} devices" if args.pieces == "devices" else
                  f"the word counts of the public corpus {report.gathering['public']['path']}" if args.pieces == "public"
                  else f"the summed word counts of {report.devices} devices and of the public corpus "
                       f"{report.gathering['public']['path']} (equal weight)")
        console.print(
            f"Trained a {config.model_type} tokenizer with [bold]{report.vocab_size}[/] pieces from {source} "
            f"({report.words:,} words, {report.distinct_words:,} distinct)\n  saved in {report.path}"
        )
        return
    try:
        with console.status(f"Private heavy hitters with TensorFlow Federated: each device sketches its top "
                            f"{gathering.max_words_per_device} words…"):
            report = train_tokenizer(home, config, gathering, **pieces)
    except HeavyHittersError as exc:
        raise UserError(str(exc)) from None
    g = report.gathering
    dp = g["dp"]
    privacy = (f"DP ε={dp['epsilon']:g}, δ={dp['delta']:g}: noise σ={dp['noise_stddev']:.1f}, threshold "
               f"{dp['threshold']:.1f} devices" if dp else "no DP noise")
    released = "over the DP threshold, among those used by" if dp else "used by"
    fewer = (f" (of {config.vocab_size} asked: SentencePiece cannot make more from these words)"
             if report.vocab_size < config.vocab_size else "")
    console.print(
        f"Trained a {config.model_type} tokenizer with [bold]{report.vocab_size}[/] pieces{fewer} from private heavy hitters "
        f"of {report.devices} devices: [bold]{report.distinct_words:,}[/] words {released} ≥ {g['k_anonymity']} devices\n"
        f"  each device sketched its top {g['max_words_per_device']} words, counted once; TFF IBLT capacity "
        f"{g['capacity']:,}, summed with a plain federated sum; {privacy}; {g['seconds']:.0f} s\n"
        + (f"  plus the word counts of the public corpus {g['public']['path']} ({g['public']['words']:,} words, "
           f"{g['public']['distinct_words']:,} distinct), scaled to the same total\n" if "public" in g else "")
        + f"  saved in {report.path}"
    )


# -- train ----------------------------------------------------------------------------------------
def cmd_train(home: Home, args: argparse.Namespace) -> None:
    _check_train_inputs(home)
    console = _console()
    with console.status("Starting TensorFlow Federated…"):
        from federated import program
        from fedkb.cmd_eval import tff_runtime

    train, privacy = train_config_from(args), privacy_config_from(args)
    _, tokenizer, model = program.prepare(home, train)  # fail fast, before starting the runtime
    if not args.no_pretrained:
        from federated import pretrain

        start = pretrain.starting_point(home, tokenizer, model)
        if start is not None:
            console.print(f"Pretrained model: {start.path} ({start.record['tokens_trained']:,} tokens of "
                          f"{start.record['corpus']['path']}); a new run starts from it (--no-pretrained: random weights)")
    if args.workers and len(args.workers) > 1 and privacy.secure_agg:
        raise UserError("--secure-agg runs on one runtime: TFF's mergeable context cannot split the protocol's "
                        "rounds across --workers")
    with tff_runtime(home, console, workers=args.workers, workers_wait=args.workers_wait):
        train_with_progress(home, train, rounds=args.rounds, publish_every=args.publish_every,
                            fresh=args.fresh, console=console, privacy=privacy, pretrained=not args.no_pretrained)


def _check_train_inputs(home: Home) -> None:
    """Refuses a home without devices or tokenizer before TensorFlow Federated's ~15 s import."""
    from federated.population import members
    from tokenizer.vocab import Tokenizer, TokenizerError  # sentencepiece only

    if not members(home):
        raise UserError(f"no devices in {home.devices}; run `fedkb population seed --corpus shakespeare` first")
    try:
        Tokenizer.load(home.tokenizer)
    except TokenizerError as exc:
        raise UserError(str(exc)) from None


# -- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedkb",
        description="A federated next-word-prediction keyboard: devices keep their typing, "
                    "TensorFlow Federated trains on it where it lies.",
    )
    parser.add_argument("--home", help=f"where devices and server state live (default: ${ENV_VAR} or the user data directory)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    pop = sub.add_parser("population", help="seed and inspect the device population")
    pop_sub = pop.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = pop_sub.add_parser("seed", help="create one device per user of a JSONL corpus")
    p.add_argument("--corpus", required=True, help="'shakespeare' (bundled) or a JSONL / JSONL.gz file of {user, text[, timestamp]}")
    p.add_argument("--min-sentences", type=int, default=10, help="leave out users with fewer sentences (default 10)")
    p.add_argument("--max-devices", type=int, default=None, help="keep only the first N users, in file order")
    p.add_argument("--append", action="store_true", help="add to an existing population")
    p.add_argument("--seed", type=int, default=0, help="seed of the devices' availability models (default 0)")
    p.set_defaults(func=cmd_population_seed)
    p = pop_sub.add_parser("show", help="devices, sentences, and how many are eligible now")
    p.add_argument("--limit", type=int, default=20, help="rows to show (default 20)")
    p.add_argument("--all", action="store_true", help="show every device")
    p.add_argument("--min-examples", type=int, default=5, help="train sentences a device needs to be eligible (default 5)")
    p.set_defaults(func=cmd_population_show)

    tok = sub.add_parser("tokenizer", help="learn the vocabulary from devices' word counts")
    tok_sub = tok.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = tok_sub.add_parser("train", help="train SentencePiece on word counts gathered from devices (private by default)")
    p.add_argument("--vocab-size", type=int, default=8000, help="pieces, specials included (default 8000; gboard: 10000)")
    p.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--private", dest="gathering", action="store_const", const="private",
                     help="(default) TFF federated heavy hitters: each device contributes its top M words, counted "
                          "once; only words K devices use come back")
    how.add_argument("--plain", dest="gathering", action="store_const", const="plain",
                     help="every device reports all its word counts and the server sums them")
    p.set_defaults(gathering="private")
    p.add_argument("--max-words-per-device", type=int, metavar="M", help="words a device contributes (default 200)")
    p.add_argument("--k-anonymity", type=int, metavar="K", help="devices that must use a word for it to be released (default 2)")
    p.add_argument("--dp-epsilon", type=float, metavar="EPS",
                   help="add Gaussian noise and a threshold to the counts: (EPS, δ)-DP per device (default: no noise)")
    p.add_argument("--dp-delta", type=float, metavar="DELTA", help="δ of the DP release (default 1e-6)")
    p.add_argument("--capacity", type=int, help="IBLT sketch capacity, fixed (default: grows until the sketch decodes)")
    p.add_argument("--max-word-bytes", type=int, metavar="B", help="longer words (UTF-8 bytes) are not contributed (default 32)")
    p.add_argument("--character-coverage", type=float,
                   help="share of characters SentencePiece keeps (default 1.0 with --private and pieces from "
                        "the devices only, else 0.9995)")
    p.add_argument("--pieces", choices=("devices", "public", "both"), default="devices",
                   help="where the word counts come from: the devices (default), a public corpus's words "
                        "(no device takes part), or both summed with equal weight")
    p.add_argument("--public-corpus", metavar="PATH",
                   help="public text (.txt[.gz] one passage per line, or .jsonl[.gz] with \"text\") for --pieces "
                        "public|both (default: the bundled public-domain corpus)")
    p.set_defaults(func=cmd_tokenizer_train)

    p = sub.add_parser("train", help="run federated training rounds (resumes from the last checkpoint)")
    p.add_argument("--rounds", type=int, required=True, help="train until this many rounds are complete")
    add_train_options(p)
    p.add_argument("--fresh", action="store_true", help="discard existing checkpoints and metrics and start over")
    p.set_defaults(func=cmd_train)

    from fedkb import (  # light: heavy imports live inside the commands
        cmd_audit,
        cmd_demo,
        cmd_eval,
        cmd_keyboard,
        cmd_live,
        cmd_ngrams,
        cmd_pretrain,
        cmd_worker,
    )

    cmd_ngrams.add_parsers(sub)
    cmd_pretrain.add_parsers(sub)
    cmd_eval.add_parsers(sub)
    cmd_demo.add_parsers(sub)
    cmd_live.add_parsers(sub)
    cmd_keyboard.add_parsers(sub)
    cmd_worker.add_parsers(sub)
    cmd_audit.add_parsers(sub)
    return parser


def _exit_on_sigterm(signum, frame):  # unwind like Ctrl-C, so context managers stop the TFF worker
    raise SystemExit(128 + signum)


_interrupted = False


def _interrupt(signum, frame):
    # Remembered because Ctrl-C can land inside TFF's gRPC or asyncio code, which may turn the
    # KeyboardInterrupt into another exception on its way out; the user still asked to stop.
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    home = resolve_home(args.home)
    try:
        return _run(home, args)
    except BaseException:
        if _interrupted:
            print("fedkb: interrupted", file=sys.stderr)
            return 130
        raise


def _run(home: Home, args: argparse.Namespace) -> int:
    try:
        args.func(home, args)
    except KeyboardInterrupt:
        print("fedkb: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if _interrupted:
            raise
        print(f"fedkb: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # known error types carry messages meant for the user
        if type(exc).__name__ in _USER_ERRORS and not _interrupted:
            print(f"fedkb: error: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


# Errors whose message already says what and where; anything else is a bug and keeps its traceback.
_USER_ERRORS = {
    "CorpusError", "PopulationError", "DeviceError", "TokenizerError", "VocabularyError",
    "TrainError", "RegistryError", "RuntimeStartError", "ValueError", "RolloutError", "ReportError",
    "ArtifactError", "PrivacyError", "AblationError", "NgramError", "PretrainError", "PublicTextError",
    "AuditError",
    "TooFewDevices", "LedgerError", "SamplingError",
}

if __name__ == "__main__":
    sys.exit(main())
