"""Crash points for the crash-and-resume tests (nothing happens unless ``FEDKB_CRASH_AT`` is set).

``FEDKB_CRASH_AT=<round>:<stage>`` makes the trainer kill itself with SIGKILL — no cleanup, no
``finally`` — when it reaches that stage of that round: ``checkpoint`` (TFF has written the
state, the seal is not yet on it) or ``publish`` (half of a version's files are written).
"""

from __future__ import annotations

import os
import signal

ENV = "FEDKB_CRASH_AT"


def crash_point(round_num: int, stage: str) -> None:
    if os.environ.get(ENV) == f"{round_num}:{stage}":
        os.kill(os.getpid(), signal.SIGKILL)
