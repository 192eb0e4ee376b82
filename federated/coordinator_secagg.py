"""Secure aggregation on the coordinator, mixed into ``Coordinator``: the ``SecureAggregation`` call
and the round driver's four stages (``federated/live_secagg.py`` holds the stages' bookkeeping).

A device's secure upload arrives as one held-open call per stage; the round driver waits each
stage out under the coordinator's lock, closes it, and decodes the survivors' masked sum.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from common import messages
from common.secagg import SecAggError
from federated.live_secagg import STAGES, SecureCollection
from federated.service import messages_hold_seconds
from federated.uploads import RoundAbandoned

if TYPE_CHECKING:
    from federated.coordinator import Coordinator

    _Base = Coordinator
else:
    _Base = object

log = logging.getLogger("fedkb.coordinator")


class SecureRounds(_Base):
    """The coordinator's secure-aggregation handler and stages (Bonawitz et al. 2017)."""

    def secure_aggregation(self, request: bytes, context=None) -> bytes:
        """One stage of a device's secure upload, held open until the stage closes (see live_secagg)."""
        device_id = "?"
        try:
            header, arrays = messages.unpack(request)
            device_id = messages.field(header, "device_id", str)
            stage = messages.field(header, "stage", str)
            task_id = messages.field(header, "task_id", str)
            self._authorize(device_id, context)
            hold_until = time.monotonic() + messages_hold_seconds(context)
            with self._cond:
                rnd = self._round
                if rnd is None or rnd.secure is None:
                    raise messages.MessageError("no secure round is open")
                task = rnd.uploads.tasks.get(task_id)
                if task is None or task.device_id != device_id:
                    raise messages.MessageError("not a task of this round given to this device")
                sa = rnd.secure
                sa.submit(device_id, stage, header, arrays)
                self._cond.notify_all()
                if stage == "unmask":
                    return messages.pack({"status": "ok"})
                while not sa.closed(stage) and not sa.failed and time.monotonic() < hold_until:
                    self._cond.wait(max(0.0, min(1.0, hold_until - time.monotonic())))
                if sa.closed(stage):
                    reply, out = sa.reply(device_id, stage)
                elif sa.failed:
                    reply, out = {"status": "failed", "reason": f"secure aggregation failed: {sa.failed}"}, {}
                else:
                    reply, out = {"status": "pending"}, {}
            return messages.pack(reply, out)
        except messages.MessageError as exc:
            reason = str(exc)
            self._refused(device_id, reason)
            log.warning("refused a secure-aggregation message from device %s: %s", device_id, reason)
            return messages.pack({"status": "failed", "reason": reason})

    def _secure_stages(self, sa: SecureCollection, deadline: float, stop: threading.Event, round_num: int, on_event):
        """Runs the four stages (under the lock, which each wait releases); returns survivors, mean, metrics."""
        for stage in STAGES:
            until = deadline if stage == "keys" else time.monotonic() + self.live.stage_timeout
            while not sa.complete() and time.monotonic() < until and not stop.is_set():
                self._cond.wait(min(0.2, max(until - time.monotonic(), 0.0)))
            if stop.is_set():
                sa.failed = "the coordinator is stopping"
                self._cond.notify_all()
                raise RoundAbandoned(f"round {round_num}: stopped during secure aggregation")
            try:
                sa.close_stage()
            except SecAggError as exc:
                raise RoundAbandoned(f"round {round_num}: {exc}; abandoned, the model is unchanged") from None
            finally:
                self._cond.notify_all()
            if stage == "keys":
                on_event(f"round {round_num}: secure aggregation among {len(sa.server.roster)} devices, "
                         f"t={sa.server.threshold}")
        dropped = len(sa.server.sharers) - len(sa.server.survivors)
        if dropped:
            on_event(f"round {round_num}: {dropped} device(s) dropped after sharing keys; their masks were "
                     "removed through their peers' shares")
        mean, _, metric_sums = sa.codec.decode(sa.total)
        return sa.survivors(), mean, metric_sums
