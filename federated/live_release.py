"""Live counts summed over devices and released per (version, source), only from enough devices.

Devices keep counts of how the suggestions did while a person typed (``common/live_counts.py``),
per model version and per source ("typed" by a person, "replayed" by a simulated typist). Both
evaluations sum them with the offline sums: ``fedkb eval`` in the TFF ``federated_sum``
(``federated/evaluation.py``) and a live evaluation from the devices' ``EvalReport``
(``federated/live_eval.py``). A (version, source) is released only when at least the minimum
number of devices contributed to it (``ledger.MIN_RELEASE_DEVICES``, the minimum of offline
evaluation too); a device with no finished word for that version contributes nothing. Below it the
entry says why it is withheld and carries no counts.

Released figures go to ``<home>/server/live_metrics.json`` — kept apart from ``server/evals/``
because they belong to the version that was *typed with*, not to the one an evaluation scored:

    {"min_devices": 20, "versions": {"0003": {"typed": {entry}, "replayed": {entry}}}}

where an entry is ``{"source", "devices", "counts", "summary", "origin", "created"}`` when released
and ``{"source", "devices", "withheld", "origin", "created"}`` when not. Device counts are running
totals, so a newer release replaces an older one; a newer *withheld* entry (say from a smaller
sample of devices) does not replace figures released before.

This module imports no TensorFlow: the coordinator uses it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from common import live_counts, version_message
from common.atomic import atomic_write
from common.errors import FedkbError
from common.messages import MessageError
from federated import ledger

LIVE_FILE = "live_metrics.json"
SOURCE_LABELS = {"typed": "typed by people", "replayed": "replayed (simulated typists)"}

Totals = dict[tuple[str, str], tuple[int, dict[str, int]]]  # (version, source) -> (devices, summed counts)


class LiveMetricsError(FedkbError, ValueError):
    """``live_metrics.json`` is not what this module writes; the message names the file."""


def contributes(counts: Mapping[str, int]) -> bool:
    """Whether a device's counts for one version count towards the minimum: it finished some word."""
    return int(counts["words"]) > 0


def add_device(totals: Totals, device_live: Mapping[str, Mapping[str, Mapping[str, int]]]) -> None:
    """Adds one device's ``{source: {version: counts}}`` to ``totals`` (in place), skipping empty counts."""
    for source, per_version in device_live.items():
        for version, counts in per_version.items():
            if contributes(counts):
                devices, summed = totals.get((version, source), (0, live_counts.zero()))
                totals[(version, source)] = (devices + 1, live_counts.add(summed, counts))


def release(totals: Totals, minimum: int, *, origin: str) -> dict[str, dict[str, dict]]:
    """``{version: {source: entry}}``: the counts and their rates from at least ``minimum`` devices, else why not."""
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out: dict[str, dict[str, dict]] = {}
    for (version, source), (devices, counts) in sorted(totals.items()):
        entry: dict = {"source": source, "devices": devices, "origin": origin, "created": created}
        if devices >= minimum:
            entry.update(counts=dict(counts), summary=live_counts.summary(counts))
        else:
            entry["withheld"] = f"withheld: {devices} devices < minimum {minimum}"
        out.setdefault(version, {})[source] = entry
    return out


def merge(old: Mapping[str, Mapping[str, dict]], new: Mapping[str, Mapping[str, dict]]) -> dict[str, dict[str, dict]]:
    """``new`` over ``old``, except that a withheld entry never hides figures released before."""
    out = {version: dict(per_source) for version, per_source in old.items()}
    for version, per_source in new.items():
        for source, entry in per_source.items():
            before = out.get(version, {}).get(source)
            if "withheld" in entry and before is not None and "withheld" not in before:
                continue
            out.setdefault(version, {})[source] = entry
    return out


def load(server_dir: Path) -> dict:
    """The released live metrics (``{"min_devices", "versions"}``), empty if none were released yet."""
    path = Path(server_dir) / LIVE_FILE
    if not path.is_file():
        return {"min_devices": None, "versions": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LiveMetricsError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("versions"), dict):
        raise LiveMetricsError(f"{path}: expected an object with 'versions', as {__name__} writes it")
    for version, per_source in data["versions"].items():
        if not isinstance(per_source, dict):
            raise LiveMetricsError(f"{path}: version {version!r} must map sources to entries")
        for source, entry in per_source.items():
            where = f"{path}: version {version}, source {source!r}"
            if source not in live_counts.SOURCES or not isinstance(entry, dict):
                raise LiveMetricsError(f"{where}: expected one of {live_counts.SOURCES} with an entry object")
            if "withheld" not in entry:
                try:
                    entry["counts"] = live_counts.check(entry.get("counts"), where)
                except ValueError as exc:
                    raise LiveMetricsError(str(exc)) from None
                entry["summary"] = live_counts.summary(entry["counts"])  # recomputed: never trust stored rates
    return data


def record(server_dir: Path, released: Mapping[str, Mapping[str, dict]], minimum: int) -> Path:
    """Merges ``released`` into ``<server_dir>/live_metrics.json``; returns its path."""
    path = Path(server_dir) / LIVE_FILE
    versions = merge(load(server_dir)["versions"], released)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"min_devices": minimum, "versions": versions}, indent=2, sort_keys=True).encode())
    return path


def figures(versions: Mapping[str, Mapping[str, dict]], version: str) -> dict | None:
    """The released entry of ``version``: typed by people if released, else replayed; None if neither."""
    for source in live_counts.SOURCES:  # "typed" first
        entry = versions.get(version, {}).get(source)
        if entry is not None and "withheld" not in entry:
            return entry
    return None


def describe(released: Mapping[str, Mapping[str, dict]]) -> Iterable[str]:
    """One line per (version, source), for the command line."""
    for version, per_source in sorted(released.items()):
        for source, entry in sorted(per_source.items()):
            if "withheld" in entry:
                yield f"live {SOURCE_LABELS[source]} with {version}: {entry['withheld']}"
                continue
            s = entry["summary"]
            yield (f"live {SOURCE_LABELS[source]} with {version}: {entry['devices']} devices, {s['words']:,} words — "
                   f"impression recall@3 {_pct(s['impression_recall_at_3'])}, "
                   f"keystroke savings {_pct(s['keystroke_savings'])}")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"



def parse(value: object, where: str) -> dict[str, dict[str, dict[str, int]]]:
    """A device's ``{source: {version: counts}}`` as sent in its ``EvalReport``, checked.

    Raises ``MessageError`` naming ``where``.
    """
    if not isinstance(value, Mapping):
        raise MessageError(f"{where}: live counts must be an object of sources {live_counts.SOURCES}, "
                           f"got {type(value).__name__}")
    unknown = set(value) - set(live_counts.SOURCES)
    if unknown:
        raise MessageError(f"{where}: unknown live counts source(s) {sorted(unknown)}; "
                           f"expected some of {live_counts.SOURCES}")
    out: dict[str, dict[str, dict[str, int]]] = {}
    for source, per_version in value.items():
        if not isinstance(per_version, Mapping):
            raise MessageError(f"{where}: live counts of {source!r} must map version names to counts, "
                               f"got {type(per_version).__name__}")
        out[source] = {version_message.check_name(version, f"{where}, live counts of {source!r}"):
                       live_counts.check(c, f"{where}, live counts of {source!r} for version {version}")
                       for version, c in per_version.items()}
    return out


def log(server_dir: Path, released: Mapping[str, Mapping[str, dict]], *, live: bool) -> None:
    """Records in the privacy ledger what left the devices as live counts: how many sums, released or withheld."""
    entries = [e for per_source in released.values() for e in per_source.values()]
    shown = [e["devices"] for e in entries if "withheld" not in e]
    if shown:  # withheld sums left the devices too, but were never published
        ledger.append(Path(server_dir), {"kind": "live_counts", "released": len(shown),
                                         "withheld": len(entries) - len(shown), "devices": min(shown),
                                         "live": live})
