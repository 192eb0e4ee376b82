"""Round time with one and with two local TFF workers (``fedkb worker``'s executor services).

The same K devices, model and seeds on each set-up; with two workers TFF's mergeable context
sends half of the clients to each and merges their partial sums. On one 2-core machine a
single worker already uses both cores, so two local workers are not expected to be faster:
this measures the cost of splitting, and shows the results agree. Spread over hosts, each
worker brings its own cores.

    uv run python bench/scale_out.py [--preset small] [--clients 10] [--rounds 4]
"""

from __future__ import annotations

import argparse

from fedbench import Stopwatch, add_round_options, emit, median, preset_home  # first: repo on sys.path


def rounds_on(workers: int, home, preset_name: str, k: int, rounds: int) -> dict:
    import numpy as np
    import tensorflow_federated as tff
    from train_throughput import pick_clients

    from federated import program, run_setup, training
    from federated.runtime import Worker, connect_context, wait_until_serving

    train = training.TrainConfig(preset=preset_name, clients_per_round=k)
    population, tokenizer, model_config = run_setup.prepare(home, train)
    ids = pick_clients(home, population, k, min_examples=train.min_examples)
    started = [Worker() for _ in range(workers)]
    try:
        for w in started:
            wait_until_serving(w)
        tff.framework.set_default_context(connect_context([w.target for w in started]))
        process = training.build_process(model_config, train)
        state = process.initialize()
        times, losses = [], []
        for r in range(rounds + 1):
            data = [training.client_dataset(program.client_examples(home, d, tokenizer, model_config, train, r),
                                            train, shuffle_seed=r) for d in ids]
            with Stopwatch() as t:
                output = process.next(state, data)
            state = output.state
            times.append(t.seconds)
            losses.append(training.train_metrics(output.metrics)["loss"])
        weights = [np.asarray(w) for w in process.get_model_weights(state).trainable]
    finally:
        for w in started:
            w.stop()
    return {"first_round_s": times[0], "round_s": median(times[1:]), "losses": losses, "weights": weights}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_round_options(parser, preset="small", clients=10, rounds=4)
    args = parser.parse_args(argv)

    home = preset_home(args.work, args.preset)
    one = rounds_on(1, home, args.preset, args.clients, args.rounds)
    two = rounds_on(2, home, args.preset, args.clients, args.rounds)
    diff = max(float(abs(a - b).max()) for a, b in zip(one["weights"], two["weights"]))
    for name, r in (("1 worker ", one), ("2 workers", two)):
        print(f"{name}: round {r['round_s']:.2f} s (median of {args.rounds}; first {r['first_round_s']:.2f} s), "
              f"losses {', '.join(f'{x:.4f}' for x in r['losses'])}")
    print(f"largest weight difference after {args.rounds + 1} rounds: {diff:.2e} (float summation order)")
    emit({"preset": args.preset, "clients_per_round": args.clients,
          "round_s": {"1": one["round_s"], "2": two["round_s"]},
          "first_round_s": {"1": one["first_round_s"], "2": two["first_round_s"]}, "max_weight_diff": diff})


if __name__ == "__main__":
    main()
