"""Per-keystroke suggestion latency, cold start, on-device model size and recall, per model preset.

The path measured is the keyboard's own: ``keyboard.predictor.ModelPredictor`` (which the Textual
app gets from ``load_predictor``) asked for the top 3 whole words after every keystroke, one
thread, replaying held-out sentences of the bundled Shakespeare corpus character by character.

For each preset the population is seeded with ``fedkb population seed``'s code path and the
tokenizer is trained from the devices' summed word counts (``bench/fedbench.shakespeare_home``,
shared with the other benchmarks and only read here). The model is the preset trained
*centrally* with Keras (``eval/centralized.py``) on the pooled train splits for ``--train-tokens``
target tokens — faster than federated rounds and good enough to compare the float model with its
int8 on-device copy; ``--train-tokens 0`` uses the seeded initial weights instead. Training runs in
a child process, so this process never imports TensorFlow, like the keyboard. The model is
published with ``federated.registry.publish`` (float ``weights.npz`` plus the int8
``ondevice.npz``) outside the home and installed on a scratch device. Trained models are kept
under ``--work`` and reused.

Figures, per preset: keystroke latency p50 / p99 (wall clock, and the thread's CPU time, which
other processes on a shared machine disturb less; the load average is recorded with them),
pooled over ``--repeats`` replays with a fresh predictor each, OpenBLAS on one thread as in
``fedkb keyboard`` (``OPENBLAS_NUM_THREADS=2`` in the environment to compare); cold start =
spawning ``python -c`` that imports the predictor, loads the installed model and prints a
suggestion, until that line arrives (median of ``--cold-runs``); the on-device model file's
bytes; recall@1 of the float and of the on-device weights on held-out sentences
(``eval/recall.py``, the same beam).

    uv run python bench/suggest_latency.py [--quick] [--presets small gboard] [--repeats 3]

The last line is one JSON object: ``{"presets": {"small": {...}, "gboard": {...}}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fedbench import DEFAULT_WORK, Home, emit, median, shakespeare_home  # first: puts the repo on sys.path

from fedkb.cmd_keyboard import single_thread_blas  # noqa: E402

single_thread_blas()  # as `fedkb keyboard` does, before numpy is imported

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
COLD_START = """\
import json, sys, time
t0 = time.perf_counter()
from keyboard.predictor import load_predictor
predictor = load_predictor(sys.argv[1])
words = predictor.suggest(sys.argv[2], 3)
print(json.dumps({"name": predictor.name, "words": words, "inside_s": time.perf_counter() - t0}), flush=True)
"""


@dataclass(frozen=True)
class Setup:
    """A published model version installed on a scratch device, and the text to replay."""

    preset: str
    version_dir: Path
    device_dir: Path
    replay: list[str]  # held-out sentences typed key by key
    recall: list[str]  # held-out sentences for recall@1
    weights: str  # where the weights came from


# -- set-up ------------------------------------------------------------------------------------------
def heldout_sentences(home: Home, limit: int) -> list[str]:
    """Up to ``limit`` held-out sentences (each device's newest 20 %), devices in index order."""
    from federated.population import members
    from keyboard.store import Device

    out: list[str] = []
    for member in members(home):
        with Device(home.device(member.device_id)) as device:
            out += device.splits().heldout
        if len(out) >= limit:
            break
    return out[:limit]


def keystrokes(sentences: list[str], at_least: int) -> list[str]:
    """The text after each keystroke of whole sentences, until at least ``at_least`` keystrokes."""
    texts: list[str] = []
    for sentence in sentences:
        texts += [sentence[: i + 1] for i in range(len(sentence))]
        if len(texts) >= at_least:
            return texts
    raise SystemExit(f"only {len(texts)} keystrokes in the held-out sentences; {at_least} were asked for")


def publish_model(home: Home, preset: str, models_dir: Path, *, train_tokens: int, seed: int) -> Path:
    """The newest version in ``models_dir``, or a new one trained in a child process (TensorFlow stays there)."""
    from federated import registry

    version = registry.newest(models_dir)
    if version is None:
        cmd = [sys.executable, __file__, "--train-worker", json.dumps(
            {"home": str(home.root), "preset": preset, "models": str(models_dir), "tokens": train_tokens, "seed": seed})]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"training {preset} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        print(f"  trained {preset} on {train_tokens:,} tokens in {time.perf_counter() - started:.0f} s", flush=True)
        version = registry.newest(models_dir)
    return version.path


def train_worker(spec: dict) -> None:
    """Child process: the preset trained centrally with Keras (or its initial weights), then published."""
    from eval.centralized import train_centralized
    from federated import registry
    from federated.examples import encode_examples
    from federated.model import build_model, named_weights
    from federated.model_config import preset
    from federated.population import members
    from keyboard.store import Device
    from tokenizer.vocab import Tokenizer

    home = Home(Path(spec["home"]))
    tokenizer = Tokenizer.load(home.tokenizer)
    config = preset(spec["preset"], vocab_size=tokenizer.vocab_size)
    if spec["tokens"] > 0:
        pooled = []
        for member in members(home):
            with Device(home.device(member.device_id)) as device:
                pooled += device.splits().train
        examples = encode_examples(tokenizer.encode, pooled, config.sequence_length)
        weights = train_centralized(config, examples, spec["tokens"], seed=spec["seed"])
    else:
        weights = named_weights(build_model(config, seed=spec["seed"]))
    registry.publish(Path(spec["models"]), weights=weights, config=config, tokenizer_proto=tokenizer.model_proto,
                     round_num=0, metrics={"train_tokens": spec["tokens"]},
                     extra={"kind": "centralized_lstm", "by": "bench/suggest_latency.py"})


def install_on_scratch_device(version_dir: Path, device_dir: Path) -> Path:
    """A device of its own (not one of the population) with ``version_dir`` installed."""
    from keyboard.install import install
    from keyboard.store import Device

    Device(device_dir, create=not device_dir.is_dir()).close()
    install(device_dir, version_dir)
    return device_dir


def prepare(work: Path, preset: str, *, train_tokens: int, seed: int, keys: int, recall_sentences: int) -> Setup:
    from federated.model_config import PRESETS

    home = shakespeare_home(work, vocab_size=PRESETS[preset].vocab_size)
    own = work / "suggest-latency" / f"{preset}-{home.root.name}-t{train_tokens}-s{seed}"
    version_dir = publish_model(home, preset, own / "models", train_tokens=train_tokens, seed=seed)
    sentences = heldout_sentences(home, 10**9)
    replay = keystrokes(sentences, keys)
    weights = (f"centrally trained (Keras, {train_tokens:,} tokens, seed {seed})" if train_tokens
               else f"seeded initial weights (seed {seed})")
    return Setup(preset, version_dir, install_on_scratch_device(version_dir, own / "device"), replay,
                 sentences[:recall_sentences], weights)


# -- measurements ------------------------------------------------------------------------------------
def replay_latency(device_dir: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and thread-CPU milliseconds of ``suggest(text, 3)`` per keystroke, with a fresh predictor."""
    from keyboard.mix import ProductPredictor
    from keyboard.predictor import load_predictor

    predictor = load_predictor(device_dir)
    if not isinstance(predictor, ProductPredictor):
        raise SystemExit(f"{device_dir}: the installed model did not load ({getattr(predictor, 'reason', '?')})")
    wall, cpu = np.empty(len(texts)), np.empty(len(texts))
    for i, text in enumerate(texts):
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        predictor.suggest(text, 3)
        cpu[i], wall[i] = time.thread_time_ns() - c0, time.perf_counter_ns() - w0
    return wall / 1e6, cpu / 1e6


def cold_start(device_dir: Path, text: str) -> dict:
    """Seconds from spawning ``python -c`` (import, load the installed model, suggest) to its answer."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", COLD_START, str(device_dir), text], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    seconds = time.perf_counter() - started
    _, err = proc.communicate()
    if proc.returncode != 0 or not line:
        raise SystemExit(f"cold start failed ({proc.returncode}):\n{err[-2000:]}")
    answer = json.loads(line)
    if answer["name"] != "product":
        raise SystemExit(f"cold start loaded {answer['name']!r}, not the installed model")
    return {"seconds": seconds, "inside_s": answer["inside_s"], "words": answer["words"]}


def recall_at_1(version_dir: Path, sentences: list[str], *, on_device: bool) -> dict:
    """recall@1/@3 with the keyboard's beam, from the int8 on-device weights or the float ones."""
    from eval.recall import recall_counts
    from keyboard.lm import NumpyLM
    from keyboard.suggest import WordSuggester
    from tokenizer.vocab import Tokenizer

    lm = NumpyLM.load(version_dir, on_device=on_device)
    counts = recall_counts(WordSuggester(lm, Tokenizer.load(version_dir / "spm.model")), sentences, ks=(1, 3))
    return {"recall_at_1": counts.recall(1), "recall_at_3": counts.recall(3), "predictions": counts.predictions}


def measure(setup: Setup, *, repeats: int, cold_runs: int) -> dict:
    """Every figure of one preset (the dict that goes into the JSON line)."""
    from fedkb import artifacts

    load_before = os.getloadavg()[0]
    runs = [replay_latency(setup.device_dir, setup.replay) for _ in range(repeats)]
    wall, cpu = np.concatenate([w for w, _ in runs]), np.concatenate([c for _, c in runs])
    first_words = " ".join(setup.replay[-1].split()[:2]) + " "
    colds = [cold_start(setup.device_dir, first_words) for _ in range(cold_runs)]
    manifest = artifacts.read_manifest(setup.version_dir)
    ondevice = setup.version_dir / (artifacts.ONDEVICE if artifacts.ONDEVICE in manifest["files"] else artifacts.WEIGHTS)
    float_recall = recall_at_1(setup.version_dir, setup.recall, on_device=False)
    device_recall = recall_at_1(setup.version_dir, setup.recall, on_device=True)
    pct = lambda a, q: round(float(np.percentile(a, q)), 4)  # noqa: E731
    return {
        "p50_ms": pct(wall, 50), "p99_ms": pct(wall, 99), "max_ms": round(float(wall.max()), 4),
        "cpu_p50_ms": pct(cpu, 50), "cpu_p99_ms": pct(cpu, 99),
        "p99_ms_per_repeat": [pct(w, 99) for w, _ in runs],
        "cold_start_s": round(median([c["seconds"] for c in colds]), 4),
        "cold_start_runs_s": [round(c["seconds"], 4) for c in colds],
        "cold_start_inside_s": round(median([c["inside_s"] for c in colds]), 4),
        "model_bytes": ondevice.stat().st_size, "model_file": ondevice.name,
        "float_model_bytes": (setup.version_dir / artifacts.WEIGHTS).stat().st_size,
        "recall_at_1_float": round(float_recall["recall_at_1"], 5),
        "recall_at_1_ondevice": round(device_recall["recall_at_1"], 5),
        "recall_at_3_float": round(float_recall["recall_at_3"], 5),
        "recall_at_3_ondevice": round(device_recall["recall_at_3"], 5),
        "recall_predictions": float_recall["predictions"],
        "keystrokes": len(setup.replay), "repeats": repeats, "weights": setup.weights,
        "version": setup.version_dir.name, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        # Other processes on the machine inflate wall-clock times: the 1-minute load average around the run.
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
    }


def report(preset: str, f: dict) -> None:
    print(f"{preset}: {f['keystrokes']:,} keystrokes × {f['repeats']} — per keystroke p50 {f['p50_ms']:.3f} ms, "
          f"p99 {f['p99_ms']:.3f} ms (per replay {', '.join(f'{x:.3f}' for x in f['p99_ms_per_repeat'])}), "
          f"max {f['max_ms']:.1f} ms; thread CPU p50 {f['cpu_p50_ms']:.3f} ms, p99 {f['cpu_p99_ms']:.3f} ms "
          f"(load average {f['load_avg'][0]:.1f} → {f['load_avg'][1]:.1f} on {f['cpus']} CPUs)")
    print(f"  cold start {f['cold_start_s']:.3f} s (runs {', '.join(f'{x:.3f}' for x in f['cold_start_runs_s'])}; "
          f"{f['cold_start_inside_s']:.3f} s inside the child after its interpreter started)")
    print(f"  on-device model {f['model_file']} {f['model_bytes']:,} bytes (float weights.npz {f['float_model_bytes']:,})")
    print(f"  recall@1 on {f['recall_predictions']:,} held-out words: float {100 * f['recall_at_1_float']:.2f} %, "
          f"on-device {100 * f['recall_at_1_ondevice']:.2f} % (recall@3 {100 * f['recall_at_3_float']:.2f} / "
          f"{100 * f['recall_at_3_ondevice']:.2f} %); weights: {f['weights']}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["small", "gboard"], choices=["tiny", "small", "gboard"])
    parser.add_argument("--quick", action="store_true", help="fewer keystrokes, sentences, runs and training tokens")
    parser.add_argument("--keystrokes", type=int, help="keystrokes replayed (default 3000; quick 500)")
    parser.add_argument("--repeats", type=int, help="replays, each with a fresh predictor (default 3; quick 1)")
    parser.add_argument("--cold-runs", type=int, help="cold starts (default 5; quick 2)")
    parser.add_argument("--recall-sentences", type=int, help="held-out sentences for recall (default 3000; quick 300)")
    parser.add_argument("--train-tokens", type=int, help="central training tokens (default 300,000; quick 30,000; 0 = initial weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"homes and models (default {DEFAULT_WORK})")
    parser.add_argument("--train-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_worker:
        return train_worker(json.loads(args.train_worker))
    q = args.quick
    pick = lambda value, full, quick: value if value is not None else (quick if q else full)  # noqa: E731
    figures = {}
    for preset in args.presets:
        print(f"{preset}: preparing …", flush=True)
        setup = prepare(args.work, preset, train_tokens=pick(args.train_tokens, 300_000, 30_000), seed=args.seed,
                        keys=pick(args.keystrokes, 3000, 500), recall_sentences=pick(args.recall_sentences, 3000, 300))
        figures[preset] = measure(setup, repeats=pick(args.repeats, 3, 1), cold_runs=pick(args.cold_runs, 5, 2))
        report(preset, figures[preset])
    emit({"presets": figures})


if __name__ == "__main__":
    main()
