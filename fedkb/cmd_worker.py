"""``fedkb worker``: TFF's executor service on this host, for ``fedkb train --workers``.

A round's clients are split across the workers by TFF's mergeable-computation context
(``federated.runtime.connect_context``); each worker trains its share and sums it, and the
partial sums are merged. Workers hold no state between calls, so they can be started and
stopped freely between rounds.
"""

from __future__ import annotations

import argparse
import signal
import sys

from common.layout import Home


def cmd_worker(home: Home, args: argparse.Namespace) -> None:
    from federated.runtime import Worker, wait_until_serving

    worker = Worker(port=args.port, max_concurrent_computation_calls=args.max_concurrent)
    try:
        wait_until_serving(worker, timeout=120)
        print(f"fedkb worker: TFF executor service on port {worker.port} (worker_binary pid {worker.process.pid}); "
              f"use `fedkb train --workers HOST:{worker.port},...`; Ctrl-C stops it", flush=True)
        code = worker.process.wait()
        if code not in (0, -signal.SIGINT):
            print(f"fedkb worker: worker_binary exited with status {code}", file=sys.stderr)
    finally:
        worker.stop()


def add_parsers(sub) -> None:
    p = sub.add_parser("worker", help="serve TFF's executor for `fedkb train --workers` (one per host)")
    p.add_argument("--port", type=int, required=True, help="TCP port to serve on (all interfaces)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="client computations run at once (default: the number of cores)")
    p.set_defaults(func=cmd_worker)
