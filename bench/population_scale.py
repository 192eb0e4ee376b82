"""Round time and peak memory against population size, at a fixed number of clients per round.

Populations of 1,000 and 10,000 devices are synthesized by resampling the bundled corpus
(``fedbench.resampled_corpus``) and seeded with ``fedkb population seed``'s code path; both get
the same tokenizer. ``fedkb train`` then runs the same number of rounds with the same K on each,
in a child process whose resident memory (Python and ``worker_binary`` together) is sampled.
Round time is the median over the rounds after the first (which includes compilation).

    uv run python bench/population_scale.py [--clients 10] [--rounds 5] [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from fedbench import (  # first: repo on sys.path
    DEFAULT_WORK,
    Home,
    Stopwatch,
    copy_tokenizer,
    emit,
    median,
    resampled_corpus,
    shakespeare_home,
    train_subprocess,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "gboard"])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--reseed", action="store_true", help="seed the populations again even if they exist")
    args = parser.parse_args(argv)

    from federated.population import members, seed

    reference = shakespeare_home(args.work, vocab_size=8000)
    figures: dict = {"round_s": {}, "peak_rss_mb": {}, "seed_s": {}, "clients_per_round": args.clients,
                     "preset": args.preset, "rounds": args.rounds}
    for size in args.sizes:
        home = Home(args.work / f"population-{size}")
        corpus = resampled_corpus(args.work / f"resampled-{size}.jsonl", size)
        if args.reseed or len(members(home)) != size:
            shutil.rmtree(home.root, ignore_errors=True)
            with Stopwatch() as t:
                report = seed(home, corpus, min_sentences=10)
            figures["seed_s"][str(size)] = t.seconds
            print(f"seeded {report.devices_created} devices ({report.sentences_written:,} sentences) "
                  f"in {t.seconds:.1f} s", flush=True)
        copy_tokenizer(reference, home)
        run = train_subprocess(home, "--rounds", str(args.rounds), "--fresh", "--preset", args.preset,
                               "--clients-per-round", str(args.clients), "--publish-every", str(args.rounds))
        figures["round_s"][str(size)] = median(run["round_s"][1:])
        figures["peak_rss_mb"][str(size)] = run["peak_rss_mb"]
        # Each round samples other devices with more or fewer sentences: time per token separates
        # the population's effect from that of the sampled data.
        per_1k = [1000 * s / t for s, t in zip(run["round_s"][1:], run["tokens"][1:]) if t > 0]
        figures.setdefault("s_per_1k_tokens", {})[str(size)] = median(per_1k)
        print(f"{size:>6} devices: rounds {', '.join(f'{s:.2f}' for s in run['round_s'])} s (median after the first "
              f"{figures['round_s'][str(size)]:.2f} s; {figures['s_per_1k_tokens'][str(size)]:.3f} s per 1k tokens), "
              f"clients {run['clients']}, peak RSS {run['peak_rss_mb']:.0f} MB",
              flush=True)
    if "10000" in figures["seed_s"]:
        figures["seed_10000_s"] = figures["seed_s"]["10000"]
    sizes = [str(s) for s in args.sizes]
    if len(sizes) >= 2:
        a, b = sizes[0], sizes[-1]
        figures["round_time_change"] = figures["round_s"][b] / figures["round_s"][a] - 1
        figures["s_per_1k_tokens_change"] = figures["s_per_1k_tokens"][b] / figures["s_per_1k_tokens"][a] - 1
        figures["peak_rss_change"] = figures["peak_rss_mb"][b] / figures["peak_rss_mb"][a] - 1
        print(f"{b} vs {a} devices: round time {figures['round_time_change']:+.1%} (per 1k tokens "
              f"{figures['s_per_1k_tokens_change']:+.1%}), "
              f"peak RSS {figures['peak_rss_change']:+.1%} (target: within 10 %)")
    emit(figures)


if __name__ == "__main__":
    main()
