"""Peak memory of ``fedkb train`` (Python and ``worker_binary`` together) for a preset and K.

Runs ``fedkb train`` in a child process on a 1,000-device population resampled from the bundled
corpus (enough devices are eligible every round for K = 50) and samples the resident memory of
the process tree every 0.1 s.

    uv run python bench/train_memory.py [--preset gboard] [--clients 50] [--rounds 3]
"""

from __future__ import annotations

import argparse

from fedbench import (  # first: repo on sys.path
    Home,
    add_round_options,
    copy_tokenizer,
    emit,
    preset_home,
    resampled_corpus,
    train_subprocess,
)

TARGET_MB = 3 * 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_round_options(parser, preset="gboard", clients=50, rounds=3)
    parser.add_argument("--devices", type=int, default=1000)
    args = parser.parse_args(argv)

    from federated.population import members, seed

    reference = preset_home(args.work, args.preset)
    home = Home(args.work / f"memory-{args.devices}-{reference.root.name}")
    if len(members(home)) != args.devices:
        seed(home, resampled_corpus(args.work / f"resampled-{args.devices}.jsonl", args.devices), min_sentences=10)
    copy_tokenizer(reference, home)
    run = train_subprocess(home, "--rounds", str(args.rounds), "--fresh", "--preset", args.preset,
                           "--clients-per-round", str(args.clients), "--publish-every", str(args.rounds))
    print(f"fedkb train --preset {args.preset} --clients-per-round {args.clients}: {args.rounds} rounds "
          f"({', '.join(f'{s:.1f}' for s in run['round_s'])} s; clients {run['clients']}), "
          f"peak RSS {run['peak_rss_mb']:.0f} MB (target ≤ {TARGET_MB} MB)")
    emit({"preset": args.preset, "clients_per_round": args.clients, "peak_rss_mb": run["peak_rss_mb"],
          "rounds": args.rounds, "round_s": run["round_s"], "clients": run["clients"], "target_mb": TARGET_MB})


if __name__ == "__main__":
    main()
