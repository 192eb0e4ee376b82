"""Per-keystroke suggestion latency, cold start, on-device model size and recall, per model preset.

The path measured is the keyboard's product, as the Textual app builds it: ``load_predictor``
(``keyboard/predictor.py``) on a device with a version installed and a log returns
``keyboard.mix.ProductPredictor``, which mixes the version's LSTM beam (``ModelPredictor``), the
n-grams published with the version (``ngrams.tsv.gz``) and the personal n-gram model of the
device's log, with the mix weights fitted on the log's held-out split. It is asked for the top 3
whole words after every keystroke, one thread, replaying held-out sentences of the bundled
Shakespeare corpus character by character. The LSTM alone (``ModelPredictor`` of the same
installed model) is timed on the same keystrokes in the same run, replays interleaved, so the
mix's cost shows as a ratio (``lstm`` row, ``mix_over_lstm_*``).

The set-up is ``bench/latency_setup.py``. For each preset the population is seeded with
``fedkb population seed``'s code path and the
tokenizer is trained from the devices' summed word counts (``bench/fedbench.shakespeare_home``,
shared with the other benchmarks and only read here). The model is the preset trained
*centrally* with Keras (``eval/centralized.py``) on the pooled train splits for ``--train-tokens``
target tokens — faster than federated rounds and good enough to compare the float model with its
int8 on-device copy; ``--train-tokens 0`` uses the seeded initial weights instead. Training runs in
a child process, so this process never imports TensorFlow, like the keyboard.

The n-gram table is **not** gathered with TFF's heavy hitters (``federated.ngrams.collect``, which
needs a TFF worker and the cores for minutes): it is ``federated.ngrams.exact_table`` with
the default ``NgramConfig`` (M = 200 per order, counts capped at 4, k = 2 devices, orders 1–3),
i.e. every device's capped top-M contribution summed and kept where at least k devices sent it —
exactly what the rounds release without DP (``bench/private_ngrams.py`` checks that equality) —
written with ``common.artifacts.ngrams_to_bytes``, the format ``fedkb ngrams gather`` writes.

The model and the table are published with ``federated.registry.publish`` (float
``weights.npz``, the int8 ``ondevice.npz`` and ``ngrams.tsv.gz``) outside the home and installed
on a scratch device whose log is a copy of the log of the population's device with the most
sentences (so the personal model and the weight fit are as costly as the population gets); that
device's sentences are left out of the replay and the recall sentences. Trained models are kept
under ``--work`` and reused.

Figures, per preset, for the product and for the LSTM alone: keystroke latency p50 / p99 (wall
clock, and the thread's CPU time, which other processes on a shared machine disturb less; the
load average is recorded with them), pooled over ``--repeats`` replays with a fresh predictor
each, OpenBLAS on one thread as in ``fedkb keyboard`` (``OPENBLAS_NUM_THREADS=2`` in the
environment to compare); cold start = spawning ``python -c`` that imports the predictor, loads it
(``load_predictor`` for the product: LSTM, n-gram table, personal model from the log, weight fit)
and prints a suggestion, until that line arrives (median of ``--cold-runs``), with the time of
``load_predictor`` alone inside the child; the on-device model file's bytes and the table's;
recall@1 of the float and of the on-device LSTM (``lm/recall.py``, the same beam) and of the
product on held-out sentences. Goals for gboard: product p99 <= 2 ms per keystroke, cold start
<= 1 s.

    uv run python bench/suggest_latency.py [--quick] [--presets small gboard] [--repeats 2]

The last line is one JSON object: ``{"presets": {"small": {...}, "gboard": {...}}}``; each
preset's figures are the product's, with the LSTM alone's under ``"lstm"``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fedbench import DEFAULT_WORK, emit, median  # first: puts the repo on sys.path

from fedkb.cmd_keyboard import single_thread_blas

single_thread_blas()  # as `fedkb keyboard` does, before numpy is imported

import numpy as np  # noqa: E402
from latency_setup import Setup, prepare  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PARTS = ("lstm", "ngrams", "personal")  # what the product must mix here
COLD_START = """\
import json, sys, time
t0 = time.perf_counter()
from keyboard.predictor import ModelPredictor, load_predictor
from keyboard.install import installed
t1 = time.perf_counter()
if sys.argv[3] == "product":
    predictor = load_predictor(sys.argv[1])
else:
    predictor = ModelPredictor(installed(sys.argv[1]).path)
t2 = time.perf_counter()
words = predictor.suggest(sys.argv[2], 3)
print(json.dumps({"name": predictor.name, "parts": list(getattr(predictor, "parts", ())), "words": words,
                  "inside_s": time.perf_counter() - t0, "import_s": t1 - t0, "load_s": t2 - t1}), flush=True)
"""


# -- measurements ------------------------------------------------------------------------------------
def product_predictor(device_dir: Path):
    """``load_predictor`` as the app calls it; refuses anything but the full three-part product."""
    from keyboard.mix import ProductPredictor
    from keyboard.predictor import load_predictor

    predictor = load_predictor(device_dir)
    if not isinstance(predictor, ProductPredictor):
        raise SystemExit(f"{device_dir}: the installed model did not load ({getattr(predictor, 'reason', '?')})")
    if predictor.parts != PARTS or predictor.personal.empty or predictor.ngrams.empty:
        raise SystemExit(f"{device_dir}: the product mixes {predictor.parts} (personal model empty: "
                         f"{predictor.personal.empty}); the version needs n-grams and the device a log")
    return predictor


def lstm_predictor(device_dir: Path):
    """The installed model's LSTM alone, as the product holds it."""
    from keyboard.install import installed
    from keyboard.predictor import ModelPredictor

    return ModelPredictor(installed(device_dir).path)


def replay_latency(predictor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and thread-CPU milliseconds of ``suggest(text, 3)`` per keystroke."""
    wall, cpu = np.empty(len(texts)), np.empty(len(texts))
    for i, text in enumerate(texts):
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        predictor.suggest(text, 3)
        cpu[i], wall[i] = time.thread_time_ns() - c0, time.perf_counter_ns() - w0
    return wall / 1e6, cpu / 1e6


def cold_start(device_dir: Path, text: str, kind: str = "product") -> dict:
    """Seconds from spawning ``python -c`` (import, load ``kind``, suggest) to its answer."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", COLD_START, str(device_dir), text, kind], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    seconds = time.perf_counter() - started
    _, err = proc.communicate()
    if proc.returncode != 0 or not line:
        raise SystemExit(f"cold start failed ({proc.returncode}):\n{err[-2000:]}")
    answer = json.loads(line)
    if kind == "product" and (answer["name"] != "product" or tuple(answer["parts"]) != PARTS):
        raise SystemExit(f"cold start loaded {answer['name']!r} {answer['parts']}, not the installed model's product")
    return {"seconds": seconds, **{k: answer[k] for k in ("inside_s", "import_s", "load_s", "words")}}


def recall_of(predictor, sentences: list[str]) -> dict:
    from lm.recall import recall_counts

    counts = recall_counts(predictor, sentences, ks=(1, 3))
    return {"recall_at_1": counts.recall(1), "recall_at_3": counts.recall(3), "predictions": counts.predictions}


def recall_at_1(version_dir: Path, sentences: list[str], *, on_device: bool) -> dict:
    """recall@1/@3 with the keyboard's beam, from the int8 on-device weights or the float ones."""
    from common.layout import TOKENIZER_MODEL
    from keyboard.lm import NumpyLM
    from keyboard.suggest import WordSuggester
    from tokenizer.vocab import Tokenizer

    lm = NumpyLM.load(version_dir, on_device=on_device)
    return recall_of(WordSuggester(lm, Tokenizer.load(version_dir / TOKENIZER_MODEL)), sentences)


def latency(runs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    wall, cpu = np.concatenate([w for w, _ in runs]), np.concatenate([c for _, c in runs])
    pct = lambda a, q: round(float(np.percentile(a, q)), 4)  # noqa: E731
    return {"p50_ms": pct(wall, 50), "p99_ms": pct(wall, 99), "max_ms": round(float(wall.max()), 4),
            "cpu_p50_ms": pct(cpu, 50), "cpu_p99_ms": pct(cpu, 99), "p99_ms_per_repeat": [pct(w, 99) for w, _ in runs]}


def colds(setup: Setup, kind: str, runs: int, text: str) -> dict:
    got = [cold_start(setup.device_dir, text, kind) for _ in range(runs)]
    return {"cold_start_s": round(median([c["seconds"] for c in got]), 4),
            "cold_start_runs_s": [round(c["seconds"], 4) for c in got],
            "cold_start_inside_s": round(median([c["inside_s"] for c in got]), 4),
            "cold_start_import_s": round(median([c["import_s"] for c in got]), 4),
            "cold_start_load_s": round(median([c["load_s"] for c in got]), 4)}


def measure(setup: Setup, *, repeats: int, cold_runs: int) -> dict:
    """Every figure of one preset (the dict that goes into the JSON line): the product's, the LSTM's under "lstm"."""
    from common import artifacts

    load_before = os.getloadavg()[0]
    product_runs, lstm_runs, timed = [], [], set()
    for _ in range(repeats):  # interleaved, so both see the same machine
        for runs, make in ((product_runs, product_predictor), (lstm_runs, lstm_predictor)):
            predictor = make(setup.device_dir)
            timed.add((make.__name__, type(predictor).__name__, tuple(getattr(predictor, "parts", ()))))
            runs.append(replay_latency(predictor, setup.replay))
    product, lstm = latency(product_runs), latency(lstm_runs)
    first_words = " ".join(setup.replay[-1].split()[:2]) + " "
    product |= colds(setup, "product", cold_runs, first_words)
    lstm |= colds(setup, "lstm", cold_runs, first_words)
    manifest = artifacts.read_manifest(setup.version_dir)
    ondevice_name = artifacts.ONDEVICE if artifacts.ONDEVICE in manifest["files"] else artifacts.WEIGHTS
    ondevice = setup.version_dir / ondevice_name
    float_recall = recall_at_1(setup.version_dir, setup.recall, on_device=False)
    device_recall = recall_at_1(setup.version_dir, setup.recall, on_device=True)
    product_recall = recall_of(product_predictor(setup.device_dir), setup.recall)
    predictor = product_predictor(setup.device_dir)
    lstm |= {"recall_at_1": round(device_recall["recall_at_1"], 5),
             "recall_at_3": round(device_recall["recall_at_3"], 5)}
    return product | {
        "path": "keyboard.predictor.load_predictor -> keyboard.mix.ProductPredictor",
        # what each row timed
        "timed": {name: {"class": cls, "parts": list(parts)} for name, cls, parts in sorted(timed)},
        "lstm": lstm,
        "mix_over_lstm_p50": round(product["p50_ms"] / lstm["p50_ms"], 3),
        "mix_over_lstm_p99": round(product["p99_ms"] / lstm["p99_ms"], 3),
        "mix_over_lstm_cpu_p99": round(product["cpu_p99_ms"] / lstm["cpu_p99_ms"], 3),
        "mix_weights": {k: round(v, 4) for k, v in predictor.weights.as_dict().items()},
        "log_sentences": len(_log(setup.device_dir)),
        "ngram_counts": {str(o): n for o, n in _ngram_sizes(setup.version_dir).items()},
        "ngrams_bytes": (setup.version_dir / artifacts.NGRAMS).stat().st_size,
        "model_bytes": ondevice.stat().st_size, "model_file": ondevice.name,
        "float_model_bytes": (setup.version_dir / artifacts.WEIGHTS).stat().st_size,
        "recall_at_1_float": round(float_recall["recall_at_1"], 5),
        "recall_at_1_ondevice": round(device_recall["recall_at_1"], 5),
        "recall_at_1_product": round(product_recall["recall_at_1"], 5),
        "recall_at_3_float": round(float_recall["recall_at_3"], 5),
        "recall_at_3_ondevice": round(device_recall["recall_at_3"], 5),
        "recall_at_3_product": round(product_recall["recall_at_3"], 5),
        "recall_predictions": float_recall["predictions"],
        "keystrokes": len(setup.replay), "repeats": repeats, "weights": setup.weights,
        "version": setup.version_dir.name, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        # Other processes on the machine inflate wall-clock times: the 1-minute load average around the run.
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
    }


def _log(device_dir: Path) -> list[str]:
    from keyboard.store import Device

    with Device(device_dir) as device:
        return device.sentences()


def _ngram_sizes(version_dir: Path) -> dict[int, int]:
    from common import artifacts

    return {order: len(table) for order, table in artifacts.read_ngrams(version_dir / artifacts.NGRAMS).items()}


def report(preset: str, f: dict) -> None:
    for name, r in (("product", f), ("lstm alone", f["lstm"])):
        print(f"{preset} {name}: {f['keystrokes']:,} keystrokes × {f['repeats']} — "
              f"per keystroke p50 {r['p50_ms']:.3f} ms, "
              f"p99 {r['p99_ms']:.3f} ms (per replay {', '.join(f'{x:.3f}' for x in r['p99_ms_per_repeat'])}), "
              f"max {r['max_ms']:.1f} ms; thread CPU p50 {r['cpu_p50_ms']:.3f} ms, p99 {r['cpu_p99_ms']:.3f} ms")
        print(f"  cold start {r['cold_start_s']:.3f} s (runs {', '.join(f'{x:.3f}' for x in r['cold_start_runs_s'])}); "
              f"inside the child: imports {r['cold_start_import_s']:.3f} s, load {r['cold_start_load_s']:.3f} s")
    print(f"  mix / lstm: p50 ×{f['mix_over_lstm_p50']:.2f}, p99 ×{f['mix_over_lstm_p99']:.2f}, "
          f"CPU p99 ×{f['mix_over_lstm_cpu_p99']:.2f} (load average {f['load_avg'][0]:.1f} → {f['load_avg'][1]:.1f} "
          f"on {f['cpus']} CPUs); weights {f['mix_weights']}; log {f['log_sentences']:,} sentences")
    print(f"  on-device model {f['model_file']} {f['model_bytes']:,} bytes "
          f"(float weights.npz {f['float_model_bytes']:,}); "
          f"n-grams {f['ngrams_bytes']:,} bytes {f['ngram_counts']}")
    print(f"  recall@1 on {f['recall_predictions']:,} held-out words: float {100 * f['recall_at_1_float']:.2f} %, "
          f"on-device {100 * f['recall_at_1_ondevice']:.2f} %, product {100 * f['recall_at_1_product']:.2f} % "
          f"(recall@3 {100 * f['recall_at_3_float']:.2f} / {100 * f['recall_at_3_ondevice']:.2f} / "
          f"{100 * f['recall_at_3_product']:.2f} %); weights: {f['weights']}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["small", "gboard"], choices=["tiny", "small", "gboard"])
    parser.add_argument("--quick", action="store_true", help="fewer keystrokes, sentences, runs and training tokens")
    parser.add_argument("--keystrokes", type=int, help="keystrokes replayed (default 1500; quick 300)")
    parser.add_argument("--repeats", type=int, help="replays of each predictor, each fresh (default 2; quick 1)")
    parser.add_argument("--cold-runs", type=int, help="cold starts of each (default 3; quick 1)")
    parser.add_argument("--recall-sentences", type=int, help="held-out sentences for recall (default 300; quick 50)")
    parser.add_argument("--train-tokens", type=int,
                        help="central training tokens (default 200,000; quick 30,000; 0 = initial weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"homes and models (default {DEFAULT_WORK})")
    args = parser.parse_args(argv)
    q = args.quick
    pick = lambda value, full, quick: value if value is not None else (quick if q else full)  # noqa: E731
    figures = {}
    for preset in args.presets:
        print(f"{preset}: preparing …", flush=True)
        setup = prepare(args.work, preset, train_tokens=pick(args.train_tokens, 200_000, 30_000), seed=args.seed,
                        keys=pick(args.keystrokes, 1500, 300), recall_sentences=pick(args.recall_sentences, 300, 50))
        figures[preset] = measure(setup, repeats=pick(args.repeats, 2, 1), cold_runs=pick(args.cold_runs, 3, 1))
        report(preset, figures[preset])
    emit({"presets": figures})


if __name__ == "__main__":
    main()
