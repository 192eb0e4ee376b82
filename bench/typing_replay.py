"""Live metrics from replayed typing: held-out sentences of a home's devices typed through the keyboard's path.

For each of ``--devices`` devices of the home (in seeding order, those with at least one held-out
sentence), a scratch copy is made outside the home: its log is the device's *train* split only, and
the model version the device has installed is installed on it (without ``--home``: the version
this bench trains, as ``bench/suggest_latency.py`` does; a personal fine-tune is not copied). The
device's first ``--sentences`` held-out sentences, which no part of any predictor has seen (the
published n-grams and the federated model learned from train splits only), are then typed by the
simulated typist of ``keyboard/replay.py`` (chips from ``keyboard.impressions.chips``, counted by its
``SentenceTracker``, accepting the leftmost chip that shows the word being typed) with each predictor:

    product          ``keyboard.predictor.load_predictor``, what the keyboard runs: the LSTM, the n-grams
                     published with the version and the personal model, mixed (``keyboard/mix.py``)
    lstm+personal    the same mix without the n-grams (a row of ``bench/ablation.py``'s ablation)
    lstm             the version's LSTM alone (``ModelPredictor``)
    frequency        the fallback before any model: the person's own word counts

The product and the frequency fallback learn each finished sentence, as in the keyboard.

(a) To show the app counts what the replay counts, the real ``KeyboardApp`` is driven with Textual's
Pilot on the first ``--app-devices`` devices, ``--app-sentences`` sentences each, with the product
loaded by ``load_predictor``: the same typist presses Tab/F2/F3 or types each character, and the
counts the app stored on its device are printed beside ``replay()``'s on the same sentences.
(b) ``replay()`` gives every predictor's figures. Rates are ``common.live_counts.summary``.

    uv run python bench/typing_replay.py [--home HOME] [--devices 8] [--sentences 25]

Without ``--home`` the home is ``bench/fedbench.shakespeare_home`` and the model is
``bench/suggest_latency.py``'s small preset, trained centrally in a child process once and cached
under ``--work``. The last line is one JSON object of every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from pathlib import Path

from fedbench import DEFAULT_WORK, Home, emit  # first: puts the repo on sys.path

from fedkb.cmd_keyboard import single_thread_blas

single_thread_blas()  # as `fedkb keyboard` does, before numpy is imported

from common import live_counts  # noqa: E402
from keyboard.impressions import base_version  # noqa: E402
from keyboard.replay import ACCEPT, ENTER, Typist, replay  # noqa: E402

PREDICTORS = ("product", "lstm+personal", "lstm", "frequency")
ACCEPT_KEYS = ("tab", "f2", "f3")


# -- set-up --------------------------------------------------------------------------------------
def chosen_devices(home: Home, count: int) -> list[tuple[str, list[str], list[str]]]:
    """(device id, train split, held-out split) of the first ``count`` devices with held-out sentences."""
    from federated.population import members
    from keyboard.store import Device

    out = []
    for member in members(home):
        with Device(home.device(member.device_id)) as device:
            splits = device.splits()
        if splits.heldout:
            out.append((member.device_id, splits.train, splits.heldout))
        if len(out) == count:
            return out
    raise SystemExit(f"{home.devices}: only {len(out)} devices have held-out sentences; {count} were asked for")


def version_of(home: Home, device_id: str, fallback: Path | None) -> tuple[Path, bytes | None]:
    """The version directory installed on the device and the key it trusts, or ``fallback`` (trusted on
    first use, as for a device outside a population); a clear error when neither exists."""
    from common.signing import pinned
    from keyboard.install import installed

    current = installed(home.device(device_id))
    if current is not None:
        return current.path, pinned(home.device(device_id))
    if fallback is None:
        raise SystemExit(f"device {device_id} of {home.root} has no model installed: run `fedkb demo` "
                         "(or `fedkb rollout`) on that home first, or leave out --home")
    return fallback, None


def scratch_device(directory: Path, train: list[str], version_dir: Path, pinned: bytes | None) -> Path:
    """A fresh device at ``directory`` whose log is ``train``, trusting ``pinned``, with ``version_dir`` installed."""
    from common.signing import PINNED
    from keyboard.install import install
    from keyboard.store import Device

    shutil.rmtree(directory, ignore_errors=True)
    with Device(directory, create=True) as device:
        device.append_many((None, s) for s in train)
    if pinned is not None:  # the home device's coordinator key: its installed copy is checked against it
        (directory / PINNED).write_bytes(pinned)
    install(directory, version_dir)
    return directory


def predictor(name: str, device_dir: Path):
    """One of ``PREDICTORS`` for the scratch device, built from what is installed on it."""
    from keyboard.install import installed
    from keyboard.mix import build_product, load_ngrams
    from keyboard.predictor import FIT_SENTENCES_AT_START, FrequencyPredictor, ModelPredictor, load_predictor
    from keyboard.store import Device

    if name == "product":
        return load_predictor(device_dir)
    with Device(device_dir) as device:
        splits = device.splits()
    if name == "frequency":
        return FrequencyPredictor(splits.train + splits.heldout)
    current = installed(device_dir)
    lstm = ModelPredictor(current.path, version=current.version)
    if name == "lstm":
        return lstm
    product = build_product(splits.train, lstm=lstm, ngrams=load_ngrams(current.path), version=current.version,
                            parts=("lstm", "personal"))
    product.observe_many(splits.heldout, fit_from=len(splits.heldout) - FIT_SENTENCES_AT_START)  # as load_predictor
    return product


# -- (a) the real app, driven by Pilot -----------------------------------------------------------
async def _settle(pilot) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def type_in_app(device_dir: Path, product, sentences: list[str]) -> dict[str, dict[str, int]]:
    """Types ``sentences`` into a real ``KeyboardApp`` on ``device_dir``; the live counts it stored."""
    from keyboard.app import KeyboardApp
    from keyboard.store import Device

    with Device(device_dir) as device:
        app = KeyboardApp(device, product, charging=lambda: None, train_command=None)
        async with app.run_test() as pilot:
            await _settle(pilot)
            for sentence in sentences:
                typist = Typist(sentence)
                while True:
                    key, value = typist.next_key(app.suggestions)
                    if key == ENTER:
                        if app.typing.value.strip():
                            await pilot.press("enter")
                            await _settle(pilot)
                        break
                    await pilot.press(ACCEPT_KEYS[value] if key == ACCEPT else value)
                    await _settle(pilot)
        return device.live_counts()


def app_check(work: Path, devices: list, versions: dict[str, tuple[Path, bytes | None]], sentences: int) -> dict:
    """The app's stored counts against ``replay()``'s, device by device, on the same sentences."""
    rows = []
    for device_id, train, heldout in devices:
        directory = scratch_device(work / "app" / device_id, train, *versions[device_id])
        for_app, for_replay = predictor("product", directory), predictor("product", directory)
        typed = heldout[:sentences]
        started = time.perf_counter()
        stored = asyncio.run(type_in_app(directory, for_app, typed))
        seconds = time.perf_counter() - started
        replayed = replay(for_replay, typed)
        app = stored.get(base_version(for_app.version), live_counts.zero())
        rows.append({"device": device_id, "sentences": len(typed), "version": base_version(for_app.version),
                     "app": app, "replay": replayed, "equal": app == replayed and list(stored) == [
                         base_version(for_app.version)], "app_seconds": round(seconds, 2)})
        print(f"  {device_id}: {len(typed)} sentences in the app ({seconds:.1f} s)\n"
              f"    app    {app}\n    replay {replayed}\n    {'equal' if rows[-1]['equal'] else 'DIFFERENT'}",
              flush=True)
    return {"devices": rows, "all_equal": all(r["equal"] for r in rows)}


# -- (b) replay ------------------------------------------------------------------------------------
def replay_all(work: Path, devices: list, versions: dict[str, tuple[Path, bytes | None]], sentences: int) -> dict:
    """Summed counts and rates per predictor and per version installed, over every chosen device."""
    per: dict[str, dict[str, dict[str, int]]] = {name: {} for name in PREDICTORS}
    seconds = dict.fromkeys(PREDICTORS, 0.0)
    for device_id, train, heldout in devices:
        directory = scratch_device(work / "replay" / device_id, train, *versions[device_id])
        for name in PREDICTORS:
            p = predictor(name, directory)
            version = base_version(p.version)
            started = time.perf_counter()
            counts = replay(p, heldout[:sentences])
            seconds[name] += time.perf_counter() - started
            per[name][version] = live_counts.add(per[name].get(version, live_counts.zero()), counts)
    figures = {}
    for name, by_version in per.items():
        total = live_counts.zero()
        for counts in by_version.values():
            total = live_counts.add(total, counts)
        figures[name] = {**_rounded(live_counts.summary(total)), "counts": total, "seconds": round(seconds[name], 2),
                         "by_version": {v: _rounded(live_counts.summary(c)) for v, c in sorted(by_version.items())}}
    return figures


def _rounded(summary: dict) -> dict:
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in summary.items()}


def report(figures: dict) -> None:
    print(f"{'predictor':<15}{'words':>7}{'shown@1':>9}{'shown@3':>9}{'start@1':>9}{'start@3':>9}"
          f"{'accepted':>10}{'saved':>8}{'modified':>10}")
    pct = lambda v: f"{100 * v:.1f}%" if isinstance(v, float) else "—"  # noqa: E731
    for name, f in figures.items():
        print(f"{name:<15}{f['words']:>7,}{pct(f['impression_recall_at_1']):>9}{pct(f['impression_recall_at_3']):>9}"
              f"{pct(f['start_recall_at_1']):>9}{pct(f['start_recall_at_3']):>9}{pct(f['acceptance_rate']):>10}"
              f"{pct(f['keystroke_savings']):>8}{pct(f['modified_after_acceptance']):>10}")


def bench_model(work: Path, train_tokens: int, seed: int) -> tuple[Home, Path]:
    """The home and model ``bench/suggest_latency.py`` uses for its small preset (trained once, then cached)."""
    from fedbench import shakespeare_home
    from latency_setup import publish_model

    from lm.config import PRESETS

    home = shakespeare_home(work, vocab_size=PRESETS["small"].vocab_size)
    own = work / "suggest-latency" / f"small-{home.root.name}-t{train_tokens}-s{seed}-mix"
    return home, publish_model(home, "small", own / "models", train_tokens=train_tokens, seed=seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="a fedkb home with a model installed on its devices "
                        "(e.g. after `fedkb demo`); default: the bench's own home and model")
    parser.add_argument("--devices", type=int, default=8, help="devices whose held-out sentences are replayed")
    parser.add_argument("--sentences", type=int, default=25, help="held-out sentences per device (at most)")
    parser.add_argument("--app-devices", type=int, default=2, help="devices typed through the real app (0: none)")
    parser.add_argument("--app-sentences", type=int, default=4, help="sentences per device typed through the app")
    parser.add_argument("--train-tokens", type=int, default=200_000, help="without --home: central training tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"scratch devices, and the bench's own "
                        f"home and model (default {DEFAULT_WORK})")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.sentences < 1 or args.app_devices < 0 or args.app_sentences < 1:
        parser.error("--devices, --sentences and --app-sentences must be at least 1, --app-devices at least 0")
    if args.home is not None:
        home, fallback = Home(args.home), None
    else:
        home, fallback = bench_model(args.work, args.train_tokens, args.seed)
    work = args.work / "typing-replay" / home.root.name
    devices = chosen_devices(home, max(args.devices, args.app_devices))
    versions = {d: version_of(home, d, fallback) for d, _, _ in devices}
    print(f"home {home.root}: {len(devices)} devices, versions {sorted({v.name for v, _ in versions.values()})}",
          flush=True)
    check = app_check(work, devices[:args.app_devices], versions, args.app_sentences) if args.app_devices else None
    figures = replay_all(work, devices[:args.devices], versions, args.sentences)
    report(figures)
    emit({"home": str(home.root), "devices": args.devices, "sentences_per_device": args.sentences,
          "sentences": sum(min(len(h), args.sentences) for _, _, h in devices[:args.devices]),
          "versions": sorted({v.name for v, _ in versions.values()}), "predictors": figures, "app_check": check})


if __name__ == "__main__":
    main()
