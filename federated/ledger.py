"""One ledger of everything that leaves the devices, and the privacy it spends.

Every release of device data appends one line to ``server/state/ledger.jsonl`` (the server's
private state) *before* anything is published: a vocabulary gathering, an n-gram gathering, a
training round, an evaluation's sums. A training round re-run after a crash is released a
second time, so it is appended, and counted, a second time.

The parts are put together by basic composition: ε and δ of the DP parts add up (training's
rounds are first composed among themselves with ``dp_accounting``'s RDP accountant). Releases
that are not differentially private are listed beside the total with the rule that limits them
(at least ``MIN_RELEASE_DEVICES`` devices): the total ε does not cover them, and says so.

This module holds no TensorFlow; ``dp_accounting`` is imported only to compute ε.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from common.errors import FedkbError

LEDGER_FILE = "ledger.jsonl"  # under server/state: private
MIN_RELEASE_DEVICES = 20  # sums over fewer devices are never released (per-round metrics, evaluation)
ACCOUNTANT = "RDP (dp_accounting.rdp.RdpAccountant) for training rounds; basic composition across parts"
ADJACENCY = "add or remove one device with all of its data (user-level)"


class LedgerError(FedkbError, ValueError):
    """The ledger cannot be read; the message names the file and line."""


def default_delta(population: int) -> float:
    """δ when ``--dp-delta`` is not given: 1 / N^1.1, well below 1 / N."""
    return float(max(population, 1)) ** -1.1


def append(server_dir: Path, entry: dict) -> None:
    """Appends one release to the ledger, on disk before the caller publishes anything."""
    path = server_dir / "state" / LEDGER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def round_metrics(server_dir: Path) -> list[dict]:
    """The newest run's full round metrics as the server computed them (a re-run round: its last run).

    Private: what ``releasable_metrics`` withholds from metrics.csv is only here, for the operator.
    """
    rounds = entries(server_dir, "round")
    last = {}
    for entry in rounds:
        if entry.get("run_id") == rounds[-1].get("run_id"):  # the newest run only
            last[entry["round"]] = {"round": entry["round"], **entry.get("metrics", {})}
    return [last[r] for r in sorted(last)]


def entries(server_dir: Path, kind: str | None = None) -> list[dict]:
    """The ledger's releases in order (of one ``kind`` if given); a torn last line is skipped."""
    path = server_dir / "state" / LEDGER_FILE
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            if n == len(lines):  # a crash while appending: that release never happened
                continue
            raise LedgerError(f"{path}, line {n}: not a JSON object") from None
        if not isinstance(entry, dict) or "kind" not in entry:
            raise LedgerError(f"{path}, line {n}: expected an object with a 'kind', got {line[:80]!r}")
        if kind is None or entry["kind"] == kind:
            out.append(entry)
    return out


def releasable_metrics(metrics: dict, *, dp_noise: float) -> dict:
    """The round's metrics that may be published (metrics.csv, TensorBoard, manifests).

    Loss, accuracy, token and example sums and the number of participants are sums over the
    round's devices. They are released only from rounds of at least ``MIN_RELEASE_DEVICES``
    devices and never from a DP round (unnoised, they would escape its ε). Kept always: the
    round's timing and population counts, and, in a DP round, the aggregator's own noised
    measurements (the adaptive clip), which its ε covers.
    """
    always = {"available_devices", "eligible_devices", "population", "round_seconds", "live"}
    if dp_noise > 0:
        return {k: v for k, v in metrics.items() if k in always or k.startswith("aggregator/")}
    if metrics.get("clients", 0) >= MIN_RELEASE_DEVICES:
        return dict(metrics)
    return {k: v for k, v in metrics.items() if k in always}


def training_spent(rounds: list[dict], *, delta: float) -> dict:
    """(ε, δ) of the recorded training rounds, with and without amplification by sampling.

    Each round is the Gaussian mechanism with noise multiplier ``noise`` on the sum of clipped
    updates. A round drawn by secret Poisson sampling at rate ``q`` is amplified
    (``PoissonSampledDpEvent``); a round whose draw is public (``--seed``) or not Poisson (live
    rounds' first-come selection) is not. ``epsilon`` is the figure that holds for what ran.
    """
    noised = [r for r in rounds if r.get("noise", 0) > 0]
    out = {"epsilon": None, "epsilon_amplified": None, "epsilon_without_amplification": None, "delta": delta,
           "rounds": len(rounds), "reruns": len(rounds) - len({(r.get("run_id"), r.get("round")) for r in rounds}),
           "rounds_amplified": sum(1 for r in noised if r.get("sampling") == "poisson-secret"), "rho": None}
    if not rounds:
        out["epsilon"] = 0.0
        return out
    if len(noised) < len(rounds):
        return out  # a round without noise: no ε bounds what it released
    tree = [r for r in noised if r.get("mechanism") == "ftrl"]
    if tree:
        return _with_ftrl(out, noised, tree, delta)
    import dp_accounting
    from dp_accounting import rdp

    def epsilon(amplify) -> float:
        accountant = rdp.RdpAccountant()
        events = Counter((r["noise"], r["q"] if amplify(r) else 1.0) for r in noised)
        for (noise, q), count in events.items():
            gaussian = dp_accounting.GaussianDpEvent(noise)
            accountant.compose(gaussian if q >= 1 else dp_accounting.PoissonSampledDpEvent(q, gaussian), count)
        return float(accountant.get_epsilon(delta))

    out["epsilon_without_amplification"] = epsilon(lambda r: False)
    out["epsilon_amplified"] = epsilon(lambda r: True)
    out["epsilon"] = epsilon(lambda r: r.get("sampling") == "poisson-secret")
    return out


def _with_ftrl(out: dict, noised: list[dict], tree: list[dict], delta: float) -> dict:
    """DP-FTRL rounds (``federated/ftrl.py``): ρ-zCDP from the tree accountant over every recorded
    round (re-runs included, which can only overstate ρ), at the smallest noise and separation any of
    them had; no amplification by sampling. DP-FedAvg rounds beside them add by basic composition."""
    from federated import ftrl

    noise = min(r["noise"] for r in tree)
    separation = min(int(r.get("min_separation") or 1) for r in tree)
    out["rho"] = ftrl.zcdp(noise, len(tree), separation)
    eps = ftrl.epsilon_from_zcdp(out["rho"], delta)
    rest = [r for r in noised if r.get("mechanism") != "ftrl"]
    if rest:
        other = training_spent(rest, delta=delta)
        out["delta"] = 2 * delta
        out.update(epsilon=eps + other["epsilon"], epsilon_amplified=eps + other["epsilon_amplified"],
                   epsilon_without_amplification=eps + other["epsilon_without_amplification"])
    else:
        out.update(epsilon=eps, epsilon_amplified=eps, epsilon_without_amplification=eps, rounds_amplified=0)
    out["min_separation"] = separation
    return out


def _part(name: str, epsilon: float | None, delta: float, what: str, releases: int) -> dict:
    return {"part": name, "epsilon": epsilon, "delta": delta, "releases": releases, "what": what}


def total(server_dir: Path, *, population: int | None = None, dp_delta: float | None = None) -> dict:
    """Every part of what left the devices and the total (ε, δ) of the DP parts.

    ``epsilon`` is None (unbounded) if any part released device data without DP. δ of training
    defaults to 1 / N^1.1 for the largest population the rounds recorded (or ``population``).
    """
    rounds = entries(server_dir, "round")
    population = population or max((int(r.get("population", 0)) for r in rounds), default=0)
    delta = dp_delta or default_delta(population)
    parts, outside = [], []
    for kind, label in (("vocabulary", "vocabulary counts"), ("ngrams", "n-gram counts")):
        for e in entries(server_dir, kind):
            if e.get("epsilon") is None:
                parts.append(_part(kind, None, 0.0, f"{label}: {e.get('method')}, no DP", 1))
            else:
                parts.append(_part(kind, float(e["epsilon"]), float(e["delta"]),
                                   f"{label}: {e.get('method')}, Gaussian thresholding", 1))
    if rounds:
        t = training_spent(rounds, delta=delta)
        sampling = sorted({r.get("sampling", "?") for r in rounds})
        what = (f"training: {t['rounds']} round releases ({t['reruns']} re-run after a crash, each counted), "
                f"sampling {', '.join(sampling)}")
        if t["rho"] is not None:
            what += (f"; DP-FTRL tree aggregation, ρ = {t['rho']:.3g} (zCDP), each device at most once every "
                     f"{t['min_separation']} rounds")
        parts.append({**_part("training", t["epsilon"], t["delta"] if t["epsilon"] is not None else 0.0, what,
                              t["rounds"]),
                      **{k: t[k] for k in ("epsilon_amplified", "epsilon_without_amplification", "rounds_amplified",
                                           "rho")}})
        released = sum(1 for r in rounds if r.get("metrics_released"))
        outside.append({"part": "per-round metrics", "releases": released, "withheld": len(rounds) - released,
                        "what": f"loss, accuracy and token sums released unnoised only from rounds of at least "
                                f"{MIN_RELEASE_DEVICES} devices without DP noise; withheld otherwise"})
    evals = entries(server_dir, "evaluation")  # each run of an evaluation, recorded or only decided on
    if evals:
        outside.append({"part": "evaluation sums", "releases": len(evals), "withheld": 0,
                        "what": f"sums of hits, predictions and losses over at least {MIN_RELEASE_DEVICES} devices "
                                f"(fewest {min(e['devices'] for e in evals)}), unnoised"})
    live = entries(server_dir, "live_counts")  # federated/live_release.py: how suggestions did while typing
    if live:
        outside.append({"part": "live metrics", "releases": sum(e["released"] for e in live),
                        "withheld": sum(e["withheld"] for e in live),
                        "what": f"sums of live typing counts per version and source over at least "
                                f"{MIN_RELEASE_DEVICES} devices (fewest {min(e['devices'] for e in live)}), unnoised"})
    bounded = all(p["epsilon"] is not None for p in parts)
    eps = sum(p["epsilon"] for p in parts) if bounded else None
    return {"epsilon": eps, "delta": sum(p["delta"] for p in parts) if bounded else None,
            "accountant": ACCOUNTANT, "adjacency": ADJACENCY, "parts": parts, "outside_epsilon": outside,
            "note": ("ε adds the DP parts by basic composition; the releases outside ε are not differentially "
                     f"private and are limited only to sums over at least {MIN_RELEASE_DEVICES} devices")
            if bounded else "unbounded: a part released device data without differential privacy"}


def describe(ledger: dict) -> list[str]:
    """The ledger in lines, for ``fedkb report`` and the command line."""
    def eps(v):
        return "unbounded (no DP)" if v is None else f"ε = {v:.3g}"

    head = (f"privacy ledger: total {eps(ledger['epsilon'])}"
            + (f", δ = {ledger['delta']:.2g}" if ledger["epsilon"] is not None else "")
            + f" ({ledger['accountant']}; adjacency: {ledger['adjacency']})")
    lines = [head]
    for p in ledger["parts"]:
        extra = ""
        if p.get("epsilon_without_amplification") is not None:
            extra = (f" [amplified by sampling {p['epsilon_amplified']:.3g}, "
                     f"without amplification {p['epsilon_without_amplification']:.3g}]")
        lines.append(f"  {p['part']}: {eps(p['epsilon'])}{extra}: {p['what']}")
    for o in ledger["outside_epsilon"]:
        lines.append(f"  outside ε, {o['part']}: {o['releases']} released, {o['withheld']} withheld: {o['what']}")
    return lines
