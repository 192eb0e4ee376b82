"""The coordinator of live rounds: a gRPC service that devices check in with and upload to.

A round follows Bonawitz et al. 2019 ("Towards Federated Learning at Scale"):

1. **Selection.** Devices check in with their eligibility (idle, charging, unmetered, enough
   train sentences); each check-in is held open while the round selects. Once
   ``ceil(K x overselect)`` eligible devices have checked in (or the selection window has passed
   with at least K), each of them is drawn independently with probability q = K / checked-in
   (Poisson sampling from the run's sampling key, ``federated/sampling.py``: secret unless the
   run was given ``--seed``); the others are told when to retry.
2. **Configuration.** Each selected device receives its task: the round, a task id, the
   round's starting weights, the model config, the client settings and the tokenizer's sha256.
3. **Reporting.** Devices train on their own data (``keyboard/agent.py``) and upload the model
   delta and metric sums. The round closes when K uploads are accepted (the report goal; every
   drawn device's, if fewer than K were drawn) or the deadline passes; with fewer than
   ``min_reports`` it is abandoned and nothing changes.
4. **Server update.** ``ServerParts`` runs TFF's aggregator and the server optimizer's
   finalizer of the same learning process ``fedkb train`` builds, on the accepted deltas in
   selection order; the session then records, checkpoints and publishes the round as a
   simulated round is.

Every upload is checked before it counts: a well-formed message, a task this device was given
in this round and has not already answered, the model's names, shapes and dtype, finite values,
a global L2 norm within what the client settings allow (``max_update_norm``) and a weight within
bounds. A refused upload is logged naming the device, and the round goes on.

5. **Evaluation and promotion.** After a round publishes a candidate, ``evaluate`` hands
   devices that check in an evaluation task; they score it on their own held-out split and send
   named sums, released only from enough devices, and the candidate is promoted or held back
   (``federated/live_eval.py``). Devices pull ``latest`` with the ``Version`` call.

This process never opens a device's directory: it knows devices only by what they send.

Why gRPC: it ships with TFF already (no new dependency), has HTTP/2 flow control and message
size limits, TLS and per-call deadlines, and a thread-pool server whose handlers can block (a
held-open check-in). The messages are raw bytes (``common/messages.py``), so there is no code
generation step. The service's wiring is ``federated/service.py``; secure aggregation's call and
stages are mixed in from ``federated/coordinator_secagg.py``; ``LiveConfig`` is in ``federated/configs.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from common import messages
from common.errors import ConfigError
from common.secagg import UpdateCodec
from federated import sampling, training
from federated.configs import LiveConfig
from federated.coordinator_secagg import SecureRounds
from federated.live_eval import LiveEvaluation
from federated.live_secagg import SecureCollection
from federated.service import messages_hold_seconds
from federated.tls import peer_device
from federated.uploads import RoundAbandoned, RoundUploads, Task

log = logging.getLogger("fedkb.coordinator")


@dataclass
class _Round:
    uploads: RoundUploads
    header: dict  # the task header, less the per-device task id
    weights: bytes  # the round's starting weights, serialized once for every selected device
    order: list[str] = field(default_factory=list)  # selected device ids, in draw order
    secure: SecureCollection | None = None  # under secure aggregation: the round's four stages


class Coordinator(SecureRounds):
    """Live rounds over a ``Session`` made with ``live=True``; RPC handlers run on gRPC's threads."""

    def __init__(self, session, live: LiveConfig = LiveConfig()):
        if session.privacy.dp:
            raise ConfigError("live rounds do not run DP yet; use the simulation (`fedkb train --dp-noise`)")
        self.session, self.live = session, live
        self.train = session.train
        self.settings = training.local_training(self.train, session.privacy)
        self.names = _trainable_names(session)
        self.parts = training.ServerParts(_raw_process(session.process), self.train, session.privacy)
        self.max_norm = messages.max_update_norm(self.settings)
        self.max_weight = messages.max_weight(self.settings)
        self.secagg = training.secagg_config(self.train) if session.privacy.secure_agg else None
        self._cond = threading.Condition()
        self._waiting: dict[str, dict] = {}  # device id -> check-in header, while held open
        self._assigned: dict[str, Task] = {}  # device id -> task handed out in this round's selection
        self._round: _Round | None = None
        self._selecting = False
        self._in_service = False  # set once rounds run: check-ins between rounds are then held for the next
        self._held_between = 0  # check-ins held between rounds, waiting for the next to select
        self.seen: set[str] = set()  # every device that has checked in
        self.check_ins = 0  # check-ins answered, for bench/agent_ceiling.py's rate
        self.refusals: list[tuple[str, str]] = []  # (device id, reason), for the log and tests
        self.authenticate = False  # set by serve(tls=...): device ids must match the peer's certificate
        self.installed: dict[str, str | None] = {}  # device id -> the version it said it runs, at check-in
        home = session.home
        self.evaluation = LiveEvaluation(home.models, home.evals, min_devices=live.eval_min_devices,
                                         deadline=live.eval_deadline, threshold_points=live.promotion_threshold,
                                         refuse=self._refused)

    # -- RPC handlers ---------------------------------------------------------------------------
    def check_in(self, request: bytes, context=None) -> bytes:
        device_id = "?"
        try:
            header, _ = messages.unpack(request)
            device_id = messages.field(header, "device_id", str)
            eligible = messages.field(header, "eligible", dict)
            sentences = messages.field(header, "train_sentences", int)
            self._authorize(device_id, context)
        except messages.MessageError as exc:
            log.warning("refused a check-in: %s", exc)
            self._refused(device_id, str(exc))
            return messages.pack({"kind": "retry", "after": self.live.retry_after, "reason": f"bad check-in: {exc}"})
        with self._cond:
            self.seen.add(device_id)
            self.check_ins += 1
            self.installed[device_id] = header.get("model_version")
            if not all(bool(eligible.get(k)) for k in ("idle", "charging", "unmetered")):
                return self._retry("not eligible now (idle, charging and unmetered are all needed)")
        evaluation = self.evaluation.task_for(device_id)
        if evaluation is not None:
            return messages.pack(evaluation)
        with self._cond:
            if sentences < self.train.min_examples:
                return self._retry(f"{sentences} train sentences; rounds need {self.train.min_examples}")
            deadline = time.monotonic() + messages_hold_seconds(context)
            # Between rounds a device is held until the next round selects, so that selection finds
            # the devices already there (Bonawitz et al. 2019 pipeline selection with the rounds);
            # an evaluation opening meanwhile sends it back at once to fetch that task instead, and a
            # version promoted meanwhile sends it back at once to pull it (the reply names ``latest``).
            # At most as many as a round selects are held so: each holds a server thread.
            if not self._selecting:
                latest = self.evaluation.latest
                if latest is not None and header.get("model_version") != latest:
                    # it runs an older version: sent back to pull ``latest`` (named in the reply), not held
                    return self._retry(f"{latest} is promoted and this device runs {header.get('model_version')}")
                if not self._in_service or self._held_between >= math.ceil(self.train.clients_per_round
                                                                             * self.live.overselect):
                    return self._retry("no round is selecting")
                self._held_between += 1
                try:
                    while not self._selecting:
                        remaining = deadline - time.monotonic()
                        if not self._in_service or remaining <= 0:
                            return self._retry("no round is selecting")
                        if self.evaluation.task is not None:
                            return self._retry("an evaluation is open", after=0.0)
                        if self.evaluation.latest != latest:
                            return self._retry(f"{self.evaluation.latest} is promoted", after=0.0)
                        self._cond.wait(min(remaining, 0.5))
                finally:
                    self._held_between -= 1
            self._waiting[device_id] = header
            self._cond.notify_all()
            while device_id not in self._assigned and device_id in self._waiting and self._selecting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._waiting.pop(device_id, None)
            task = self._assigned.pop(device_id, None)
            if task is None:
                return self._retry("not selected for this round")
            rnd = self._round
        reply = {**rnd.header, "kind": "task", "task_id": task.task_id}
        if rnd.secure is not None:
            reply["secagg"] = {"index": rnd.secure.index[device_id], "n": len(rnd.order), "codec": rnd.header["codec"]}
        # outside the lock: the weights were serialized once for the round
        return messages.pack(reply, rnd.weights)

    def upload(self, request: bytes, context=None) -> bytes:
        device_id = "?"
        try:
            header, arrays = messages.unpack(request)
            device_id = messages.field(header, "device_id", str)
            self._authorize(device_id, context)
            with self._cond:
                if self._round is None:
                    raise messages.MessageError("no round is open")
                if self._round.secure is not None:
                    raise messages.MessageError("this round runs secure aggregation: updates arrive only masked "
                                                "(the SecureAggregation call)")
                digest = hashlib.sha256(request).hexdigest()
                if self._round.uploads.resent(header, digest):  # its reply was lost: counted once already
                    return messages.pack({"accepted": True, "resent": True})
                self._round.uploads.accept(header, arrays, digest)
                self._cond.notify_all()
            return messages.pack({"accepted": True})
        except messages.MessageError as exc:
            reason = str(exc)
            self._refused(device_id, reason)
            # A late upload from an over-selected device is how over-selection works, not a fault.
            (log.info if "(late" in reason else log.warning)("refused an upload from device %s: %s", device_id, reason)
            return messages.pack({"accepted": False, "reason": reason})

    def tokenizer(self, request: bytes, context=None) -> bytes:
        header, _ = messages.unpack(request)
        tok = self.session.tokenizer
        if header.get("sha256") != tok.sha256:
            return messages.pack({"error": f"no tokenizer {header.get('sha256')!r}; this coordinator has {tok.sha256}"})
        return messages.pack({"sha256": tok.sha256}, {"model": np.frombuffer(tok.model_proto, np.uint8)})

    def version(self, request: bytes, context=None) -> bytes:
        return self.evaluation.version(request, lambda device_id: self._authorize(device_id, context))

    def eval_report(self, request: bytes, context=None) -> bytes:
        return self.evaluation.report(request, lambda device_id: self._authorize(device_id, context))

    def _refused(self, device_id: str, reason: str) -> None:
        with self._cond:
            self.refusals.append((device_id, reason))

    def _authorize(self, device_id: str, context) -> None:
        if self.authenticate:
            peer = peer_device(context)
            if peer != device_id:
                raise messages.MessageError(f"the connection's credential is for {peer!r}, not {device_id!r}")

    def _retry(self, reason: str, after: float | None = None) -> bytes:
        return messages.pack({"kind": "retry", "after": self.live.retry_after if after is None else after,
                              "reason": reason, "latest": self.evaluation.latest})

    # -- the round driver (one thread) ----------------------------------------------------------
    def run_round(self, *, total_rounds: int | None = None, stop: threading.Event | None = None,
                  on_event=lambda msg: None):
        """Selects, configures and collects one round, then applies and records it; returns its result."""
        stop = stop or threading.Event()
        round_num = self.session.done + 1
        k = self.train.clients_per_round
        target = math.ceil(k * self.live.overselect)
        t0, started_at = time.perf_counter(), time.monotonic()
        weights = self.session.global_weights()
        header = {"round": round_num, "model": dataclasses.asdict(self.session.model_config),
                  "settings": self.settings.as_dict(), "tokenizer_sha256": self.session.tokenizer.sha256,
                  "deadline_seconds": self.live.report_deadline}
        if self.secagg is not None:
            codec = UpdateCodec(tuple(self.names), tuple(tuple(weights[n].shape) for n in self.names), self.secagg.clip,
                                self.secagg.max_weight, self.secagg.max_clients)
            header.update(codec=codec.as_dict(), stage_timeout=self.live.stage_timeout)
        with self._cond:
            self._in_service = True
            uploads = RoundUploads(round_num, {n: weights[n].shape for n in self.names}, self.max_norm, self.max_weight)
            self._round = _Round(uploads, header, messages.pack_arrays(weights))
            self._selecting, self._assigned = True, {}
            enough_since = None
            while not stop.is_set():
                n = len(self._waiting)
                if n >= target:
                    break
                if n >= k:
                    enough_since = enough_since or time.monotonic()
                    if time.monotonic() - enough_since >= self.live.selection_window:
                        break
                else:
                    enough_since = None
                self._cond.wait(0.2)
            if stop.is_set():
                self._selecting = self._in_service = False
                self._cond.notify_all()
                return None
            candidates = sorted(self._waiting)
            # Over-selection in expectation: ⌈K × overselect⌉ drawn on average, the first K reports
            # count, so a device or two that drop out do not abandon the round (q is recorded).
            q = sampling.rate(target, len(candidates))
            chosen = sampling.poisson(self.session.sampling, candidates, q, round_num)
            rnd = self._round
            for device_id in chosen:
                task = Task(uuid.uuid4().hex, device_id, round_num)
                uploads.tasks[task.task_id] = task
                self._assigned[device_id] = task
            rnd.order, selected_at = chosen, time.monotonic()
            if self.secagg is not None:
                rnd.secure = SecureCollection(chosen, UpdateCodec.from_dict(header["codec"]), k, self.secagg.threshold)
            self._selecting = False
            self._cond.notify_all()
            on_event(f"round {round_num}: selected {len(chosen)} of {len(candidates)} checked-in devices")
            deadline = selected_at + self.live.report_deadline
            if rnd.secure is not None:
                reports, mean, metric_sums = self._secure_stages(rnd.secure, deadline, stop, round_num, on_event)
            else:
                goal = min(k, len(chosen))  # the report goal: K, or every drawn device if fewer were drawn
                while len(uploads.accepted) < goal and time.monotonic() < deadline and not stop.is_set():
                    self._cond.wait(min(0.2, max(deadline - time.monotonic(), 0.0)))
                uploads.closed = True
                reports = [d for d in rnd.order if d in uploads.accepted]
            closed_at = time.monotonic()
        if len(reports) < math.ceil(self.live.min_report_fraction * k):
            raise RoundAbandoned(f"round {round_num}: {len(reports)} of {k} reports before the deadline; "
                                 "abandoned, the model is unchanged")
        if rnd.secure is not None:
            state = self.parts.apply_mean(self.session.state, mean)
            metrics = live_metrics([metric_sums])
        else:
            updates = [uploads.accepted[d] for d in reports]
            state, _ = self.parts.apply(self.session.state, [u.delta for u in updates], [u.weight for u in updates])
            metrics = live_metrics([u.metrics for u in updates])
        applied_at = time.monotonic()
        metrics.update(clients=len(reports), available_devices=len(candidates), population=len(self.seen),
                       round_seconds=time.perf_counter() - t0, live=1.0)
        selection = _Selection(reports, len(candidates), len(self.seen), eligible=len(candidates), rate=q)
        result = self.session.record_round(state, metrics, selection, time.perf_counter() - t0,
                                           total_rounds=total_rounds)
        on_event(f"round {round_num}: selection {selected_at - started_at:.2f} s, devices "
                 f"{closed_at - selected_at:.2f} s, server update {applied_at - closed_at:.2f} s, "
                 f"checkpoint and publish {time.monotonic() - applied_at:.2f} s")
        return result

    def evaluate(self, version: str, *, stop: threading.Event | None = None, on_event=lambda msg: None) -> dict | None:
        """Evaluates a published candidate on the devices and decides on it (``federated/live_eval.py``)."""
        return self.evaluation.run(version, stop=stop, on_event=on_event)

@dataclass(frozen=True)
class _Selection:  # federated.population.Selection's fields; that module imports the device store
    device_ids: list[str]
    available: int
    population: int
    eligible: int | None = None  # the checked-in eligible devices the draw was over
    rate: float | None = None  # its Poisson rate q


def live_metrics(reports: list[dict]) -> dict[str, float]:
    """The round's training metrics from the devices' sums, named as TFF's simulation names them."""
    total = {k: sum(float(r.get(k, 0.0)) for r in reports)
             for k in ("loss_x_examples", "examples", "tokens", "correct", "batches")}
    return {"loss": total["loss_x_examples"] / max(total["examples"], 1.0),
            "accuracy_without_pad": total["correct"] / max(total["tokens"], 1.0),
            "num_tokens": total["tokens"], "num_examples": total["examples"], "num_batches": total["batches"]}


def _raw_process(rounds):
    return getattr(rounds, "process", rounds)


def _trainable_names(session) -> list[str]:
    from lm.model import trainable_names

    return trainable_names(session.model_config)


