"""Private vocabulary: how much of the centrally counted vocabulary TFF heavy hitters recover.

    uv run fedkb --home /tmp/hh population seed --corpus shakespeare
    uv run python bench/private_vocab.py --home /tmp/hh

For each (m, k) setting, every device's top-m words go through the real TFF IBLT computation
(``federated.heavy_hitters.discover``, in a ``LocalRuntime``), and the recovered words are
compared with the central plain sum: which share of its top 1,000 / top 5,000 words, and of the
words that make up 95 % of train tokens, come back. Then SentencePiece trains on each table
exactly as ``fedkb tokenizer train`` does, and each tokenizer is scored on every device's
held-out words. DP rows reuse the decoded table of the matching (m, k) run and apply the
Gaussian thresholding release with a fixed seed (the TFF computation is the same one).

This is a measurement harness: it reads the devices' held-out text to score tokenizers, which
the product never does. Prints figures and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import numpy as np
from fedbench import seeded_home  # first: puts the repo on sys.path

from federated.heavy_hitters import HeavyHittersConfig, discover
from federated.vocabulary import summed_word_counts
from keyboard.store import Device
from tokenizer.private_counts import calibrate_gaussian_threshold, device_words, release
from tokenizer.specials import UNK_ID
from tokenizer.vocab import Tokenizer, TokenizerConfig, train_from_counts


def reference_sets(counts: collections.Counter[str]) -> dict[str, set[str]]:
    """Top 1,000 and 5,000 words by central count (ties alphabetical), and the words of 95 % of tokens."""
    ranked = [w for w, _ in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))]
    total, running, n95 = sum(counts.values()), 0, len(ranked)
    for i, w in enumerate(ranked):
        running += counts[w]
        if running >= 0.95 * total:
            n95 = i + 1
            break
    return {"top_1000": set(ranked[:1000]), "top_5000": set(ranked[:5000]), f"tokens_95pct_{n95}": set(ranked[:n95])}


def recovery(recovered: set[str], references: dict[str, set[str]]) -> dict[str, float]:
    return {name: round(len(ref & recovered) / len(ref), 4) for name, ref in references.items()}


def tokenizer_metrics(tok: Tokenizer, heldout_words: list[str], table: set[str]) -> dict[str, float]:
    """Per held-out word: has an <unk> piece, pieces used, is one piece; and is it in the table trained on."""
    cache: dict[str, tuple[int, bool]] = {}
    unk = pieces = single = in_table = 0
    for w in heldout_words:
        if w not in cache:
            ids = tok.encode(w)
            cache[w] = (len(ids), UNK_ID in ids)
        n, has_unk = cache[w]
        pieces, unk, single, in_table = pieces + n, unk + has_unk, single + (n == 1), in_table + (w in table)
    n = len(heldout_words)
    return {"unk_word_rate": round(unk / n, 5), "pieces_per_word": round(pieces / n, 4),
            "single_piece_words": round(single / n, 4), "heldout_words_in_table": round(in_table / n, 4)}


def train_and_score(counts, config: TokenizerConfig, heldout_words) -> tuple[dict, float]:
    started = time.monotonic()
    tok = Tokenizer(train_from_counts(counts, config))
    seconds = time.monotonic() - started
    return {"vocab_size": tok.vocab_size, **tokenizer_metrics(tok, heldout_words, set(counts))}, seconds


def parse_setting(text: str) -> tuple[int, int]:
    m, k = (int(x) for x in text.split("/"))
    return m, k


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", required=True, help="a seeded fedkb home")
    p.add_argument("--settings", default="200/2,200/1,100/2,50/1", help="M/K pairs to run through TFF")
    p.add_argument("--dp", default="200/2/1,200/2/8,50/1/8", help="M/K/EPSILON releases on the matching runs")
    p.add_argument("--dp-delta", type=float, default=1e-6)
    p.add_argument("--vocab-size", type=int, default=8000)
    args = p.parse_args(argv)
    home, devices = seeded_home(args.home)

    # What each device holds: its train-split counts (what it reports) and held-out words (for scoring).
    per_device, heldout = [], []
    for member in devices:
        with Device(home.device(member.device_id)) as device:
            per_device.append(device.train_word_counts())
            heldout.extend(w for s in device.splits().heldout for w in s.split())

    started = time.monotonic()
    central, _ = summed_word_counts(home)
    plain_gather = time.monotonic() - started
    refs = reference_sets(central)
    n95 = len(list(refs.values())[-1])
    print(f"{len(devices)} devices, {sum(central.values()):,} train tokens, {len(central):,} distinct words; "
          f"{len(heldout):,} held-out words; 95 % of tokens = {n95:,} words")
    plain_cfg = TokenizerConfig(vocab_size=args.vocab_size)
    plain_metrics, plain_train = train_and_score(central, plain_cfg, heldout)
    rows = [{"method": "plain_sum", "words": len(central), "gather_seconds": round(plain_gather, 1),
             "train_seconds": round(plain_train, 1), "recovery": recovery(set(central), refs), **plain_metrics}]

    private_cfg = TokenizerConfig(vocab_size=args.vocab_size, character_coverage=1.0)
    started = time.monotonic()
    from federated.runtime import LocalRuntime

    decoded: dict[tuple[int, int], dict[str, int]] = {}
    with LocalRuntime() as runtime:
        startup = time.monotonic() - started
        print(f"TensorFlow Federated import and worker start: {startup:.1f} s")
        for m, k in map(parse_setting, args.settings.split(",")):
            config = HeavyHittersConfig(max_words_per_device=m, k_anonymity=k)
            lists = [device_words(c, m, config.max_word_bytes) for c in per_device]
            found = discover(lists, config)
            expected = collections.Counter(w for words in lists for w in words)
            exact = found.counts == {w: c for w, c in expected.items() if c >= k}
            decoded[m, k] = found.counts
            metrics, train_s = train_and_score(found.counts, private_cfg, heldout)
            rows.append({"method": "heavy_hitters", "m": m, "k": k, "words": len(found.counts),
                         "capacity": found.capacity, "attempts": found.attempts, "exact": exact,
                         "gather_seconds": round(found.seconds, 1), "train_seconds": round(train_s, 1),
                         "recovery": recovery(set(found.counts), refs), **metrics})
            print(f"  m={m} k={k}: {len(found.counts):,} words, capacity {found.capacity:,}, {found.seconds:.1f} s, "
                  f"exact={exact}", flush=True)
    assert runtime.worker.process.poll() is not None

    for text in filter(None, args.dp.split(",")):
        m, k, eps = (f(x) for f, x in zip((int, int, float), text.split("/")))
        if (m, k) not in decoded:
            continue
        mech = calibrate_gaussian_threshold(eps, args.dp_delta, m, k)
        counts = release(decoded[m, k], mech, np.random.default_rng(0))
        row = {"method": "heavy_hitters+dp", "m": m, "k": k, "epsilon": eps, "delta": args.dp_delta,
               "noise_stddev": round(mech.noise_stddev, 2), "threshold": round(mech.threshold, 1),
               "words": len(counts), "recovery": recovery(set(counts), refs)}
        if len(counts) >= 4:
            metrics, _ = train_and_score(counts, private_cfg, heldout)
            row.update(metrics)
        rows.append(row)
        print(f"  DP ε={eps:g}, δ={args.dp_delta:g} on m={m} k={k}: noise σ={mech.noise_stddev:.1f} devices, "
              f"threshold {mech.threshold:.1f} devices: {len(counts):,} words released")

    def cell(row: dict, key: str, width: int, fmt: str) -> str:
        return f"{format(row[key], fmt):>{width}}" if key in row else f"{'-':>{width}}"

    print(f"\n{'method':<30}{'words':>7}{'top1k':>7}{'top5k':>7}{'95%tok':>7}{'pieces':>7}{'unk':>8}"
          f"{'pc/word':>8}{'1-piece':>8}{'in tbl':>7}{'gather s':>9}")
    for r in rows:
        name = r["method"] + (f" m={r['m']} k={r['k']}" if "m" in r else "")
        name += f" ε={r['epsilon']:g}" if "epsilon" in r else ""
        rec = list(r["recovery"].values())
        print(f"{name:<30}{r['words']:>7,}{rec[0]:>7.3f}{rec[1]:>7.3f}{rec[2]:>7.3f}"
              + cell(r, "vocab_size", 7, "d") + cell(r, "unk_word_rate", 8, ".4f")
              + cell(r, "pieces_per_word", 8, ".3f")
              + cell(r, "single_piece_words", 8, ".3f") + cell(r, "heldout_words_in_table", 7, ".3f")
              + cell(r, "gather_seconds", 9, ".1f"))
    result = {"bench": "private_vocab", "devices": len(devices), "train_tokens": sum(central.values()),
              "distinct_words": len(central), "heldout_words": len(heldout), "tff_startup_seconds": round(startup, 1),
              "vocab_size": args.vocab_size, "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
