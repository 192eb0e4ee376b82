"""What the isolated worker costs: round and transfer time through the namespace relay vs direct TCP.

Two workers run at once: ``federated.runtime.Worker()`` (``worker_binary`` in its own network
namespace, reached through a Unix socket and ``federated/relay.py``) and a bare
``worker_binary --port=N`` reached on 127.0.0.1, as before issue 12. The same FedAvg rounds and
the same 5 MB-per-client transfers alternate between them, so machine noise hits both alike.

    uv run python bench/executor_isolation.py [--preset small] [--clients 10] [--rounds 3] [--transfers 5]
"""

from __future__ import annotations

import argparse
import subprocess

from fedbench import Stopwatch, add_round_options, emit, median, preset_home  # first: repo on sys.path


def direct_worker():
    """``worker_binary`` serving on all interfaces, as TFF (and fedkb before issue 12) starts it."""
    from common import die_with_parent
    from federated import runtime

    port = runtime._free_port()
    process = subprocess.Popen(
        die_with_parent.command([str(runtime.worker_binary_path()), f"--port={port}",
                                 f"--max_concurrent_computation_calls={runtime.available_cores()}"]),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
    return process, f"127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_round_options(parser, preset="small", clients=10, rounds=3)
    parser.add_argument("--transfers", type=int, default=5)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow_federated as tff
    from train_throughput import pick_clients

    from federated import program, run_setup, training
    from federated.runtime import Worker, connect_context, wait_until_serving

    home = preset_home(args.work, args.preset)
    train = training.TrainConfig(preset=args.preset, clients_per_round=args.clients)
    population, tokenizer, model_config = run_setup.prepare(home, train)
    ids = pick_clients(home, population, args.clients, min_examples=train.min_examples)

    isolated = Worker()
    direct, direct_target = direct_worker()
    try:
        wait_until_serving(isolated)
        contexts = {"isolated": connect_context([isolated.target]), "direct": connect_context([direct_target])}
        size = 5 * 2**20 // 4  # float32s: 5 MB per client, about one model's weights

        @tff.federated_computation(tff.FederatedType(tff.TensorType(np.float32, [size]), tff.CLIENTS))
        def ship(values):
            return tff.federated_sum(values)

        payload = [np.full(size, i, np.float32) for i in range(args.clients)]
        process = None
        times: dict[str, dict[str, list[float]]] = {k: {"transfer": [], "round": []} for k in contexts}
        for name in contexts:  # warm-up: first call compiles and loads
            tff.framework.set_default_context(contexts[name])
            ship(payload)
        for _ in range(args.transfers):
            for name, ctx in contexts.items():
                tff.framework.set_default_context(ctx)
                with Stopwatch() as t:
                    ship(payload)
                times[name]["transfer"].append(t.seconds)
        states = {}
        for r in range(args.rounds + 1):
            data = [training.client_dataset(program.client_examples(home, d, tokenizer, model_config, train, r),
                                            train, shuffle_seed=r) for d in ids]
            for name, ctx in contexts.items():
                tff.framework.set_default_context(ctx)
                if process is None:
                    process = training.build_process(model_config, train)
                if name not in states:
                    states[name] = process.initialize()
                with Stopwatch() as t:
                    states[name] = process.next(states[name], data).state
                if r > 0:  # round 0 is warm-up
                    times[name]["round"].append(t.seconds)
    finally:
        isolated.stop()
        direct.terminate()
        direct.wait()
    figures = {name: {k: median(v) for k, v in t.items()} for name, t in times.items()}
    for name, f in figures.items():
        print(f"{name:9s}: {args.clients} x 5 MB transfer {f['transfer']:.3f} s, round {f['round']:.2f} s "
              f"(medians of {args.transfers} / {args.rounds})")
    ratio = {k: figures["isolated"][k] / figures["direct"][k] for k in ("transfer", "round")}
    print(f"isolated / direct: transfer {ratio['transfer']:.3f}, round {ratio['round']:.3f}")
    emit({"preset": args.preset, "clients_per_round": args.clients, "figures": figures, "ratio": ratio,
          "raw": times})


if __name__ == "__main__":
    main()
