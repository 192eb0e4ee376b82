"""On-device evaluation runs, promotion of candidate versions, and rollout to devices.

``run_eval`` evaluates a version (or what each device has installed) on the devices' held-out
splits and writes ``server/evals/<version>.json``; with ``references`` it also fits the unigram,
Kneser–Ney and centralized-LSTM references on the devices' *pooled* train text and scores them on
the same words, all kept in ``<home>/references/`` (never under ``server/``). ``rollout``
decides on the newest candidate — promoted unless its federated recall@1 falls more than a
threshold below the current ``latest`` — and devices install ``latest`` (checksums verified).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common import artifacts, live_counts
from common.atomic import atomic_write
from common.errors import FedkbError
from common.layout import Home
from eval.ngram import KneserNeyTrigram, UnigramPredictor
from federated import evaluation, live_release, promotion, registry
from federated.configs import RolloutConfig
from federated.ledger import MIN_RELEASE_DEVICES
from federated.population import members
from keyboard import install as device_install
from keyboard.controls import takes_part
from keyboard.store import Device
from lm.examples import encode_examples

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class RolloutError(FedkbError):
    """Nothing to evaluate or roll out; the message says what to run first."""


def eval_devices(home: Home, count: int | None, seed: int) -> list[str]:
    """Devices with at least one held-out sentence that take part in federated evaluation: all, or a seeded sample."""
    ids = []
    for m in members(home):
        with Device(home.device(m.device_id)) as device:
            status = device.status()
        if status["heldout_sentences"] > 0 and takes_part(status):
            ids.append(m.device_id)
    if count is not None and count < len(ids):
        rng = np.random.default_rng([seed, 0xE7A1])
        ids = [ids[i] for i in sorted(rng.choice(len(ids), count, replace=False))]
    return ids


def pooled_train_sentences(home: Home) -> tuple[list[str], int]:
    """Every device's train split in one list, and how many devices gave some: only for the references."""
    sentences: list[str] = []
    devices = 0
    for m in members(home):
        with Device(home.device(m.device_id)) as device:
            if not takes_part(device.status()):  # an opted-out device's text is not pooled either
                continue
            train = device.splits().train
        sentences += train
        devices += bool(train)
    return sentences, devices


REFERENCES = ("unigram", "ngram", "centralized_lstm")  # what ``--references`` fits on pooled text
POOLED_RECORD = "pooled.json"  # in <home>/references/: what was pooled, when (eval/disclosure.py reads it)


def record_pooling(home: Home, devices: int, sentences: int) -> None:
    """Writes ``<home>/references/pooled.json`` *before* anything is fitted, so the disclosure names it."""
    home.references.mkdir(parents=True, exist_ok=True)
    record = {"devices": devices, "sentences": sentences,
              "pooled_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "references": list(REFERENCES), "by": "fedkb eval --references"}
    atomic_write(home.references / POOLED_RECORD, json.dumps(record, indent=2).encode())


def training_tokens_until(home: Home, round_num: int) -> int:
    """Target tokens federated training consumed in rounds 1..round_num (from metrics.csv)."""
    from federated import ledger

    # Token sums of small or DP rounds are not published; the server's private ledger has them.
    rounds = {r["round"]: r.get("tokens") for r in ledger.entries(home.server, "round")}  # a re-run keeps its last
    if rounds:
        return int(sum(t or 0 for n, t in rounds.items() if n <= round_num))
    if not home.metrics_csv.is_file():
        return 0
    with open(home.metrics_csv, newline="") as f:
        return int(sum(float(r.get("num_tokens") or 0) for r in csv.DictReader(f)
                       if int(float(r["round"])) <= round_num))


def centralized_lstm(home: Home, version: registry.Version, pooled: list[str], seed: int) -> tuple[Path, int]:
    """The centralized LSTM with the federated token budget of ``version``; trained once, then cached."""
    from tokenizer.vocab import Tokenizer

    config = version.model_config()
    budget = training_tokens_until(home, version.round)
    if budget <= 0:
        raise RolloutError(f"{home.metrics_csv} has no training tokens up to round {version.round}")
    tokenizer = Tokenizer.load(version.path / artifacts.TOKENIZER)
    key = f"{config.to_json()}|{tokenizer.sha256}|{budget}|{seed}"
    import hashlib

    cache = home.references / "centralized_lstm" / hashlib.sha256(key.encode()).hexdigest()[:16]
    cached = registry.newest(cache)
    if cached is not None:
        return cached.path, budget
    from eval.centralized import train_centralized

    examples = encode_examples(tokenizer.encode, pooled, config.sequence_length)
    weights = train_centralized(config, examples, budget, seed=seed)
    out = registry.publish(cache, weights=weights, config=config, tokenizer_proto=tokenizer.model_proto,
                           round_num=version.round, metrics={"train_tokens": budget},
                           extra={"kind": "centralized_lstm"})
    return out.path, budget


@dataclass
class EvalOutcome:
    version: str
    result: dict  # what left the devices (sums), as written to server/evals/
    path: Path
    references: dict | None = None  # the pooled references' rows, as written to references/evals/
    references_path: Path | None = None
    live: dict = field(default_factory=dict)  # live counts of every group, released (on the last outcome)


def run_eval(
    home: Home, *, version: str | None = None, devices: int | None = None, seed: int = 0,
    references: bool = False, progress: Progress | None = None, record: bool = True,
) -> list[EvalOutcome]:
    """Federated evaluation of ``version`` (or each device's installed version).

    With ``record`` the result is written to ``server/evals/<version>.json`` for the report. With
    ``references`` every device's train text is pooled into this process (recorded first in
    ``<home>/references/pooled.json``) to fit the references, which are scored on the same
    held-out words; they and their rows go to ``<home>/references/``, never to ``server/``.
    """
    progress = progress or (lambda *a: None)
    ids = eval_devices(home, devices, seed)
    if not ids:
        raise RolloutError(f"no device in {home.devices} has held-out sentences; seed a population first")
    groups: dict[str, list[str]] = {}
    if version is not None:
        registry.verify(home.models / version)  # refuse a tampered version, naming the file
        groups[version] = ids
    else:
        for device_id in ids:
            inst = device_install.installed(home.device(device_id))
            if inst is not None:
                groups.setdefault(inst.version, []).append(device_id)
        if not groups:
            raise RolloutError("no device has a model installed; run `fedkb rollout` first (or pass --version)")
        # A version installed on too few devices is not evaluated: its sums would show them one by one.
        large = {name: group for name, group in groups.items() if len(group) >= MIN_RELEASE_DEVICES}
        groups = large or dict([max(groups.items(), key=lambda item: len(item[1]))])  # refused below, saying so
    pooled: list[str] = []
    if references:
        pooled, pooled_devices = pooled_train_sentences(home)
        record_pooling(home, pooled_devices, len(pooled))
    outcomes = []
    live: live_release.Totals = {}  # summed over every group: a device's counts need not be of what it has installed

    def add_live(totals: live_release.Totals) -> None:
        for key, (devices, counts) in totals.items():
            before, summed = live.get(key, (0, live_counts.zero()))
            live[key] = (before + devices, live_counts.add(summed, counts))

    for name, group in sorted(groups.items()):
        evaluation.check_min_devices(len(group), f"evaluating version {name}")
        ver = registry.verify(home.models / name)
        preds: dict[str, object] = {}
        budget = None
        if references:
            progress("fitting the references on pooled text", 0, 3)
            preds["unigram"] = UnigramPredictor.fit(pooled)
            preds["ngram"] = KneserNeyTrigram.fit(pooled)
            progress("training the centralized LSTM", 2, 3)
            central_dir, budget = centralized_lstm(home, ver, pooled, seed)
            preds["centralized_lstm"] = evaluation.load_suggester(central_dir)
            progress("references ready", 3, 3)
        done = [0]

        # evaluate() calls tick only during this iteration; the defaults bind this iteration's values explicitly.
        def tick(_device_id: str, done: list[int] = done, name: str = name, group: list[str] = group) -> None:
            done[0] += 1
            progress(f"evaluating {name} on devices", done[0], len(group))

        result = evaluation.evaluate(home, group, name, ver.path, preds, on_device=tick, on_live=add_live)
        rows = result.pop("baselines")  # the references' rows: kept apart from what left the devices
        result = _describe(home, ver, result, devices_requested=devices, seed=seed)
        path = home.evals / f"{name}.json"
        if record:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(result, indent=2).encode())
        outcome = EvalOutcome(name, result, path)
        if references:
            rows["centralized_lstm"]["train_tokens"] = budget
            outcome.references = {"model_version": name, "created": result["created"], "devices": result["devices"],
                                  "pooled": json.loads((home.references / POOLED_RECORD).read_text()),
                                  "baselines": rows}
            outcome.references_path = home.reference_evals / f"{name}.json"
            if record:
                outcome.references_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(outcome.references_path, json.dumps(outcome.references, indent=2).encode())
        outcomes.append(outcome)
    # Live counts belong to the version typed with, not the one scored: released once, into live_metrics.json.
    # Only recorded runs publish them (a rollout's comparison runs do not use them).
    released = live_release.release(live, MIN_RELEASE_DEVICES, origin="fedkb eval")
    if record and released:
        live_release.log(home.server, released, live=False)
        live_release.record(home.server, released, MIN_RELEASE_DEVICES)
    outcomes[-1].live = released
    return outcomes


def _describe(home: Home, ver: registry.Version, result: dict, *, devices_requested, seed) -> dict:
    decision = registry.read_registry(home.models)["decisions"].get(ver.name)
    return {
        "model_version": ver.name,
        "round": ver.round,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **result,
        "promotion": decision,
        "settings": {"train": ver.manifest.get("train_config", {}), "model": asdict(ver.model_config()),
                     "eval": {"devices_requested": devices_requested, "seed": seed}},
        "privacy": ver.manifest.get("privacy", {"epsilon": None, "delta": None, "accountant": None,
                                                 "noise_multiplier": 0.0, "rounds": ver.round}),
        "privacy_ledger": _ledger_total(home),
    }


def _ledger_total(home: Home) -> dict:
    """Everything that left the devices so far, this evaluation's sums included (``federated/ledger.py``)."""
    from federated import ledger
    from federated.population import members

    run = home.run_json
    dp_delta = (json.loads(run.read_text()).get("privacy") or {}).get("dp_delta") if run.is_file() else None
    return ledger.total(home.server, population=len(members(home)), dp_delta=dp_delta)


@dataclass
class RolloutReport:
    decisions: dict[str, dict] = field(default_factory=dict)
    latest: str | None = None
    installed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    guard: dict | None = None  # the live guard's verdict on latest, if asked for (``promotion.live_guard``)


def rollout(
    home: Home, *, threshold_points: float = RolloutConfig.threshold, devices: int | None = RolloutConfig.devices,
    seed: int = RolloutConfig.seed,
    progress: Progress | None = None, decide: bool = True, min_live_savings_ratio: float | None = None,
) -> RolloutReport:
    """Decides on the newest candidate (older undecided ones are superseded; not if ``decide`` is
    False), then installs ``latest`` (with its signed rollback record, if it is one).

    With ``min_live_savings_ratio`` it first checks ``latest`` against the version it replaced on
    live keystroke savings (``promotion.live_guard``) and, if they fell below that ratio, rolls
    back to it (signed, as ``--roll-back-to`` does) before deciding on any candidate.
    """
    progress = progress or (lambda *a: None)
    report = RolloutReport()
    if min_live_savings_ratio is not None:
        report.guard = _live_guard(home, min_live_savings_ratio)
    pending = registry.undecided(home.models) if decide else []
    if not pending and registry.latest(home.models) is None:
        raise RolloutError(f"no published version in {home.models}; run `fedkb train` first")
    for name in pending[:-1]:
        report.decisions[name] = registry.record_decision(home.models, name, promoted=False,
                                                          reason=f"superseded by {pending[-1]}")
    if pending:
        report.decisions[pending[-1]] = _decide(home, pending[-1], threshold_points, devices, seed, progress)
    latest = registry.latest(home.models)
    report.latest = latest.name if latest else None
    if latest is not None:
        rollback = registry.read_registry(home.models)["rollbacks"].get(latest.name)
        population = members(home)
        for i, m in enumerate(population, 1):
            try:
                device_install.install(home.device(m.device_id), latest.path, rollback=rollback)
                report.installed += 1
            except artifacts.ArtifactError as exc:
                report.failed[m.device_id] = str(exc)
            progress(f"installing {latest.name}", i, len(population))
    return report


def _live_guard(home: Home, ratio: float) -> dict | None:
    reg = registry.read_registry(home.models)
    latest = reg.get("latest")
    if latest is None:
        return None
    promoted = [n for n, d in reg["decisions"].items() if d.get("promoted") and int(n) < int(latest)]
    previous = max(promoted, key=int) if promoted else None
    decision = promotion.live_guard(live_release.load(home.server)["versions"], latest, previous, ratio)
    if not decision.promoted:
        registry.roll_back(home.models, previous, reason=decision.reason)
    return {"latest": latest, "kept": decision.promoted, "reason": decision.reason, **decision.details}


def _decide(home: Home, name: str, threshold_points: float, devices: int | None, seed: int, progress) -> dict:
    candidate = registry.verify(home.models / name)  # a damaged version is never promoted, not even the first
    device_install.check_coherent(candidate.path, candidate.manifest)
    current = registry.latest(home.models)
    if current is None:
        return promotion.record(home.models, name, promotion.decide(None, None, None, threshold_points))
    cand = run_eval(home, version=name, devices=devices, seed=seed, progress=progress, record=False)[0].result
    base = run_eval(home, version=current.name, devices=devices, seed=seed, progress=progress, record=False)[0].result
    decision = promotion.decide(cand["recall_at_1"], current.name, base["recall_at_1"], threshold_points)
    return promotion.record(home.models, name, decision, devices=cand["devices"])
