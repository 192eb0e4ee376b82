"""Training tokens per second: federated rounds against centralized Keras on the same tokens.

For each preset and clients-per-round K, the same K devices' train splits (as ``fedkb train``
builds them) are trained on two ways, interleaved A B A B … so machine noise hits both:

* A — one FedAvg round in TFF's C++ runtime (``worker_binary``), exactly the process
  ``fedkb train`` builds;
* B — one epoch of plain Keras ``fit`` over the same examples pooled and shuffled, same model,
  same initial weights, same batch size, same clipped SGD as the clients.

Tokens are non-padding target tokens. A round's time is also split into parts: client data
(reading the logs, cached token ids, tf.data), transfer (a computation that only counts the
datasets' elements: serialization to the runtime and reading), broadcast + aggregation (a
computation that broadcasts the model and averages it back), and the rest — client training.

    uv run python bench/train_throughput.py [--presets small gboard] [--clients 10 50] [--pairs 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fedbench import DEFAULT_WORK, Stopwatch, emit, median, shakespeare_home  # first: puts the repo on sys.path

VOCAB = {"small": 8000, "gboard": 10000}


def pick_clients(home, population, k: int, *, min_examples: int, seed: int = 0) -> list[str]:
    """``k`` devices with enough train sentences, drawn at random but fixed for the run."""
    import numpy as np

    from keyboard.store import Device

    chosen = []
    for i in np.random.default_rng(seed).permutation(len(population)):
        with Device(home.device(population[int(i)].device_id)) as device:
            if device.status()["train_sentences"] >= min_examples:
                chosen.append(population[int(i)].device_id)
        if len(chosen) == k:
            return chosen
    raise SystemExit(f"only {len(chosen)} devices have {min_examples}+ train sentences; K={k} is too many")


def probe_computations(process):
    """Two computations that isolate the transfer of client data and the broadcast + mean of the model."""
    import tensorflow as tf
    import tensorflow_federated as tff

    data_type = process.next.type_signature.parameter[1]

    @tff.tensorflow.computation(data_type.member)
    def count(ds):
        return ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)

    @tff.federated_computation(data_type)
    def transfer(data):
        return tff.federated_sum(tff.federated_map(count, data))

    weights_type = process.get_model_weights.type_signature.result.trainable

    @tff.tensorflow.computation(weights_type, tf.int64)
    def keep(weights, n):
        del n
        return weights

    @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER), data_type)
    def broadcast_and_mean(weights, data):
        at_clients = tff.federated_broadcast(weights)
        return tff.federated_mean(tff.federated_map(keep, (at_clients, tff.federated_map(count, data))))

    return transfer, broadcast_and_mean


def bench_pair_series(home, preset_name: str, k: int, pairs: int, log) -> dict:
    import numpy as np
    import psutil
    import tensorflow as tf

    from federated import program, run_setup, training
    from federated.runtime import LocalRuntime
    from lm.model import MaskedCrossEntropy, build_model
    from tokenizer.specials import PAD_ID

    train = training.TrainConfig(preset=preset_name, clients_per_round=k)
    population, tokenizer, model_config = run_setup.prepare(home, train)
    ids = pick_clients(home, population, k, min_examples=train.min_examples)
    figures: dict = {"preset": preset_name, "clients_per_round": k, "parameters": model_config.parameter_count()}
    with LocalRuntime() as runtime:
        worker = psutil.Process(runtime.worker.process.pid)
        with Stopwatch() as build:
            process = training.build_process(model_config, train)
            state = process.initialize()
        figures["build_s"] = build.seconds

        def client_data(round_num: int):
            examples = [program.client_examples(home, d, tokenizer, model_config, train, round_num) for d in ids]
            return examples, [training.client_dataset(e, train, shuffle_seed=round_num) for e in examples]

        with Stopwatch() as first_data:  # the first time each device encodes its split
            examples, data = client_data(0)
        tokens = int(sum((e[:, 1:] != PAD_ID).sum() for e in examples))
        figures.update(tokens_per_round=tokens, examples_per_round=int(sum(len(e) for e in examples)),
                       client_data_first_s=first_data.seconds)
        transfer, broadcast_and_mean = probe_computations(process)

        keras_model = build_model(model_config, seed=train.seed)
        process.get_model_weights(state).assign_weights_to(keras_model)
        keras_model.compile(optimizer=tf.keras.optimizers.SGD(train.client_lr, global_clipnorm=train.client_clip_norm),
                            loss=MaskedCrossEntropy())
        pooled = np.concatenate(examples)

        def federated_round(round_num: int) -> dict:
            nonlocal state
            cpu0 = worker.cpu_times()
            with Stopwatch() as data_time:
                _, data = client_data(round_num)
            with Stopwatch() as round_time:
                state = process.next(state, data).state
            cpu1 = worker.cpu_times()
            return {"data_s": data_time.seconds, "round_s": round_time.seconds,
                    "worker_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)}

        def centralized_epoch(seed: int) -> float:
            order = np.random.default_rng(seed).permutation(len(pooled))
            with Stopwatch() as fit:
                keras_model.fit(pooled[order, :-1], pooled[order, 1:], batch_size=train.batch_size, epochs=1,
                                shuffle=False, verbose=0)
            return fit.seconds

        warm = federated_round(0)
        figures["first_round_s"] = warm["round_s"]
        figures["first_centralized_epoch_s"] = centralized_epoch(0)
        log(f"  warm-up: round {warm['round_s']:.2f} s (includes the runtime's first compilation), "
            f"build {build.seconds:.1f} s")
        fed, cen, ratios, rounds = [], [], [], []
        for i in range(1, pairs + 1):
            r = federated_round(i)
            c = centralized_epoch(i)
            rounds.append(r)
            fed.append(tokens / r["round_s"])
            cen.append(tokens / c)
            ratios.append(fed[-1] / cen[-1])
            log(f"  pair {i}: federated {fed[-1]:8.0f} tok/s ({r['round_s']:.2f} s)   centralized {cen[-1]:8.0f} "
                f"tok/s ({c:.2f} s)   ratio {ratios[-1]:.2f}")
        transfer_s, agg_s = [], []
        for _ in range(max(2, pairs)):
            _, data = client_data(1)
            with Stopwatch() as t:
                transfer(data)
            transfer_s.append(t.seconds)
            with Stopwatch() as t:
                broadcast_and_mean(process.get_model_weights(state).trainable, data)
            agg_s.append(max(t.seconds - transfer_s[-1], 0.0))  # it also moves the data once
        round_s = median([r["round_s"] for r in rounds])
        breakdown = {
            "client_data_s": median([r["data_s"] for r in rounds]),
            "transfer_s": median(transfer_s),
            "broadcast_aggregation_s": median(agg_s),
        }
        client_s = round_s - breakdown["transfer_s"] - breakdown["broadcast_aggregation_s"]
        breakdown["client_training_s"] = max(client_s, 0.0)
        figures.update(
            federated_tokens_per_s=median(fed), centralized_tokens_per_s=median(cen),
            ratios=ratios, ratio_median=median(ratios), round_s=round_s,
            worker_cpu_s=median([r["worker_cpu_s"] for r in rounds]), breakdown=breakdown,
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["small", "gboard"], choices=["tiny", "small", "gboard"])
    parser.add_argument("--clients", nargs="+", type=int, default=[10, 50])
    parser.add_argument("--pairs", type=int, default=3, help="interleaved federated/centralized pairs per setting")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where the seeded homes are kept")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.perf_counter()
    pairs = []
    for preset_name in args.presets:
        home = shakespeare_home(args.work, vocab_size=VOCAB.get(preset_name, 8000))
        for k in args.clients:
            log(f"{preset_name}, {k} clients per round:")
            fig = bench_pair_series(home, preset_name, k, args.pairs, log)
            b = fig["breakdown"]
            log(f"  median ratio {fig['ratio_median']:.2f}; a round of {fig['round_s']:.2f} s = client data "
                f"{b['client_data_s']:.2f} (before the round) + transfer {b['transfer_s']:.2f} + broadcast/mean "
                f"{b['broadcast_aggregation_s']:.2f} + client training {b['client_training_s']:.2f}; "
                f"worker CPU {fig['worker_cpu_s']:.2f} s")
            pairs.append(fig)
    log(f"total {time.perf_counter() - started:.0f} s")
    emit({"pairs": pairs})


if __name__ == "__main__":
    main()
