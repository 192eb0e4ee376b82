"""``fedkb tokenizer train``: SentencePiece from word counts gathered from the devices (private by default)."""

from __future__ import annotations

import argparse

from common.layout import Home
from fedkb.options import UserError
from fedkb.options import console as _console


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
                  f"the word counts of the public corpus {report.gathering['public']['path']}"
                  if args.pieces == "public"
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
        f"Trained a {config.model_type} tokenizer with [bold]{report.vocab_size}[/] pieces{fewer} "
        f"from private heavy hitters of {report.devices} devices: "
        f"[bold]{report.distinct_words:,}[/] words {released} ≥ {g['k_anonymity']} devices\n"
        f"  each device sketched its top {g['max_words_per_device']} words, counted once; TFF IBLT capacity "
        f"{g['capacity']:,}, summed with a plain federated sum; {privacy}; {g['seconds']:.0f} s\n"
        + (f"  plus the word counts of the public corpus {g['public']['path']} ({g['public']['words']:,} words, "
           f"{g['public']['distinct_words']:,} distinct), scaled to the same total\n" if "public" in g else "")
        + f"  saved in {report.path}"
    )


def add_parsers(sub) -> None:
    tok = sub.add_parser("tokenizer", help="learn the vocabulary from devices' word counts")
    tok_sub = tok.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = tok_sub.add_parser("train",
                           help="train SentencePiece on word counts gathered from devices (private by default)")
    p.add_argument("--vocab-size", type=int, default=8000,
                   help="pieces, specials included (default 8000; gboard: 10000)")
    p.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--private", dest="gathering", action="store_const", const="private",
                     help="(default) TFF federated heavy hitters: each device contributes its top M words, counted "
                          "once; only words K devices use come back")
    how.add_argument("--plain", dest="gathering", action="store_const", const="plain",
                     help="every device reports all its word counts and the server sums them")
    p.set_defaults(gathering="private")
    p.add_argument("--max-words-per-device", type=int, metavar="M", help="words a device contributes (default 200)")
    p.add_argument("--k-anonymity", type=int, metavar="K",
                   help="devices that must use a word for it to be released (default 2)")
    p.add_argument("--dp-epsilon", type=float, metavar="EPS",
                   help="add Gaussian noise and a threshold to the counts: (EPS, δ)-DP per device (default: no noise)")
    p.add_argument("--dp-delta", type=float, metavar="DELTA", help="δ of the DP release (default 1e-6)")
    p.add_argument("--capacity", type=int, help="IBLT sketch capacity, fixed (default: grows until the sketch decodes)")
    p.add_argument("--max-word-bytes", type=int, metavar="B",
                   help="longer words (UTF-8 bytes) are not contributed (default 32)")
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
