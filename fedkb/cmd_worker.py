"""``fedkb worker``: TFF's executor service on this host, for ``fedkb train --workers``.

A round's clients are split across the workers by TFF's mergeable-computation context
(``federated.runtime.connect_context``); each worker trains its share and sums it, and the
partial sums are merged. Workers hold no state between calls, so they can be started and
stopped freely between rounds.

The executor service is unauthenticated: whoever reaches it can run TensorFlow graphs in it and
sees the clients' data of the rounds it serves. So there is no default address: ``--listen``
names the one interface to serve on, and the worker itself stays in a network namespace of its
own behind a relay bound to exactly that address (``federated/isolation.py``).
"""

from __future__ import annotations

import argparse
import signal
import sys

from common.layout import Home
from fedkb.options import UserError

LISTEN_HELP = ("HOST:PORT to serve on, for example a private interface (10.0.0.5:8001), or 127.0.0.1:8001 "
               "behind an SSH tunnel; 0.0.0.0:8001 serves every interface")
WARNING = ("fedkb worker: WARNING: TFF's executor service is unauthenticated and unencrypted: anyone who can reach "
           "{address} can run TensorFlow graphs on this host and read the clients' data of the rounds it serves. "
           "Make it reachable by the coordinator only (a private interface, a firewall, or a tunnel).")


def cmd_worker(home: Home, args: argparse.Namespace) -> None:
    if args.listen is None:
        raise UserError(f"`fedkb worker` needs --listen HOST:PORT ({LISTEN_HELP}); there is no default, because "
                        "the executor service it starts is unauthenticated")
    print(WARNING.format(address=args.listen), file=sys.stderr, flush=True)
    from federated.isolation import is_wildcard, split_host_port
    from federated.runtime import Worker, wait_until_serving

    worker = Worker(listen=args.listen, max_concurrent_computation_calls=args.max_concurrent)
    try:
        wait_until_serving(worker, timeout=120)
        reach = f"THIS-HOST:{worker.port}" if is_wildcard(split_host_port(args.listen)[0]) else worker.target
        print(f"fedkb worker: TFF executor service on {args.listen} (worker_binary pid {worker.process.pid}); "
              f"use `fedkb train --workers {reach},...`; Ctrl-C stops it", flush=True)
        code = worker.process.wait()
        if code not in (0, -signal.SIGINT):
            print(f"fedkb worker: worker_binary exited with status {code}", file=sys.stderr)
    finally:
        worker.stop()


def _listen_address(value: str) -> str:
    from federated.isolation import split_host_port

    try:
        split_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--listen: {exc}") from None
    return value


def add_parsers(sub) -> None:
    p = sub.add_parser("worker", help="serve TFF's executor for `fedkb train --workers` (one per host)")
    p.add_argument("--listen", type=_listen_address, default=None, metavar="HOST:PORT", help=LISTEN_HELP)
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="client computations run at once (default: the number of cores)")
    p.set_defaults(func=cmd_worker)
