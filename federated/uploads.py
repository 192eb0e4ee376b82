"""What the coordinator checks in an upload before it counts (numpy only, so it is quick to test).

An upload counts only if it answers a task of the open round that was given to this device and
not yet answered, and its delta has exactly the model's trainable tensors, each float32 of the
right shape and finite, with a global L2 norm within what the client settings allow (each local
step moves the weights by at most lr x clip) and a weight within bounds. A round with too few
uploads that count is abandoned (``RoundAbandoned``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from common import messages


class RoundAbandoned(Exception):
    """Too few devices reported before the deadline; the learning state is unchanged."""


@dataclass
class Task:
    task_id: str
    device_id: str
    round_num: int
    answered: bool = False
    digest: str | None = None  # sha256 of the accepted upload message: the same bytes again are a resend


@dataclass
class Accepted:
    delta: list[np.ndarray]  # in the model's trainable order
    weight: float
    metrics: dict[str, float]


@dataclass
class RoundUploads:
    """One round's tasks and the uploads accepted for them."""

    round_num: int
    shapes: dict[str, tuple]  # trainable name -> shape, in the model's order
    max_norm: float
    max_weight: float
    tasks: dict[str, Task] = field(default_factory=dict)  # by task id
    accepted: dict[str, Accepted] = field(default_factory=dict)  # by device id
    closed: bool = False

    def resent(self, header: dict, digest: str) -> bool:
        """Whether this message is the very one already accepted for its task: a device sending it again
        because the connection failed before the reply reached it. It counted once; it is not refused."""
        task = self.tasks.get(header.get("task_id"))
        return task is not None and task.answered and task.device_id == header.get("device_id") \
            and task.digest == digest

    def accept(self, header: dict, arrays: dict[str, np.ndarray], digest: str | None = None) -> str:
        """Records the upload (``digest``: its message's sha256) and returns its device id; ``MessageError``
        says why it cannot count."""
        device_id = messages.field(header, "device_id", str)
        task_id = messages.field(header, "task_id", str)
        task = self.tasks.get(task_id)
        if task is None:
            raise messages.MessageError("not a task of the current round (late, or never selected)")
        if task.device_id != device_id:
            raise messages.MessageError(f"task {task_id[:8]} was given to another device")
        if task.answered:
            raise messages.MessageError(f"task {task_id[:8]} was already answered (replayed upload)")
        if self.closed:
            raise messages.MessageError(f"round {self.round_num} closed before this upload arrived (late)")
        weight = float(messages.field(header, "weight", (int, float)))
        metrics = messages.field(header, "metrics", dict)
        names = list(self.shapes)
        if set(arrays) != set(names):
            missing, extra = sorted(set(names) - set(arrays)), sorted(set(arrays) - set(names))
            raise messages.MessageError(f"the delta's tensors differ from the model's "
                                        f"(missing {missing}, extra {extra})")
        for name in names:
            a = arrays[name]
            if a.dtype != np.float32 or tuple(a.shape) != tuple(self.shapes[name]):
                raise messages.MessageError(f"{name} is {a.dtype}{list(a.shape)}; the model's is "
                                            f"float32{list(self.shapes[name])}")
            if not np.isfinite(a).all():
                raise messages.MessageError(f"{name} is not finite")
        norm = math.sqrt(sum(float(np.sum(np.square(arrays[n], dtype=np.float64))) for n in names))
        if norm > self.max_norm * (1 + 1e-4):
            raise messages.MessageError(f"update norm {norm:.4g} is above the bound {self.max_norm:.4g} "
                                        "(client lr x clip x local steps)")
        if not (math.isfinite(weight) and 0 <= weight <= self.max_weight):
            raise messages.MessageError(f"weight {weight} is outside [0, {self.max_weight:g}]")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in metrics.values()):
            raise messages.MessageError("metrics must be finite numbers")
        task.answered, task.digest = True, digest
        self.accepted[device_id] = Accepted([arrays[n] for n in names], weight, dict(metrics))
        return device_id
