"""A device agent whose wall clock is ``--skew-hours`` off (for the clock-skew fault test).

``python -m tests.federated.skewed_agent --skew-hours H --device-dir DIR --server HOST:PORT [--rounds N]``

Before the agent's code is imported, this process's wall clock is shifted as on a device whose clock is
wrong: ``time.time``, ``time.time_ns`` and ``datetime``'s ``now``, ``utcnow`` and ``today`` (so its log
lines and anything it timestamps carry the device's time). The monotonic clock is not shifted: it has no
epoch to be wrong about. gRPC's Python layer keeps the real clock, because it turns a call's timeout into
an absolute deadline with ``time.time()`` that its C core reads back with the C library's clock: on a
real device both halves are skewed together and the deadline comes out right, while shifting only the
Python half would make every call expire at once (clock behind) or hours late (clock ahead).
"""

import argparse
import datetime as dt
import sys
import time
import types


def skew_wall_clock(hours: float) -> None:
    import grpc._channel
    import grpc._common
    import grpc._utilities

    real = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
    for module in (grpc._channel, grpc._common, grpc._utilities):
        module.time = real
    offset = hours * 3600.0
    real_time, real_ns = time.time, time.time_ns
    time.time = lambda: real_time() + offset
    time.time_ns = lambda: real_ns() + int(offset * 1e9)

    class SkewedDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls.fromtimestamp(time.time(), tz)

        @classmethod
        def utcnow(cls):
            return cls.fromtimestamp(time.time(), dt.UTC).replace(tzinfo=None)

        @classmethod
        def today(cls):
            return cls.fromtimestamp(time.time())

    dt.datetime = SkewedDatetime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skew-hours", type=float, required=True)
    args, rest = parser.parse_known_args()
    skew_wall_clock(args.skew_hours)
    from keyboard.agent_process import main as agent_main  # imported after the skew, as a device's code would run

    sys.exit(agent_main(rest))


if __name__ == "__main__":
    main()
