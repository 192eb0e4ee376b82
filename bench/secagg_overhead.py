"""Round time with secure aggregation against plain FedAvg, same clients, same model.

Two processes from ``federated.training.build_process``: plain weighted FedAvg (TFF's mean)
and the same with ``secagg_factory.secure_aggregator`` run by ``secagg_round.SecureRounds``.
Rounds alternate plain, secure, plain, … from the same initial state on the same client data
(synthetic token sequences of the preset's length), so machine noise hits both; the first
round of each (tracing, worker warm-up) is reported apart. The secure round is also split into
its stages: key setup (X25519, Shamir, AES-GCM among the K clients, in Python), client phase
(one TFF call: training + masking with ChaCha20 in TF ops + sums), unmasking (numpy, ChaCha20
from ``cryptography``), update (the server step, a second TFF call).

    uv run python bench/secagg_overhead.py [--preset tiny|small|gboard] [--clients 10] [--examples 64] [--rounds 3]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "gboard"])
    parser.add_argument("--clients", type=int, default=10, help="K clients per round")
    parser.add_argument("--examples", type=int, default=64, help="training sequences per client")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each kind after the first")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from federated import training
    from federated.runtime import LocalRuntime
    from federated.secagg_factory import SecAggConfig, secure_aggregator
    from federated.secagg_round import SecureRounds
    from lm.config import preset

    model = preset(args.preset)
    train = training.TrainConfig(preset=args.preset, clients_per_round=args.clients)
    secure = SecAggConfig(clip=1.0, max_clients=args.clients, max_weight=float(args.examples))
    rng = np.random.default_rng(0)
    data = [
        training.client_dataset(
            rng.integers(1, model.vocab_size, size=(args.examples, model.sequence_length + 1)).astype(np.int32),
            train, shuffle_seed=i)
        for i in range(args.clients)
    ]
    params = model.parameter_count()
    print(f"preset {args.preset} ({params:,} parameters), K={args.clients} clients x {args.examples} sequences, "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} threads", flush=True)

    with LocalRuntime():
        t = time.perf_counter()
        plain = training.build_process(model, train)
        built_plain = time.perf_counter() - t
        t = time.perf_counter()
        rounds = SecureRounds(training.build_process(model, train, model_aggregator=secure_aggregator(secure)), secure)
        built_secure = time.perf_counter() - t
        print(f"build: plain {built_plain:.1f} s, secure {built_secure:.1f} s (incl. MapReduceForm split)", flush=True)

        s_plain, s_secure = plain.initialize(), rounds.initialize()
        times = {"plain": [], "secure": []}
        stages: list[dict[str, float]] = []
        for r in range(args.rounds + 1):
            t = time.perf_counter()
            plain.next(s_plain, data)
            times["plain"].append(time.perf_counter() - t)
            t = time.perf_counter()
            rounds.next(s_secure, data)
            times["secure"].append(time.perf_counter() - t)
            stages.append(rounds.last_timings)
            print(f"round {r}: plain {times['plain'][-1]:.2f} s, secure {times['secure'][-1]:.2f} s "
                  f"({', '.join(f'{k} {v:.2f}' for k, v in rounds.last_timings.items())})", flush=True)

    med = {k: statistics.median(v[1:]) if len(v) > 1 else v[0] for k, v in times.items()}
    stage_med = {k: statistics.median(s[k] for s in stages[1:] or stages) for k in stages[0]}
    overhead = med["secure"] - med["plain"]
    print(f"median round: plain {med['plain']:.2f} s, secure {med['secure']:.2f} s: overhead {overhead:+.2f} s "
          f"({100 * overhead / med['plain']:+.0f} %)")
    print("secure stages (median): " + ", ".join(f"{k} {v:.3f} s" for k, v in stage_med.items()))
    print(json.dumps({
        "bench": "secagg_overhead", "preset": args.preset, "parameters": params, "clients": args.clients,
        "examples_per_client": args.examples, "timed_rounds": args.rounds,
        "first_round_plain_s": round(times["plain"][0], 3), "first_round_secure_s": round(times["secure"][0], 3),
        "round_plain_s": round(med["plain"], 3), "round_secure_s": round(med["secure"], 3),
        "overhead_s": round(overhead, 3), "overhead_pct": round(100 * overhead / med["plain"], 1),
        "stages_s": {k: round(v, 3) for k, v in stage_med.items()},
        "build_plain_s": round(built_plain, 2), "build_secure_s": round(built_secure, 2),
    }, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
