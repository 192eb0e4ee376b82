"""Live rounds, the devices' side: ``fedkb device run`` and ``fedkb devices run``.

``device run`` is the agent of one or more devices, in this process, with TensorFlow only.
``devices run`` starts agents for the seeded population as separate processes, each hosting a
share of the devices, and ends them with itself. Their parsers are registered by ``fedkb/cmd_live.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from common.layout import DeviceLayout, Home
from common.messages import DEFAULT_ADDRESS, is_loopback


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")


def cmd_device_run(home: Home, args: argparse.Namespace) -> None:
    """Hosts the agents of ``--device`` ids (one thread each) until Ctrl-C or ``--rounds`` uploads each."""
    from fedkb.options import UserError

    _configure_logging(args.verbose)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keyboard.agent import AgentConfig, DeviceAgent, channel_for, connect
    from keyboard.conditions import host_conditions, modelled_conditions

    dirs = [home.device(d) for d in args.device]
    for d in dirs:
        if not DeviceLayout(d).db.is_file():
            raise UserError(f"no device {d.name!r} in {home.devices}")
    stop, config = threading.Event(), AgentConfig(max_backoff=args.max_backoff)
    conditions = {d: modelled_conditions(d) if args.conditions == "model" else host_conditions for d in dirs}
    shared = None if args.tls or not is_loopback(args.server) else connect(args.server, None, config)
    # over TLS each device presents its own credential; on loopback without it they share one channel
    agents = [DeviceAgent(d, shared or channel_for(d, args.server, True, config), conditions=conditions[d],
                          config=config) for d in dirs]
    threads = [threading.Thread(target=a.run, args=(stop,), kwargs={"max_rounds": args.rounds}, daemon=True,
                                name=a.device_id) for a in agents]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
    finally:
        stop.set()
    for a in agents:
        print(f"{a.device_id}: {a.stats.tasks} tasks, {a.stats.uploads_accepted} uploads accepted, "
              f"{a.stats.uploads_refused} refused" + (" (its owner opted out of federated rounds)"
                                                     if a.stats.opted_out else ""), flush=True)


def cmd_devices_run(home: Home, args: argparse.Namespace) -> None:
    """Agents for the seeded population, as ``--processes`` OS processes hosting a share each."""
    from common import die_with_parent
    from fedkb.options import UserError
    from keyboard.store import list_device_dirs

    ids = [d.name for d in list_device_dirs(home.devices)]
    if not ids:
        raise UserError(f"no devices in {home.devices}; run `fedkb population seed` first")
    ids = ids[: args.count] if args.count else ids
    n = max(1, min(args.processes, len(ids)))
    shares = [ids[i::n] for i in range(n)]
    procs = []
    for share in shares:
        cmd = [sys.executable, "-m", "fedkb.cli", "--home", str(home.root), "device", "run", "--server", args.server,
               "--conditions", args.conditions, "--max-backoff", str(args.max_backoff)]
        for d in share:
            cmd += ["--device", d]
        if args.rounds is not None:
            cmd += ["--rounds", str(args.rounds)]
        cmd += ["--verbose"] * args.verbose + ["--tls"] * args.tls
        # Each process trains one device at a time on one TensorFlow thread: P processes share the cores.
        env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(args.threads), "TF_NUM_INTEROP_THREADS": "1"}
        procs.append(subprocess.Popen(die_with_parent.command(cmd, signal.SIGTERM), env=env))
    print(f"fedkb devices: {len(ids)} device agents in {n} processes, coordinator {args.server} (Ctrl-C stops)",
          flush=True)
    try:
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    bad = [c for c in codes if c not in (0, 130, -signal.SIGINT, -signal.SIGTERM)]
    if bad:
        raise UserError(f"{len(bad)} device processes failed (exit codes {bad})")


def agent_options(p) -> None:
    from common.config_options import add_config_arguments
    from keyboard.agent_config import AgentConfig

    p.add_argument("--server", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                   help=f"the coordinator (default {DEFAULT_ADDRESS})")
    add_config_arguments(p, AgentConfig, ("max_backoff",))
    p.add_argument("--rounds", type=int, default=None, help="stop after this many accepted uploads per device")
    p.add_argument("--verbose", action="store_true", help="log each check-in and upload")
    p.add_argument("--conditions", choices=("host", "model"), default="host",
                   help="what a device reports as its eligibility: this machine's (host: on mains power counts as "
                        "charging, default) or a draw from the device's own seeded availability model at the real "
                        "hour (model: devices standing in for phones, most eligible at their local night)")
    p.add_argument("--tls", action="store_true",
                   help="mutual TLS with each device's credential (devices/<id>/tls/, from `fedkb serve --init-tls`); "
                        "always on for a coordinator that is not on loopback")
