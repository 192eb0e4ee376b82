"""Private n-grams: what TFF heavy hitters recover of the pooled n-gram counts, and how fast.

    uv run fedkb --home /tmp/ng population seed --corpus shakespeare
    uv run python bench/private_ngrams.py --home /tmp/ng --settings 100,150,200

For each M (n-grams per order and device), ``federated.ngrams.collect`` runs the real rounds (the
same code as ``fedkb ngrams gather``, nothing saved) and the released table is compared with the
pooled counts of every device's train split (the central reference a private keyboard cannot
build): n-grams released per order; whether the released counts are exactly what the devices'
capped top-M contributions sum to (``exact``); the share of pooled n-gram occurrences whose
n-gram was released (``coverage``); and, for released n-grams, the recovered count over the
pooled count (``count ratio``, below 1 because of the cap c and because a device sends only its
top M). Last, a *proxy* of usefulness: a simple backoff next-word ranker (trigram, then bigram,
then the top unigrams; not the keyboard's model) scored on every device's held-out words, with
the released table and with the pooled one. ``--dp`` adds DP releases (one run each).

This is a measurement harness: it reads the devices' held-out text, which the product never does.
Prints figures and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import numpy as np
from fedbench import seeded_home  # first: puts the repo on sys.path

from federated.ngrams import NgramConfig, collect, exact_table
from keyboard.store import Device
from tokenizer.private_counts import sentence_ngrams
from tokenizer.words import words


def pooled_counts(train_splits, orders) -> dict[int, collections.Counter]:
    pooled = {o: collections.Counter() for o in orders}
    for sentences in train_splits:
        for s in sentences:
            ws = words(s)
            for o in orders:
                pooled[o].update(tuple(g.split(" ")) for g in sentence_ngrams(ws, o))
    return pooled


def backoff_recall(table, heldout_splits) -> tuple[float, float]:
    """Recall@1 and @3 of a backoff ranker on the held-out words (a proxy, not the keyboard's model)."""
    following: dict[tuple[str, ...], collections.Counter] = collections.defaultdict(collections.Counter)
    for order in (2, 3):
        for gram, count in table.get(order, {}).items():
            following[gram[:-1]][gram[-1]] = count
    top_words = [g[0] for g, _ in sorted(table[1].items(), key=lambda gc: (-gc[1], gc[0]))[:3]]
    ranked_for: dict[tuple[str, ...], list[str]] = {}
    hit1 = hit3 = total = 0
    for sentences in heldout_splits:
        for s in sentences:
            padded = ["<s>", *words(s)]
            for i in range(1, len(padded)):
                context = tuple(padded[max(0, i - 2):i])
                if context not in ranked_for:
                    ranked: list[str] = []
                    for ctx in (context, context[-1:]) if len(context) == 2 else (context,):
                        ranked += [w for w, _ in following[ctx].most_common(3) if w not in ranked]
                    ranked += [w for w in top_words if w not in ranked]
                    ranked_for[context] = ranked[:3]
                ranked = ranked_for[context]
                total += 1
                hit1 += ranked[:1] == [padded[i]]
                hit3 += padded[i] in ranked
    return hit1 / total, hit3 / total


def compare(table, pooled, expected=None) -> dict:
    per_order = {}
    for order, counts in pooled.items():
        released = table.get(order, {})
        occurrences = sum(counts.values())
        per_order[order] = {
            "released": len(released), "pooled_distinct": len(counts),
            "coverage": round(sum(counts[g] for g in released) / occurrences, 4) if occurrences else 0.0,
            "count_ratio": round(sum(released.values()) / max(1, sum(counts[g] for g in released)), 4),
        }
        if expected is not None:
            per_order[order]["exact"] = released == expected.get(order, {})
    return per_order


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", required=True, help="a seeded fedkb home")
    p.add_argument("--settings", default="100,150,200", help="values of M (n-grams per order and device) to run")
    p.add_argument("--max-count", type=int, default=NgramConfig.max_count)
    p.add_argument("--dp", default="", help="M/EPSILON releases to run, for example 150/4,150/8")
    args = p.parse_args(argv)
    home, population = seeded_home(args.home)
    train, heldout = [], []
    for member in population:
        with Device(home.device(member.device_id)) as device:
            splits = device.splits()
        train.append(splits.train)
        heldout.append(splits.heldout)
    orders = NgramConfig().orders
    pooled = pooled_counts(train, orders)
    pooled_table = {o: dict(c) for o, c in pooled.items()}
    pooled_recall = backoff_recall(pooled_table, heldout)
    print(f"{len(population)} devices; pooled distinct n-grams per order: "
          + ", ".join(f"{o}: {len(pooled[o]):,}" for o in orders)
          + f"; backoff proxy on pooled counts: recall@1 {pooled_recall[0]:.4f}, @3 {pooled_recall[1]:.4f}")
    started = time.monotonic()
    import tensorflow_federated  # noqa: F401  (the import cost, once, measured apart)

    import_seconds = time.monotonic() - started
    print(f"TensorFlow Federated import: {import_seconds:.1f} s")
    runs = [(int(m), None) for m in args.settings.split(",") if m]
    runs += [(int(m), float(e)) for m, e in (x.split("/") for x in args.dp.split(",") if x)]
    rows = []
    for m, eps in runs:
        config = NgramConfig(max_per_device=m, max_count=args.max_count, dp_epsilon=eps)
        cpu = time.process_time()
        table = collect(home, config, rng=np.random.default_rng(0))
        expected = exact_table(train, config) if eps is None else None
        row = {"max_per_device": m, "max_count": config.max_count, "dp_epsilon": eps,
               "seconds": round(table.seconds, 1), "main_process_cpu_seconds": round(time.process_time() - cpu, 1),
               "rounds": [{"order": r.order, "capacity": r.capacity, "attempts": r.attempts,
                           "subrounds": r.subrounds, "seconds": round(r.seconds, 1)} for r in table.rounds],
               "orders": compare(table.counts, pooled, expected),
               "backoff_recall": [round(x, 4) for x in backoff_recall(table.counts, heldout)]}
        rows.append(row)
        name = f"M={m}" + (f" ε={eps:g}" if eps else "")
        print(f"{name}: {table.seconds:.1f} s; " + "; ".join(
            f"order {o}: {v['released']:,} released ({v['coverage']:.1%} of pooled occurrences, count ratio "
            f"{v['count_ratio']:.2f}{', exact' if v.get('exact') else ''})" for o, v in row["orders"].items())
            + f"; backoff recall@1 {row['backoff_recall'][0]:.4f}, @3 {row['backoff_recall'][1]:.4f}", flush=True)
    result = {"bench": "private_ngrams", "devices": len(population), "tff_import_seconds": round(import_seconds, 1),
              "pooled_distinct": {o: len(pooled[o]) for o in orders},
              "pooled_backoff_recall": [round(x, 4) for x in pooled_recall], "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
