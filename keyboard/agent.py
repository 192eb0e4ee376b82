"""The device agent: what runs on a device for live federated rounds.

It checks in with the coordinator (``fedkb serve``) with its eligibility, and when it is
selected it trains the task's weights on its own log in this process, with TensorFlow alone
(``keyboard.client_work``, the code personalization also trains with), and uploads only the
model delta and its metric sums. Its raw text, examples and tokenizer cache never leave the
device directory. It pulls the promoted version (``latest``) at start, after each round it joined
and whenever the coordinator names a newer one, and installs it only if it verifies against the
pinned key (``keyboard/pull.py``). Given an evaluation task, it scores the candidate on its own
held-out split (``keyboard/evaluate.py``) and sends only named sums. Connection failures are
retried with capped exponential back-off, so a coordinator restart costs a device nothing but a wait.

One process can host several devices (``fedkb devices run``): each device is a thread here with
its own directory; nothing of one device is handed to another. The process the keyboard starts for
its agent is ``keyboard/agent_process.py``; the conditions an agent reports are ``keyboard/conditions.py``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from common import live_counts, messages
from common.errors import ConfigError
from common.layout import DeviceLayout
from keyboard import client_work, install, pull
from keyboard.agent_config import DEFAULT, FIRST_BACKOFF, AgentConfig
from keyboard.conditions import host_conditions
from keyboard.controls import OptedOut, takes_part
from keyboard.store import Device

log = logging.getLogger("fedkb.agent")
CHECK_IN_TIMEOUT = 120.0  # seconds a check-in may be held open while the coordinator selects
UPLOAD_TIMEOUT = 120.0  # seconds one upload attempt may take
# An upload cut by the network is sent again (the same bytes) until the task's deadline; these codes
# mean the connection failed, not that the coordinator refused the message.
RETRY_UPLOAD_ON = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
                   grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED)
TOKENIZER_CACHE = "federated-tokenizer.model"  # in the device dir: the tokenizer tasks encode with


@dataclass
class AgentStats:
    check_ins: int = 0
    tasks: int = 0
    uploads_accepted: int = 0
    uploads_refused: int = 0
    last_round: int | None = None
    evaluations: int = 0  # evaluation reports the coordinator accepted
    installs: list[str] = field(default_factory=list)  # versions pulled and installed
    refusals: list[str] = field(default_factory=list)
    opted_out: bool = False  # the owner turned federated participation off: the agent stopped


def connect(target: str, tls_dir: Path | None = None, config: AgentConfig = DEFAULT) -> grpc.Channel:
    """A channel to the coordinator: mutual TLS with the device's credential in ``tls_dir``
    (``device.pem``, ``device.key`` and the CA's ``ca.pem``, issued at enrolment), which any
    address but loopback requires."""
    opts = [("grpc.max_send_message_length", messages.MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", messages.MAX_MESSAGE_BYTES),
            # a restarted coordinator is found within the agent's own longest back-off, not gRPC's 2 minutes
            ("grpc.max_reconnect_backoff_ms", int(config.max_backoff * 1000))]
    if tls_dir is None:
        if not messages.is_loopback(target):
            raise ConfigError(f"{target} is not loopback: the connection needs TLS and this device's credential "
                             "(enrol it with `fedkb serve --init-tls`, then pass --tls)")
        return grpc.insecure_channel(target, opts)
    tls_dir = Path(tls_dir)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=(tls_dir / "ca.pem").read_bytes(),
                                             private_key=(tls_dir / "device.key").read_bytes(),
                                             certificate_chain=(tls_dir / "device.pem").read_bytes())
    except FileNotFoundError as exc:
        raise ConfigError(f"{exc.filename}: missing; this device has no credential (enrol it with "
                         "`fedkb serve --init-tls`)") from None
    return grpc.secure_channel(target, creds, opts)


def channel_for(device_dir: Path, target: str, tls: bool = False,
                config: AgentConfig = DEFAULT) -> grpc.Channel:
    """TLS with the device's own credential when asked or when ``target`` is not loopback."""
    use_tls = tls or not messages.is_loopback(target)
    return connect(target, DeviceLayout(device_dir).tls if use_tls else None, config)


def _live_counts(device: Device) -> dict[str, dict[str, dict[str, int]]]:
    """The device's live counts to report, ``{source: {version: counts}}``: only versions with a finished word.

    They are running totals; the coordinator releases their sum over devices, never one device's.
    """
    out: dict[str, dict[str, dict[str, int]]] = {}
    for source in live_counts.SOURCES:
        kept = {version: counts for version, counts in device.live_counts(source=source).items()
                if version.isascii() and version.isdigit() and counts["words"] > 0}
        if kept:
            out[source] = kept
    return out


class DeviceAgent:
    """One device's side of the round protocol."""

    def __init__(self, device_dir: Path, channel: grpc.Channel, *, conditions=host_conditions,
                 config: AgentConfig = DEFAULT):
        self.device_dir = Path(device_dir)
        self.config = config
        self.device_id = self.device_dir.name
        self.conditions = conditions
        self.stats = AgentStats()
        self._tokenizer_sha: str | None = None
        self.on_stage = lambda stage: None  # called after each secure-aggregation stage this device completes
        self._stop = threading.Event()  # run()'s: ends upload retries too
        self._unreachable: bool | None = None  # last written to the status record (the keyboard shows it)
        call = lambda m: channel.unary_unary(f"/{messages.SERVICE}/{m}")  # noqa: E731  (raw bytes both ways)
        self._check_in, self._upload, self._tokenizer = call("CheckIn"), call("Upload"), call("Tokenizer")
        self._secure = call("SecureAggregation")
        self._version, self._eval_report = call("Version"), call("EvalReport")
        self._refused_versions: set[str] = set()  # pulled, failed to verify: not asked for again

    # -- one exchange each -------------------------------------------------------------------
    def _train_sentences(self) -> list[str]:
        with Device(self.device_dir) as device:
            return device.splits().train

    def _cached_tokenizer_sha(self) -> str | None:
        if self._tokenizer_sha is None:  # hashed once; _tokenizer_for resets it when it writes a new one
            path = self.device_dir / TOKENIZER_CACHE
            self._tokenizer_sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        return self._tokenizer_sha

    def check_in(self) -> tuple[dict, dict]:
        """Tells the coordinator the device is here; raises ``OptedOut`` if its owner turned rounds off."""
        with Device(self.device_dir) as device:  # a count, not the sentences: check-ins repeat every few seconds
            status = device.status()
        if not takes_part(status):  # read at every check-in: the setting may change while the agent runs
            raise OptedOut(f"device {self.device_id}: its owner turned federated training and evaluation off")
        train_sentences = status["train_sentences"]
        header = {"device_id": self.device_id, "eligible": self.conditions(),
                  "train_sentences": train_sentences, "tokenizer_sha256": self._cached_tokenizer_sha(),
                  "model_version": install.read_pointer(self.device_dir)["current"]}
        self.stats.check_ins += 1
        return messages.unpack(self._check_in(messages.pack(header), timeout=CHECK_IN_TIMEOUT))

    def _tokenizer_for(self, sha256: str):
        from tokenizer.vocab import Tokenizer

        path = self.device_dir / TOKENIZER_CACHE
        if self._cached_tokenizer_sha() != sha256:
            _header, arrays = messages.unpack(self._tokenizer(messages.pack({"sha256": sha256}), timeout=60))
            proto = arrays["model"].tobytes()
            if hashlib.sha256(proto).hexdigest() != sha256:
                raise messages.MessageError(f"the coordinator sent a tokenizer that is not {sha256[:12]}")
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(proto)
            tmp.replace(path)
            self._tokenizer_sha = sha256
        return Tokenizer(path.read_bytes(), source=str(path))

    def train(self, task: dict, weights: dict[str, np.ndarray]) -> client_work.ClientUpdate:
        """The task's client work on this device's own train split."""
        from lm.config import ModelConfig

        config = ModelConfig(**task["model"])
        settings = client_work.LocalTraining.from_dict(task["settings"])
        tokenizer = self._tokenizer_for(task["tokenizer_sha256"])
        examples = client_work.round_examples(
            self.device_dir, self._train_sentences(), tokenizer.encode, tokenizer_sha256=tokenizer.sha256,
            sequence_length=config.sequence_length, settings=settings, round_num=task["round"])
        return client_work.client_update(config, weights, examples, settings, round_num=task["round"])

    def upload(self, task: dict, update: client_work.ClientUpdate, *, until: float | None = None) -> dict:
        """Sends the update; a connection that fails is retried with the same message until ``until``
        (``time.monotonic()``; default: the task's deadline from now)."""
        if "secagg" in task:  # only a masked vector leaves, through the four stages
            from keyboard.secure_upload import SecureUploadFailed, secure_upload

            try:
                secure_upload(self._secure, self.device_id, task, update.delta, update.weight, update.metrics,
                              on_stage=self.on_stage, deadline_seconds=float(task.get("deadline_seconds", 600)))
            except SecureUploadFailed as exc:
                return {"accepted": False, "reason": f"secure aggregation: {exc}"}
            return {"accepted": True}
        header = {"task_id": task["task_id"], "device_id": self.device_id, "round": task["round"],
                  "weight": update.weight, "metrics": update.metrics}
        message = messages.pack(header, update.delta)
        until = time.monotonic() + float(task.get("deadline_seconds", 300)) if until is None else until
        delay = 0.5
        while True:
            try:
                reply, _ = messages.unpack(self._upload(message, timeout=UPLOAD_TIMEOUT))
                return reply
            except grpc.RpcError as exc:
                if exc.code() not in RETRY_UPLOAD_ON or time.monotonic() + delay >= until or self._stop.is_set():
                    raise
                log.info("%s: round %s upload failed (%s); sending it again in %.1f s", self.device_id,
                         task["round"], exc.code(), delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def ask_version(self, header: dict) -> tuple[dict, dict[str, np.ndarray]]:
        return messages.unpack(self._version(messages.pack(header), timeout=120))

    def pull(self) -> str | None:
        """Pulls and installs ``latest`` if this device lacks it; returns the installed version's name.

        A version that does not verify is refused (and not asked for again); the device keeps its own.
        """
        before = install.read_pointer(self.device_dir)["current"]
        try:
            latest, now = pull.pull_latest(self.device_dir, self.ask_version)
        except pull.PullRefused as exc:
            log.warning("%s", exc)
            self.stats.refusals.append(str(exc))
            if exc.version is not None:
                self._refused_versions.add(exc.version)
            return before
        if now is not None and now.version != before:
            self.stats.installs.append(now.version)
            log.info("%s: installed version %s (latest is %s)", self.device_id, now.version, latest)
        return now.version if now is not None else None

    def evaluate(self, task: dict) -> dict:
        """Scores the task's candidate (and ``latest``) on this device's held-out split; sends only the sums."""
        from keyboard.evaluate import version_sums

        with Device(self.device_dir) as device:
            heldout = device.splits().heldout
            live = _live_counts(device)
        try:
            sums = {}
            for role, name in (("candidate", task["version"]), ("latest", task.get("baseline"))):
                if name is not None:
                    sums[role] = version_sums(pull.fetch(self.device_dir, self.ask_version, name), heldout)
        except pull.PullRefused as exc:
            log.warning("%s", exc)
            self.stats.refusals.append(str(exc))
            return {"kind": "evaluated", "accepted": False, "reason": str(exc)}
        finally:
            pull.discard(self.device_dir)
        header = {"device_id": self.device_id, "eval_id": task["eval_id"], "version": task["version"], "sums": sums,
                  "live": live}
        reply, _ = messages.unpack(self._eval_report(messages.pack(header), timeout=60))
        if reply.get("accepted"):
            self.stats.evaluations += 1
        else:
            self.stats.refusals.append(str(reply.get("reason")))
        return {**reply, "kind": "evaluated"}

    def step(self) -> dict:
        """One check-in and, if selected, one round's work or one evaluation; returns the last reply."""
        reply, arrays = self.check_in()
        self._record_reachable(True)  # it answered: the status bar says so before this round's work, not after
        if reply.get("kind") == "evaluate":
            return self.evaluate(reply)
        latest = reply.get("latest")
        if latest is not None and latest != install.read_pointer(self.device_dir)["current"] \
                and latest not in self._refused_versions:
            self.pull()
        if reply.get("kind") != "task":
            return reply
        until = time.monotonic() + float(reply.get("deadline_seconds", 300))  # the coordinator's, from receipt
        self.stats.tasks += 1
        update = self.train(reply, arrays)
        answer = self.upload(reply, update, until=until)
        if answer.get("accepted"):
            self.stats.uploads_accepted += 1
            self.stats.last_round = reply["round"]
            with Device(self.device_dir) as device:
                device.set(last_round=reply["round"])
            self.pull()
        else:
            self.stats.uploads_refused += 1
            self.stats.refusals.append(str(answer.get("reason")))
        return {**answer, "kind": "uploaded", "round": reply["round"]}

    def run(self, stop: threading.Event, *, max_rounds: int | None = None) -> AgentStats:
        """Takes part in rounds until ``stop`` is set (or after ``max_rounds`` uploads, or the owner opts out)."""
        try:
            with Device(self.device_dir) as device:  # before the first pull: an opted-out device does not call at all
                if not takes_part(device.status()):
                    raise OptedOut(f"device {self.device_id}: its owner turned federated training and evaluation off")
            return self._run(stop, max_rounds)
        except OptedOut as exc:
            log.info("%s; the agent stops", exc)
            self.stats.opted_out = True
            return self.stats

    def _run(self, stop: threading.Event, max_rounds: int | None) -> AgentStats:
        self._stop = stop
        backoff = FIRST_BACKOFF
        pulled = False
        while not stop.is_set():
            try:
                if not pulled:  # at start, once the coordinator answers
                    self.pull()
                    pulled = True
                reply = self.step()
                backoff = FIRST_BACKOFF
            except grpc.RpcError as exc:  # the coordinator is down or restarting: try again later
                log.info("%s: coordinator unreachable (%s); retrying in %.1f s", self.device_id, exc.code(), backoff)
                self._record_reachable(False)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.config.max_backoff)
                continue
            if reply.get("kind") == "uploaded":
                log.info("%s: round %s upload %s", self.device_id, reply["round"],
                         "accepted" if reply.get("accepted") else f"refused: {reply.get('reason')}")
                if max_rounds is not None and self.stats.uploads_accepted >= max_rounds:
                    break
            elif reply.get("kind") == "retry":
                stop.wait(float(reply.get("after", 1.0)))
        return self.stats

    def _record_reachable(self, reachable: bool) -> None:
        """Writes ``coordinator_unreachable`` to the device's status record when it changes."""
        unreachable = not reachable
        if self._unreachable != unreachable:
            with Device(self.device_dir) as device:
                device.set(coordinator_unreachable=unreachable)
            self._unreachable = unreachable
