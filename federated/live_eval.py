"""Live evaluation, promotion and version pulls: the coordinator's side, on sums alone.

After a live round publishes a candidate, ``LiveEvaluation.run`` opens an evaluation task for
it. Devices that check in get the task (the candidate's name, and ``latest``'s when there is
one), pull the versions they lack through the ``Version`` call, score them on their own
held-out split (``keyboard/evaluate.py``) and send back named sums (``common/eval_sums.py``)
with ``EvalReport``. One report per device per task is accepted; a malformed one is refused
naming the device. Sums are released only from at least ``min_devices`` devices that predicted
something; then the rule of ``federated/promotion.py`` decides, the registry records it, and the
result is written to ``server/evals/<version>.json`` as ``fedkb eval`` writes it, marked live.
A report may also carry the device's live counts (``live``: ``{source: {version: counts}}``,
``common/live_counts.py``), checked by name; they are summed over every accepted report and
released per (version, source) from at least ``min_devices`` devices into
``server/live_metrics.json`` (``federated/live_release.py``), even when the candidate's own sums
are too few to decide on.

This module, like the coordinator, never opens a device's directory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import eval_sums, messages, version_message
from common.atomic import atomic_write
from common.errors import ConfigError, FedkbError
from federated import ledger, live_release, promotion, registry

log = logging.getLogger("fedkb.coordinator")


class TooFewDevices(FedkbError):
    """Fewer devices reported than the minimum; nothing is released and the candidate stays undecided."""


@dataclass
class EvalTask:
    """One evaluation of a candidate (and of ``baseline``, the ``latest`` it is compared with) on devices."""

    eval_id: str
    version: str
    baseline: str | None
    given: set[str] = field(default_factory=set)  # devices the task was handed to
    answered: set[str] = field(default_factory=set)  # devices that sent a report for it, accepted or not
    reports: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # device -> role -> sums
    live: dict[str, dict] = field(default_factory=dict)  # device -> source -> version -> live counts

    @property
    def roles(self) -> set[str]:
        return {"candidate", "latest"} if self.baseline else {"candidate"}

    def header(self) -> dict:
        return {"kind": "evaluate", "eval_id": self.eval_id, "version": self.version, "baseline": self.baseline}

    def accept(self, device_id: str, header: dict) -> None:
        """Takes one device's report; ``MessageError`` naming the device if it is not one this task accepts."""
        where = f"device {device_id}"
        eval_id = messages.field(header, "eval_id", str)
        if eval_id != self.eval_id:
            raise messages.MessageError(f"{where}: evaluation {eval_id!r} is not the open one ({self.eval_id})")
        if device_id not in self.given:
            raise messages.MessageError(f"{where}: was not given evaluation {self.eval_id}")
        if device_id in self.answered:
            raise messages.MessageError(f"{where}: already reported for evaluation {self.eval_id} of "
                                        f"version {self.version}")
        self.answered.add(device_id)  # one report per device, even a refused one
        version = messages.field(header, "version", str)
        if version != self.version:
            raise messages.MessageError(f"{where}: reported on version {version!r}, the task is {self.version}")
        sums = messages.field(header, "sums", dict)
        if set(sums) != self.roles:
            raise messages.MessageError(f"{where}: expected sums for {sorted(self.roles)}, got {sorted(sums)}")
        reports = {role: eval_sums.check(sums[role], f"{where}, sums for the {role} version")
                   for role in sorted(self.roles)}
        # Optional: a device that never typed with a model (or an older agent) sends none.
        live = live_release.parse(header["live"], where) if header.get("live") is not None else {}
        self.reports[device_id] = reports
        self.live[device_id] = live

    def contributing(self) -> list[str]:
        """Devices whose report counts: those that predicted at least one word with the candidate."""
        return sorted(d for d, r in self.reports.items() if r["candidate"]["predictions"] > 0)

    def release(self, min_devices: int) -> dict:
        """The summed sums of every role and the number of devices; ``TooFewDevices`` below ``min_devices``."""
        devices = self.contributing()
        if len(devices) < min_devices:
            raise TooFewDevices(f"evaluation of {self.version}: {len(devices)} devices reported sums, fewer than "
                                f"the minimum of {min_devices}; nothing is released and {self.version} stays "
                                "undecided")
        totals = {role: eval_sums.zero() for role in self.roles}
        for device_id in devices:
            for role in self.roles:
                totals[role] = eval_sums.add(totals[role], self.reports[device_id][role])
        return {"devices": len(devices), **totals}

    def release_live(self, min_devices: int) -> dict[str, dict[str, dict]]:
        """Every accepted device's live counts summed per (version, source), released from ``min_devices``."""
        totals: live_release.Totals = {}
        for device_id in sorted(self.live):
            live_release.add_device(totals, self.live[device_id])
        return live_release.release(totals, min_devices, origin=f"live evaluation of {self.version}")


class LiveEvaluation:
    """Evaluation tasks, promotion and the versions devices pull, for one coordinator."""

    def __init__(self, models_dir: Path, evals_dir: Path, *, min_devices: int, deadline: float,
                 threshold_points: float, refuse: Callable[[str, str], None] = lambda device, reason: None):
        if min_devices < 1:
            raise ConfigError(f"the minimum number of evaluating devices must be at least 1, got {min_devices}")
        self.models, self.evals_dir = Path(models_dir), Path(evals_dir)
        self.min_devices, self.deadline, self.threshold_points = min_devices, deadline, threshold_points
        self.refuse = refuse
        self._cond = threading.Condition()
        self.task: EvalTask | None = None
        self.latest: str | None = registry.read_registry(self.models).get("latest")
        self._packed: dict[str, bytes] = {}  # version name -> its files, serialized once for every device

    # -- called from the RPC handlers ---------------------------------------------------------
    def task_for(self, device_id: str) -> dict | None:
        """The open evaluation task for a device that has not answered it yet, or None."""
        with self._cond:
            task = self.task
            if task is None or device_id in task.answered:
                return None
            task.given.add(device_id)
            return task.header()

    def _serve(self, request: bytes, authorize: Callable[[str], None], what: str,
               answer: Callable[[str, dict], bytes], refused: Callable[[str], bytes],
               errors: tuple[type[Exception], ...] = (messages.MessageError,)) -> bytes:
        """Unpacks a device's request, authorizes the device and returns ``answer(device_id, header)``.

        A request that fails (``errors``) is reported to ``refuse``, logged as ``what`` refused, and
        answered with ``refused(reason)``; the device reads the reason from the reply.
        """
        device_id = "?"  # until the header names it
        try:
            header, _ = messages.unpack(request)
            device_id = messages.field(header, "device_id", str)
            authorize(device_id)
            return answer(device_id, header)
        except errors as exc:
            self.refuse(device_id, str(exc))
            log.warning("refused %s from device %s: %s", what, device_id, exc)
            return refused(str(exc))

    def report(self, request: bytes, authorize: Callable[[str], None]) -> bytes:
        return self._serve(request, authorize, "an evaluation report", self._accept_report,
                           lambda reason: messages.pack({"accepted": False, "reason": reason}))

    def _accept_report(self, device_id: str, header: dict) -> bytes:
        with self._cond:
            if self.task is None:
                raise messages.MessageError(f"device {device_id}: no evaluation is open")
            self.task.accept(device_id, header)
            self._cond.notify_all()
        return messages.pack({"accepted": True})

    def version(self, request: bytes, authorize: Callable[[str], None]) -> bytes:
        """``latest``'s name and, if the device lacks the version it asks for, its files."""
        return self._serve(request, authorize, "a version request", self._answer_version,
                           lambda reason: messages.pack({"error": reason, "latest": self.latest, "version": None}),
                           errors=(messages.MessageError, registry.RegistryError))

    def _answer_version(self, device_id: str, header: dict) -> bytes:
        have, want = header.get("have"), header.get("want")
        if have is not None:
            version_message.check_name(have, f"device {device_id}: 'have'")
        if want is not None:
            version_message.check_name(want, f"device {device_id}: 'want'")
        with self._cond:
            latest, task = self.latest, self.task
        offered = {latest} | ({task.version, task.baseline} if task is not None else set())
        if want is not None and want not in offered:
            raise messages.MessageError(f"device {device_id}: version {want} is not offered (latest is "
                                        f"{latest}, evaluated: {task.version if task else 'none'})")
        target = want or latest
        if target is None or target == have:
            return messages.pack({"latest": latest, "version": None})
        reply = {"latest": latest, "version": target}
        rollback = registry.read_registry(self.models)["rollbacks"].get(target)
        if rollback is not None:  # the signed record that lets a device install an older version
            reply["rollback"] = rollback
        return messages.pack(reply, self._files(target))

    def _files(self, name: str) -> bytes:
        with self._cond:
            packed = self._packed.get(name)
        if packed is None:
            version = registry.verify(self.models / name)  # never send what does not verify here
            packed = messages.pack_arrays(version_message.file_arrays(version.path))
            with self._cond:
                keep = {self.latest} | ({self.task.version, self.task.baseline} if self.task else set())
                self._packed = {n: b for n, b in self._packed.items() if n in keep}
                self._packed[name] = packed
        return packed

    # -- the driver -----------------------------------------------------------------------------
    def run(self, version: str, *, stop: threading.Event | None = None, on_event=lambda msg: None) -> dict | None:
        """Evaluates ``version`` on the devices that check in, decides and records; returns the result.

        Returns None, deciding nothing, if fewer than ``min_devices`` devices report before the deadline.
        """
        stop = stop or threading.Event()
        candidate = registry.verify(self.models / version)
        with self._cond:
            baseline = self.latest if self.latest != version else None
            task = EvalTask(uuid.uuid4().hex, version, baseline)
            self.task = task
        on_event(f"evaluating {version} on devices" + (f" against {baseline}" if baseline else "")
                 + f"; sums are released from at least {self.min_devices} devices")
        until = time.monotonic() + self.deadline
        with self._cond:
            while len(task.contributing()) < self.min_devices and time.monotonic() < until and not stop.is_set():
                self._cond.wait(min(0.2, max(until - time.monotonic(), 0.0)))
            self.task = None
        self._record_live(task, on_event)
        try:
            totals = task.release(self.min_devices)
        except TooFewDevices as exc:
            on_event(str(exc))
            return None
        ledger.append(self.evals_dir.parent, {"kind": "evaluation", "version": version, "devices": totals["devices"],
                                              "live": True})
        cand = eval_sums.summary(totals["candidate"])
        base = eval_sums.summary(totals["latest"]) if baseline else None
        decision = promotion.decide(cand["recall_at_1"], baseline, base["recall_at_1"] if base else None,
                                    self.threshold_points)
        recorded = promotion.record(self.models, version, decision, devices=totals["devices"], live=True)
        if decision.promoted:
            with self._cond:
                self.latest = version
        result = self._describe(candidate, totals["devices"], cand, base, baseline, recorded)
        atomic_write(self.evals_dir / f"{version}.json", json.dumps(result, indent=2).encode())
        on_event(f"{version}: recall@1 {cand['recall_at_1']:.2%} on {totals['devices']} devices; "
                 + ("promoted" if decision.promoted else "held back") + f" ({decision.reason})")
        return result

    def _record_live(self, task: EvalTask, on_event) -> None:
        """Releases the devices' live counts (each (version, source) from enough devices) into live_metrics.json."""
        released = task.release_live(self.min_devices)
        if not released:
            return
        try:
            path = live_release.record(self.evals_dir.parent, released, self.min_devices)
        except live_release.LiveMetricsError as exc:  # the damaged file is kept as it is, for the operator
            log.warning("live metrics not recorded: %s", exc)
            on_event(f"live metrics not recorded: {exc}")
            return
        live_release.log(self.evals_dir.parent, released, live=True)
        for line in live_release.describe(released):
            on_event(line)
        on_event(f"live metrics merged into {path}")

    def _describe(self, candidate: registry.Version, devices: int, cand: dict, base: dict | None,
                  baseline: str | None, decision: dict) -> dict:
        self.evals_dir.mkdir(parents=True, exist_ok=True)
        return {
            "model_version": candidate.name, "round": candidate.round,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "devices": devices, **cand, "baselines": {}, "products": {},
            "promotion": decision,
            "live": {"evaluated_on": "devices: each scored its own held-out split and sent only sums",
                     "min_devices": self.min_devices, "latest": baseline, "latest_scores": base},
            "settings": {"train": candidate.manifest.get("train_config", {}),
                         "model": dataclasses.asdict(candidate.model_config()),
                         "eval": {"live": True, "min_devices": self.min_devices}},
            "privacy": candidate.manifest.get("privacy", {"epsilon": None, "delta": None, "accountant": None,
                                                          "noise_multiplier": 0.0, "rounds": candidate.round}),
            "privacy_ledger": ledger.total(self.evals_dir.parent),  # evals/ sits in the server folder
        }
