"""Training GFLOP/s of the next-word model against this machine's matrix-multiply peak, in one run.

Counted work per target token, forward, for embedding size E (= projection size P), U cell
units, G gates (3 with CIFG, 4 without) and V pieces; a multiply-add is 2 FLOPs:

    input projection   2·E·G·U   x @ W_x (all time steps in one matmul)
    recurrent matmul   2·P·G·U   h @ W_h (one per step)
    projection         2·U·P     (o·tanh c) @ W_proj
    output logits      2·E·V     h @ embedding^T (tied)

Training counts 3× the forward FLOPs: backward is two matmuls per forward matmul, one for the
inputs' gradient and one for the weights'. Gates, softmax, the embedding gather and the optimizer
are not counted: they are part of what the achieved rate loses against the peak. For ``small``
(E=64, U=256, V=8000) that is 3.76 MFLOP per token, 82 % of it in the output layer.

In the same process, alternating so that machine noise hits every contender alike:

* the peak: numpy float32 matmuls (BLAS threads from threadpoolctl) and ``tf.matmul``, 2048²,
  best of several;
* Keras ``fit`` on random full-length sequences (no padding, so every position is a token), with
  the clients' clipped SGD and batch size: the current model, the model as of ``--baseline-rev``
  (loaded from git; ``--baseline-rev ''`` skips it), and the output layer alone (embedding → tied
  logits → loss), which splits the time between the output layer and the recurrence;
* one TFF round with one client that trains on the same number of sequences, the process
  ``fedkb train`` builds (current and baseline model; ``--no-tff`` skips it).

Rates use the best of ``--pairs`` timings of each (the least disturbed; medians are printed too),
as the peak does.

    uv run python bench/train_flops.py [--presets small gboard] [--pairs 3] [--batches 16] [--no-tff]

About a minute for ``small`` with TFF (importing TFF and building four processes is half of it).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

from fedbench import DEFAULT_WORK, emit, median  # first: puts the repo on sys.path

REPO = Path(__file__).resolve().parent.parent
BASELINE_REV = "2280117"  # the last commit before the input projection left the recurrence


def forward_flops_per_token(config) -> dict[str, int]:
    """The docstring's counts for one token, forward, by part."""
    e, u, g, v = config.embedding_dim, config.lstm_units, config.gates, config.vocab_size
    return {"input_projection": 2 * e * g * u, "recurrent": 2 * e * g * u, "projection": 2 * u * e,
            "output": 2 * e * v}


def train_flops_per_token(config) -> int:
    return 3 * sum(forward_flops_per_token(config).values())


def best_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def numpy_sgemm_gflops(n: int = 2048, repeats: int = 6) -> float:
    import numpy as np

    a, b = (np.random.default_rng(i).random((n, n), dtype=np.float32) for i in (0, 1))
    a @ b  # warm-up: BLAS threads start
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats) / 1e9


def tf_matmul_gflops(n: int = 2048, repeats: int = 6) -> float:
    import tensorflow as tf

    a, b = tf.random.uniform([n, n], seed=0), tf.random.uniform([n, n], seed=1)
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))  # a tiny fetch: time the matmul
    matmul()
    return 2 * n**3 / best_seconds(lambda: matmul().numpy(), repeats) / 1e9


def blas_threading() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: info.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
            for info in threadpool_info() if info.get("user_api") == "blas"]


def model_module_at(rev: str):
    """``lm/model.py`` as of git revision ``rev``, imported as its own module (None without git)."""
    try:
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:lm/model.py"], check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no baseline: git show {rev}:lm/model.py failed ({exc})", flush=True)
        return None
    path = DEFAULT_WORK / f"model_at_{rev}.py"  # a real file, so that AutoGraph can read the source
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def output_layer_model(config, seed: int):
    """Embedding -> tied logits, no recurrence: the output layer's share of a training step."""
    import tensorflow as tf

    from lm.model import tied_logits

    class OutputLayerOnly(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = tf.keras.layers.Embedding(
                config.vocab_size, config.embedding_dim,
                embeddings_initializer=tf.keras.initializers.RandomUniform(-0.05, 0.05, seed=seed))
            self.output_bias = self.add_weight(name="output_bias", shape=(config.vocab_size,), initializer="zeros")

        def call(self, tokens, training=False):
            return tied_logits(self.embedding(tokens), self.embedding.embeddings, self.output_bias)

    model = OutputLayerOnly()
    model(tf.zeros([1, config.sequence_length], tf.int32))
    return model


def random_examples(config, n: int, seed: int = 0):
    """``n`` full-length examples of ordinary pieces (ids from 4: past the special tokens).

    An example is ``sequence_length + 1`` pieces, inputs and targets shifted by one, as
    ``lm.examples`` makes them.
    """
    import numpy as np

    shape = (n, config.sequence_length + 1)
    return np.random.default_rng(seed).integers(4, config.vocab_size, size=shape, dtype=np.int32)


def keras_fitter(model, loss, train, examples):
    """A no-arg function that runs one epoch of ``fit`` over ``examples`` (compiled and traced here)."""
    import tensorflow as tf

    model.compile(optimizer=tf.keras.optimizers.SGD(train.client_lr, global_clipnorm=train.client_clip_norm), loss=loss)
    x, y = examples[:, :-1], examples[:, 1:]

    def fit():
        model.fit(x, y, batch_size=train.batch_size, epochs=1, shuffle=False, verbose=0)

    fit()  # tracing, and the first run of every kernel
    return fit


def interleaved(runs: dict, pairs: int) -> dict[str, dict[str, list[float]]]:
    """Runs every contender once per pair, in turn; returns their wall and CPU seconds."""
    times = {name: {"wall_s": [], "cpu_s": []} for name in runs}
    for _ in range(pairs):
        for name, run in runs.items():
            c0, t0 = time.process_time(), time.perf_counter()
            run()
            times[name]["wall_s"].append(time.perf_counter() - t0)
            times[name]["cpu_s"].append(time.process_time() - c0)
    return times


def rates(times: dict[str, list[float]], tokens: int, flops_per_token: int) -> dict:
    best, med = min(times["wall_s"]), median(times["wall_s"])
    return {"tokens_per_s": tokens / best, "tokens_per_s_median": tokens / med,
            "gflops": tokens * flops_per_token / best / 1e9, "gflops_median": tokens * flops_per_token / med / 1e9,
            "cpu_s_per_1k_tokens": 1e3 * min(times["cpu_s"]) / tokens, **times}


def keras_figures(config, train, baseline, *, pairs: int, batches: int, log) -> dict:
    from lm.model import MaskedCrossEntropy, build_model

    examples = random_examples(config, batches * train.batch_size)
    tokens = examples[:, 1:].size
    runs = {"current": keras_fitter(build_model(config, seed=0), MaskedCrossEntropy(), train, examples)}
    if baseline is not None:
        runs["baseline"] = keras_fitter(baseline.build_model(config, seed=0), baseline.MaskedCrossEntropy(),
                                        train, examples)
    runs["output_layer"] = keras_fitter(output_layer_model(config, seed=0), MaskedCrossEntropy(), train, examples)
    times = interleaved(runs, pairs)
    flops = train_flops_per_token(config)
    output_flops = 3 * forward_flops_per_token(config)["output"]
    out = {name: rates(t, tokens, flops) for name, t in times.items()}
    out["output_layer"] = rates(times["output_layer"], tokens, output_flops)
    out["tokens"] = tokens
    cur, head = min(times["current"]["wall_s"]), min(times["output_layer"]["wall_s"])
    # What the rest of the step costs; a disturbed output-layer timing can leave nothing to divide by.
    rest = tokens * (flops - output_flops) / (cur - head) / 1e9 if cur > head else float("nan")
    out["split"] = {"output_layer_time_share": head / cur, "output_layer_flop_share": output_flops / flops,
                    "recurrence_gflops": rest}
    if baseline is not None:
        out["speedup"] = min(times["baseline"]["wall_s"]) / cur
        out["speedup_median"] = median(times["baseline"]["wall_s"]) / median(times["current"]["wall_s"])
    for name in runs:
        r = out[name]
        log(rate_line("keras", name, r) + f"CPU {r['cpu_s_per_1k_tokens']*1e3:5.1f} ms/1k tokens")
    return out


def rate_line(engine: str, name: str, r: dict) -> str:
    """The head of a contender's log line, the same for Keras and TFF: tokens and GFLOP/s, best and median."""
    return (f"  {engine:5s} {name:12s} {r['tokens_per_s']:8.0f} tok/s (median {r['tokens_per_s_median']:7.0f})  "
            f"{r['gflops']:6.1f} GFLOP/s (median {r['gflops_median']:5.1f})  ")


def tff_figures(config, train, baseline, *, pairs: int, batches: int, log) -> dict:
    """One client per round, ``batches`` batches of local training, current and baseline model alternating."""
    import psutil
    import tensorflow_federated as tff

    from federated import training
    from federated.runtime import LocalRuntime

    examples = random_examples(config, batches * train.batch_size, seed=1)
    tokens = examples[:, 1:].size
    train = training.TrainConfig(**{**train.as_dict(), "clients_per_round": 1,
                                    "max_examples_per_client": max(train.max_examples_per_client, len(examples))})
    model_fns = {"current": None}
    if baseline is not None:
        def baseline_model_fn():
            return tff.learning.models.from_keras_model(
                baseline.build_model(config, seed=train.seed), input_spec=training.input_spec(config),
                loss=baseline.MaskedCrossEntropy(), metrics=[baseline.MaskedAccuracy(), baseline.NumTokens()])
        model_fns["baseline"] = baseline_model_fn
    with LocalRuntime() as runtime:
        worker = psutil.Process(runtime.worker.process.pid)
        processes, cpu = {}, {name: [] for name in model_fns}
        for name, model_fn in model_fns.items():
            process = training.build_process(config, train, model_fn=model_fn)
            processes[name] = [process, process.initialize()]

        def round_of(name: str):
            def run():
                process, state = processes[name]
                c0 = worker.cpu_times()
                data = [training.client_dataset(examples, train, shuffle_seed=0)]
                processes[name][1] = process.next(state, data).state
                c1 = worker.cpu_times()
                cpu[name].append(c1.user + c1.system - c0.user - c0.system)
            return run

        runs = {name: round_of(name) for name in model_fns}
        for run in runs.values():
            run()  # the worker's first run of each computation
        times = interleaved(runs, pairs)
    out = {name: {**rates(t, tokens, train_flops_per_token(config)), "worker_cpu_s": cpu[name][1:]}
           for name, t in times.items()}
    out["tokens"] = tokens
    if baseline is not None:
        out["speedup"] = min(times["baseline"]["wall_s"]) / min(times["current"]["wall_s"])
    for name in runs:
        r = out[name]
        log(rate_line("tff", name, r) + f"worker CPU {median(r['worker_cpu_s']):.2f} s/round")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["small"], choices=["tiny", "small", "gboard"],
                        help="gboard adds about a minute")
    parser.add_argument("--pairs", type=int, default=3, help="timings of each contender, taken in turn")
    parser.add_argument("--batches", type=int, default=16, help="batches per timing (a client's round: up to 32)")
    parser.add_argument("--baseline-rev", default=BASELINE_REV,
                        help="git revision of the model to compare with ('' = none)")
    parser.add_argument("--no-tff", dest="tff", action="store_false",
                        help="skip the TFF rounds (saves ~30 s of start-up)")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.perf_counter()
    import tensorflow as tf

    from federated.training import TrainConfig
    from lm.config import preset

    blas = blas_threading()
    sgemm, tf_peak = numpy_sgemm_gflops(), tf_matmul_gflops()
    peak = max(sgemm, tf_peak)
    threads = ", ".join(f"{b['internal_api']} {b['num_threads']} threads" for b in blas) or "BLAS unknown"
    tf_threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    log(f"peak: numpy sgemm 2048² {sgemm:.1f} GFLOP/s ({threads}), "
        f"tf.matmul {tf_peak:.1f} GFLOP/s (TF intra-op threads {tf_threads})")
    baseline = model_module_at(args.baseline_rev) if args.baseline_rev else None
    figures = {"bench": "train_flops", "sgemm_gflops": sgemm, "tf_matmul_gflops": tf_peak, "peak_gflops": peak,
               "blas": blas, "baseline_rev": args.baseline_rev if baseline else None, "presets": {}}
    for name in args.presets:
        config = preset(name)
        train = TrainConfig(preset=name)
        flops = train_flops_per_token(config)
        forward = ", ".join(f"{k} {v / 1e6:.3f}" for k, v in forward_flops_per_token(config).items())
        log(f"{name}: {flops / 1e6:.2f} MFLOP per token trained ({forward} forward), "
            f"batch {train.batch_size} × {config.sequence_length} tokens")
        fig = {"train_flops_per_token": flops, "keras": keras_figures(config, train, baseline, pairs=args.pairs,
                                                                      batches=args.batches, log=log)}
        k = fig["keras"]
        split = k["split"]
        speedup = (f"; Keras speed-up over {args.baseline_rev}: "
                   f"{k['speedup']:.2f}x (medians {k['speedup_median']:.2f}x)" if baseline else "")
        log(f"  output layer: {split['output_layer_time_share']:.0%} of the time "
            f"for {split['output_layer_flop_share']:.0%} of the FLOPs; "
            f"recurrence {split['recurrence_gflops']:.1f} GFLOP/s" + speedup)
        figures[f"keras_{name}_gflops"] = k["current"]["gflops"]
        figures[f"keras_{name}_tokens_per_s"] = k["current"]["tokens_per_s"]
        figures[f"keras_{name}_fraction_of_peak"] = k["current"]["gflops"] / peak
        if baseline:
            figures[f"keras_{name}_baseline_gflops"] = k["baseline"]["gflops"]
            figures[f"keras_{name}_speedup"] = k["speedup"]
        if args.tff:
            fig["tff"] = t = tff_figures(config, train, baseline, pairs=args.pairs, batches=args.batches, log=log)
            figures[f"tff_{name}_gflops"] = t["current"]["gflops"]
            figures[f"tff_{name}_tokens_per_s"] = t["current"]["tokens_per_s"]
            if baseline:
                figures[f"tff_{name}_speedup"] = t["speedup"]
        figures["presets"][name] = fig
    first = args.presets[0]
    figures["fraction_of_peak"] = figures[f"keras_{first}_fraction_of_peak"]
    log(f"{first}: Keras training at {figures['fraction_of_peak']:.0%} of the measured matmul peak "
        f"({figures[f'keras_{first}_gflops']:.1f} of {peak:.1f} GFLOP/s); total {time.perf_counter() - started:.0f} s")
    emit(figures)


if __name__ == "__main__":
    sys.exit(main())
