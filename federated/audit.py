"""``fedkb audit``: plant canaries on devices, train with and without DP, measure their exposure.

Everything happens in a scratch folder (``work``), never in the user's home: the population
index and each chosen device's typing log are copied out (the logs through SQLite's backup API,
opened read-only), with the tokenizer and the pretrained model if there is one. The canaries
are planted in the copies, as the oldest sentences of the chosen devices so that they fall into
the train split. Then each run (no DP, and DP at each noise level asked) trains a fresh copy of
that scratch population with ``federated.program.run``, the code ``fedkb train`` runs, and every
version it publishes is scored by ``eval.audit`` (exact rank over the whole randomness space).

The home's device logs are only read. The result goes to ``<home>/server/audit.json`` (what
``fedkb report`` shows) and to ``<work>/audit.json``; it holds the canaries (made-up sentences of
vocabulary words) and figures, no device text.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from common.atomic import atomic_write
from common.layout import DeviceLayout, Home
from eval.audit import (
    RESULT_FILE,
    AuditError,
    Canary,
    canary_exposure,
    candidate_words,
    check_enumerable,
    draw_canaries,
    space_size,
)
from keyboard.store import Device
from tokenizer.vocab import Tokenizer


@dataclass(frozen=True)
class AuditConfig:
    """What is planted and where; the training settings travel separately (``TrainConfig``)."""

    canaries: int = 4  # canary sentences, each with its own prefix and secret
    canary_devices: int = 1  # devices each canary is planted on
    repeats: int = 10  # copies of its canary on each of those devices
    prefix_words: int = 3  # the canary format: this many fixed words before the secret slot
    secret_words: int = 2  # S: words in the secret slot
    space: int = 300  # W: candidate words; the randomness space is W^S secrets
    devices: int | None = None  # copy only the first N devices of the home (None: all)
    seed: int = 0  # which canaries, and on which devices

    def __post_init__(self) -> None:
        for name in ("canaries", "canary_devices", "repeats", "prefix_words", "secret_words", "space"):
            if getattr(self, name) < 1:
                raise AuditError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.devices is not None and self.devices < 2:
            raise AuditError(f"--devices must be at least 2, got {self.devices}")
        check_enumerable(self.space, self.secret_words)


def copy_log(source: Path, target: Path) -> None:
    """Copies a SQLite file through the backup API, opening the source read-only (a live log stays consistent)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    except sqlite3.Error as exc:
        raise AuditError(f"cannot copy {source}: {exc}") from None
    finally:
        dst.close()
        src.close()


def check_home(home: Home, config: AuditConfig) -> Tokenizer:
    """Checks, before anything starts, that ``home`` has a population and a tokenizer with enough words."""
    from federated.population import members

    if not members(home):
        raise AuditError(f"no devices in {home.devices}; run `fedkb population seed --corpus shakespeare` first")
    if not home.tokenizer_model.is_file():
        raise AuditError(f"no tokenizer in {home.tokenizer}; run `fedkb tokenizer train` first")
    tokenizer = Tokenizer.load(home.tokenizer)
    found = len(candidate_words(tokenizer, config.space))
    if found < config.space:
        raise AuditError(f"the tokenizer in {home.tokenizer} has only {found} pieces that are whole words, fewer "
                         f"than --space {config.space}; lower --space")
    return tokenizer


def scratch_population(home: Home, work: Path, devices: int | None) -> tuple[Home, list[str]]:
    """A home under ``work/planted`` with copies of the population (the first ``devices``) and the tokenizer."""
    from federated.population import members, register

    population = members(home)
    chosen = population[:devices] if devices else population
    scratch = Home(work / "planted")
    for m in chosen:
        copy_log(DeviceLayout(home.device(m.device_id)).db, DeviceLayout(scratch.device(m.device_id)).db)
    register(scratch, chosen)
    shutil.copytree(home.tokenizer, scratch.tokenizer)
    if home.pretrained.is_dir():
        shutil.copytree(home.pretrained, scratch.pretrained)
    return scratch, [m.device_id for m in chosen]


def plant(scratch: Home, canaries: list[Canary], device_ids: list[str], config: AuditConfig,
          min_examples: int, rng: np.random.Generator) -> dict[str, list[str]]:
    """Plants each canary ``repeats`` times on ``canary_devices`` distinct devices; returns the devices of each.

    The copies are written with no timestamp and negative row ids, which the log orders before
    every other sentence: they are the oldest, so they are in the train split. This writes to
    the scratch copies only.
    """
    eligible = []
    for d in device_ids:
        with Device(scratch.device(d)) as device:
            if device.status()["train_sentences"] >= min_examples:
                eligible.append(d)
    needed = config.canaries * config.canary_devices
    if len(eligible) < needed:
        raise AuditError(f"{config.canaries} canaries on {config.canary_devices} devices each need {needed} devices "
                         f"with ≥ {min_examples} train sentences; the scratch population has {len(eligible)}")
    picked = [eligible[i] for i in rng.permutation(len(eligible))[:needed]]
    where: dict[str, list[str]] = {}
    for k, canary in enumerate(canaries):
        hosts = picked[k * config.canary_devices : (k + 1) * config.canary_devices]
        where[canary.text] = hosts
        for d in hosts:
            db = sqlite3.connect(DeviceLayout(scratch.device(d)).db)
            try:
                with db:
                    low = db.execute("SELECT MIN(id) FROM sentences").fetchone()[0] or 1
                    db.executemany("INSERT INTO sentences (id, ts, text) VALUES (?, NULL, ?)",
                                   [(min(low, 1) - 1 - i, canary.text) for i in range(config.repeats)])
            finally:
                db.close()
            with Device(scratch.device(d)) as device:
                if device.splits().train.count(canary.text) != config.repeats:
                    raise AuditError(f"device {d}: the planted canary did not land in the train split")
    return where


def versions_exposure(models_dir: Path, tokenizer: Tokenizer, canaries: list[Canary], word_ids: list[int],
                      controls: list[Canary] = ()) -> list[dict]:
    """Every published version in ``models_dir`` (verified), with each canary's exposure in its float weights.

    ``controls`` are canaries drawn the same way but planted nowhere: their exposure is what the
    model gives a canary from what it learned of the language alone.
    """
    from federated import registry
    from keyboard.lm import NumpyLM

    out = []
    for name in registry.list_versions(models_dir):
        version = registry.verify(models_dir / name)
        lm = NumpyLM.load(version.path, on_device=False)
        scored = [canary_exposure(lm, tokenizer, c, word_ids) for c in canaries]
        control = [canary_exposure(lm, tokenizer, c, word_ids)["exposure"] for c in controls]
        out.append({"version": name, "round": version.round, "exposures": [s["exposure"] for s in scored],
                    "ranks": [s["rank"] for s in scored],
                    "mean_exposure": float(np.mean([s["exposure"] for s in scored])),
                    "control_exposures": control,
                    "mean_control_exposure": float(np.mean(control)) if control else None,
                    "privacy": version.manifest.get("privacy"),
                    "loss": version.manifest.get("metrics", {}).get("loss")})
    return out


@dataclass(frozen=True)
class Run:
    """One training run of the audit: a name and its privacy settings."""

    name: str
    privacy: object  # federated.privacy.PrivacyConfig


def audit(home: Home, work: Path, config: AuditConfig, train, runs: list[Run], *, rounds: int, publish_every: int,
          pretrained: bool = True, on_event: Callable[[str], None] = lambda _: None,
          on_round: Callable | None = None) -> dict:
    """Plants canaries in a scratch copy of ``home``'s population under ``work``, trains each run, scores them.

    Needs a TFF context (``program.run``). Returns the result also written to ``<work>/audit.json``.
    """
    from federated import program

    work = Path(work)
    if (work / "planted").exists():
        raise AuditError(f"{work} already holds an audit; give a new or empty folder")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    check_home(home, config)
    scratch, device_ids = scratch_population(home, work, config.devices)
    tokenizer = Tokenizer.load(scratch.tokenizer)
    word_ids = candidate_words(tokenizer, config.space)
    rng = np.random.default_rng([config.seed, 0xCA7])
    drawn = draw_canaries(tokenizer, word_ids, 2 * config.canaries, prefix_words=config.prefix_words,
                          secret_words=config.secret_words, rng=rng)
    canaries, controls = drawn[: config.canaries], drawn[config.canaries :]  # controls are planted nowhere
    where = plant(scratch, canaries, device_ids, config, train.min_examples, rng)
    on_event(f"planted {len(canaries)} canaries × {config.repeats} copies on {config.canary_devices} device(s) each, "
             f"in a scratch copy of {len(device_ids)} devices under {work}")
    result_runs = []
    for run in runs:
        arm = Home(work / run.name)
        shutil.copytree(scratch.root, arm.root)
        on_event(f"run {run.name!r}: training {rounds} rounds")
        summary = program.run(arm, train, rounds=rounds, privacy=run.privacy, publish_every=publish_every,
                              fresh=True, pretrained=pretrained, on_round=on_round)
        joined = {c.text: sum(any(d in r.clients for d in where[c.text]) for r in summary.rounds) for c in canaries}
        on_event(f"run {run.name!r}: scoring {len(program_versions(arm))} versions × {len(canaries)} canaries "
                 f"over {space_size(len(word_ids), config.secret_words):,} candidates each")
        result_runs.append({"name": run.name, "privacy_config": run.privacy.as_dict(),
                            "rounds_with_canary_device": [joined[c.text] for c in canaries],
                            "versions": versions_exposure(arm.models, tokenizer, canaries, word_ids, controls)})
    result = {
        "method": "exposure (Carlini et al. 2019): log2|R| - log2 rank, rank among all |R| candidates by exact "
                  "enumeration, candidates scored by the log-perplexity of the secret slot given the prefix under "
                  "each version's float weights; a tie counts as half a place",
        "space": space_size(len(word_ids), config.secret_words), "max_exposure": float(np.log2(
            space_size(len(word_ids), config.secret_words))),
        "config": asdict(config), "train": train.as_dict(), "rounds": rounds, "publish_every": publish_every,
        "pretrained": pretrained, "population": len(device_ids),
        "canaries": [{"text": c.text, "secret": " ".join(c.secret), "devices": where[c.text]} for c in canaries],
        "controls": [{"text": c.text, "secret": " ".join(c.secret)} for c in controls],
        "runs": result_runs, "seconds": time.perf_counter() - t0,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "work": str(work),
    }
    atomic_write(work / RESULT_FILE, json.dumps(result, indent=2).encode())
    return result


def program_versions(home: Home) -> list[str]:
    from federated import registry

    return registry.list_versions(home.models) if home.models.is_dir() else []


def dp_runs(noises: list[float], clip, delta, base) -> list[Run]:
    """The no-DP run and one DP run per noise multiplier, all else as in ``base`` (a ``PrivacyConfig``)."""
    runs = [Run("no-dp", replace(base, dp_noise=0.0, dp_clip=None))]
    for z in noises:
        runs.append(Run(f"dp-z{z:g}", replace(base, dp_noise=z, dp_clip=clip, dp_delta=delta)))
    return runs
