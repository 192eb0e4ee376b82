"""The headline ε of DP-FedAvg before and after issue 12, for the rounds `fedkb train` would run.

Seeds the bundled corpus into a fresh home (no TensorFlow), then walks the rounds' selection as
``federated/program.py`` does (the same availability draws and waits for devices), and computes:

* before: the old headline (``privacy.spent``: Poisson at q = K / available, δ = 1/N), and the
  old fixed-size bound the same function reported beside it (sampling without replacement,
  replace-one) for the sampler that ran then;
* after: the ledger's ε for what runs now (``ledger.training_spent``: Poisson at
  q = K / eligible from a secret key, δ = 1/N^1.1), and the same rounds without amplification
  (what holds when ``--seed`` makes the sampling public).

    uv run python bench/epsilon_headline.py [--noise 1.0] [--clients 10] [--rounds 60] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from fedbench import DEFAULT_WORK, Home, Stopwatch, emit  # first: repo on sys.path

from federated import ledger, sampling
from federated.privacy import PrivacyConfig, RoundSample, spent

MAX_DRAWS = 48  # as federated/program.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--min-examples", type=int, default=5)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()

    from federated.corpus import resolve_corpus
    from federated.population import availability_arrays, members, poisson_select, seed

    home = Home(args.work / "epsilon-headline")
    shutil.rmtree(home.root, ignore_errors=True)
    seed(home, resolve_corpus("shakespeare"))
    population = members(home)
    arrays = availability_arrays(population)
    key = sampling.load_or_create(home.state, None)
    old, new = [], []
    with Stopwatch() as clock:
        for r in range(1, args.rounds + 1):
            sel = poisson_select(home, population, r, args.clients, key=key, seed=0, min_examples=args.min_examples,
                                 arrays=arrays)
            for draw in range(1, MAX_DRAWS):  # the program waits for devices as here
                if sel.device_ids:
                    break
                sel = poisson_select(home, population, r, args.clients, key=key, seed=0,
                                     min_examples=args.min_examples, utc_hour=(r + draw) % 24, draw=draw, arrays=arrays)
            # The old sampler took min(K, eligible) devices; its headline divided by the available ones.
            old.append(RoundSample(min(args.clients, sel.eligible), sel.available))
            new.append({"round": r, "q": sel.rate, "noise": args.noise, "sampling": "poisson-secret"})
            print(f"round {r:>3}: {sel.available} available, {sel.eligible} eligible, q = {sel.rate:.3f}, "
                  f"{len(sel.device_ids)} drawn", flush=True)
    n = len(population)
    before = spent(PrivacyConfig(dp_noise=args.noise), old, n)
    after = ledger.training_spent(new, delta=ledger.default_delta(n))
    print(f"population {n}; noise {args.noise}; K = {args.clients}; {args.rounds} rounds")
    print(f"before: headline ε = {before['epsilon']:.2f} (δ = {before['delta']:.3g}, q = K / available); "
          f"fixed-size bound {before['epsilon_fixed_size']:.2f}")
    print(f"after:  ε = {after['epsilon']:.2f} (δ = {after['delta']:.3g}, secret Poisson, q = K / eligible); "
          f"without amplification {after['epsilon_without_amplification']:.2f}")
    emit({"population": n, "noise": args.noise, "clients": args.clients, "rounds": args.rounds,
          "before_epsilon": before["epsilon"], "before_epsilon_fixed_size": before["epsilon_fixed_size"],
          "before_delta": before["delta"], "after_epsilon": after["epsilon"],
          "after_epsilon_without_amplification": after["epsilon_without_amplification"], "after_delta": after["delta"],
          "mean_available": sum(s.available for s in old) / len(old),
          "mean_q": sum(e["q"] for e in new) / len(new), "seconds": clock.seconds})


if __name__ == "__main__":
    main()
