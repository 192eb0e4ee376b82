"""Live rounds, the coordinator's side: ``fedkb serve`` (the coordinator service), and the parsers of
``fedkb device run`` and ``fedkb devices run`` (their commands are in ``fedkb/cmd_device_agents.py``).

``serve`` runs the TFF learning process and the gRPC coordinator in one process; it never opens a
device's directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import threading

from common.layout import Home
from common.messages import DEFAULT_ADDRESS as DEFAULT_LISTEN
from common.messages import is_loopback


def cmd_serve_live(home: Home, args: argparse.Namespace) -> None:
    from rich.console import Console

    from fedkb.cmd_eval import tff_runtime
    from fedkb.options import UserError, privacy_config_from, train_config_from

    console = Console(highlight=False, soft_wrap=True)
    log = lambda msg: console.print(f"[dim]{dt.datetime.now():%H:%M:%S}[/] {msg}")  # noqa: E731
    if not home.tokenizer_model.is_file():
        raise UserError(f"no tokenizer in {home.tokenizer}; run `fedkb tokenizer train` first")
    train = train_config_from(args)
    privacy = privacy_config_from(args)
    server_tls = _server_tls(home, args, log)
    with tff_runtime(home, console, workers=args.workers):
        from federated.configs import LiveConfig
        from federated.coordinator import Coordinator
        from federated.program import Session
        from federated.service import serve
        from federated.uploads import RoundAbandoned

        session = Session(home, train, privacy=privacy, publish_every=args.publish_every,
                          pretrained=not args.no_pretrained, live=True)
        coordinator = Coordinator(session, LiveConfig(overselect=args.overselect,
                                                      selection_window=args.selection_window,
                                                      report_deadline=args.report_deadline,
                                                      stage_timeout=args.stage_timeout,
                                                      eval_min_devices=args.eval_min_devices,
                                                      eval_deadline=args.eval_deadline,
                                                      promotion_threshold=args.threshold))
        server, port = serve(coordinator, args.listen, tls=server_tls)
        host = args.listen.rsplit(":", 1)[0]
        if server_tls is not None:
            log(f"mutual TLS: devices present the credential `fedkb serve --init-tls` issued them ({home.tls})")
        log(f"coordinator listening on {host}:{port}; round {session.done} done; each round selects "
            f"{coordinator.live.overselect:g} x {train.clients_per_round} checked-in devices "
            f"(`fedkb devices run --server {host}:{port}` starts device agents; Ctrl-C stops)")
        if args.port_file:
            from common.atomic import atomic_write

            atomic_write(args.port_file, f"{port}\n".encode())
        stop = threading.Event()
        try:
            while args.max_rounds is None or session.done < args.max_rounds:
                try:
                    r = coordinator.run_round(total_rounds=args.max_rounds, stop=stop, on_event=log)
                except RoundAbandoned as exc:
                    log(str(exc))
                    continue
                m = r.metrics
                log(f"round {r.round_num}: loss {m['loss']:.3f}, {len(r.clients)} devices reported, "
                    f"{r.seconds:.1f} s" + (f"; published {r.published}" if r.published else ""))
                if r.published:  # devices score it on their held-out splits; only sums come back
                    coordinator.evaluate(r.published, stop=stop, on_event=log)
                for line in refusal_lines(coordinator)[0]:
                    log(f"[yellow]{line}[/]")
        except KeyboardInterrupt:
            log(f"stopped after round {session.done}; the state is saved and `fedkb serve` resumes from it")
        finally:
            stop.set()
            server.stop(grace=1).wait()


def refusal_lines(coordinator, *, name_late: bool = True) -> tuple[list[str], int]:
    """The refused uploads, evaluation reports and version requests since the last call, each naming its
    device, and how many were late uploads (expected with over-selection: counted in one line, naming the
    devices if ``name_late``)."""
    with coordinator._cond:
        refusals, coordinator.refusals = coordinator.refusals, []
    late = [d for d, reason in refusals if "(late" in reason]
    lines = [f"refused a message from {d}: {reason}" for d, reason in refusals if "(late" not in reason]
    if late and name_late:
        lines.append(f"{len(late)} late uploads refused (over-selected devices that finished after the report "
                     f"goal): {', '.join(late)}")
    return lines, len(late)


def run_live(home: Home, train, privacy, *, rounds: int, publish_every: int, pretrained: bool, devices: int | None,
             processes: int, log, live_config=None, conditions: str = "model") -> None:
    """``fedkb demo --live``'s training stage: a coordinator here, agents for ``devices`` devices (None: all),
    each reporting eligibility drawn from its own availability model, ``rounds`` rounds."""
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.program import Session
    from federated.service import serve
    from federated.uploads import RoundAbandoned
    from fedkb.options import UserError

    session = Session(home, train, privacy=privacy, publish_every=publish_every, pretrained=pretrained, live=True)
    if session.done >= rounds:
        log(f"   {session.done} rounds already done")
        return
    coordinator = Coordinator(session, live_config or LiveConfig())
    server, port = serve(coordinator, "127.0.0.1:0")
    count = ["--count", str(devices)] if devices else []
    evaluate_live = devices is None or devices >= coordinator.live.eval_min_devices
    if not evaluate_live:
        log(f"   {devices} devices are fewer than the {coordinator.live.eval_min_devices} that live evaluation "
            "needs to release sums: new versions are decided by the rollout stage instead")
    agent_log_path = home.root / "agents.log"  # a file: a pipe that nobody reads fills up and stalls the agents
    with open(agent_log_path, "a") as agent_log:
        agents = subprocess.Popen(
            [sys.executable, "-m", "fedkb.cli", "--home", str(home.root), "devices", "run", *count,
             "--processes", str(processes), "--server", f"127.0.0.1:{port}", "--conditions", conditions],
            stdout=subprocess.DEVNULL, stderr=agent_log, text=True)
        log(f"   coordinator on 127.0.0.1:{port}; {devices or 'all'} device agents in {processes} processes train on "
            f"their own logs and upload only their updates"
            + ("; each device is eligible as its own availability model draws at its local hour"
               if conditions == "model" else ""))
        late = 0
        try:
            while session.done < rounds:
                if agents.poll() is not None:
                    tail = agent_log_path.read_text(errors="replace")[-1000:]
                    raise UserError(f"the device agents exited ({agents.returncode}); "
                                    f"the end of {agent_log_path}:\n{tail}")
                try:
                    r = coordinator.run_round(total_rounds=rounds)
                except RoundAbandoned as exc:
                    log(f"   {exc}")
                    continue
                lines, n_late = refusal_lines(coordinator, name_late=False)
                late += n_late
                for line in lines:
                    log(f"   {line}")
                if r.round_num == 1 or r.round_num % 10 == 0 or r.published:
                    log(f"   round {r.round_num}/{rounds}: loss {r.metrics['loss']:.3f}, {len(r.clients)} devices "
                        f"reported, {r.seconds:.1f} s" + (f"; published {r.published}" if r.published else "")
                        + (f"; {late} late uploads from over-selected devices refused" if late else ""))
                    late = 0
                if r.published and evaluate_live:  # devices score it on their held-out splits; only sums come back
                    coordinator.evaluate(r.published, on_event=lambda msg: log(f"   {msg}"))
        finally:
            server.stop(grace=1)
            if agents.poll() is None:
                agents.terminate()
                try:
                    agents.wait(30)
                except subprocess.TimeoutExpired:
                    agents.kill()


def _server_tls(home: Home, args: argparse.Namespace, log):
    """The coordinator's TLS files: made by --init-tls, given with --tls-cert/--tls-key/--tls-ca, or
    the home's; required for any address but loopback, and used there too with --tls."""
    from federated import tls
    from fedkb.options import UserError

    try:
        if args.init_tls:
            from keyboard.store import list_device_dirs

            tls.init_ca(home.tls, args.tls_host or [])
            dirs = list(list_device_dirs(home.devices))
            for d in dirs:
                tls.issue_device(home.tls, d)
            log(f"made a CA and the coordinator's certificate in {home.tls}, and enrolled {len(dirs)} devices "
                "(devices/<id>/tls/)")
        if args.tls_cert or args.tls_key or args.tls_ca:
            if not (args.tls_cert and args.tls_key and args.tls_ca):
                raise UserError("--tls-cert, --tls-key and --tls-ca go together")
            return tls.ServerTLS.load(args.tls_cert, args.tls_key, args.tls_ca)
        if args.init_tls or args.tls or not is_loopback(args.listen):
            return tls.ServerTLS.from_dir(home.tls)
    except tls.TLSError as exc:
        raise UserError(f"{exc}" + ("" if is_loopback(args.listen) else
                                    f" ({args.listen} is not loopback, so the coordinator serves only TLS)")) from None
    return None


def add_parsers(sub) -> None:
    from federated.configs import LiveConfig, RolloutConfig
    from fedkb import cmd_device_agents
    from fedkb.cmd_demo import cmd_serve
    from fedkb.options import add_config_arguments, add_train_options

    p = sub.add_parser("serve", help="the coordinator of live rounds: devices check in, train on their own data "
                                     "and upload updates (--simulate: the in-process loop)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to serve on (default {DEFAULT_LISTEN}; port 0 picks a free one)")
    p.add_argument("--port-file", default=None, help="write the port served on to this file once listening")
    t = p.add_argument_group("TLS (required for any --listen address but loopback)")
    t.add_argument("--init-tls", action="store_true",
                   help="make a CA and the coordinator's certificate in server/tls/ and enrol every device with a "
                        "client certificate (devices/<id>/tls/), then serve mutual TLS")
    t.add_argument("--tls-host", action="append", default=None, metavar="HOST",
                   help="--init-tls: a host name or IP the coordinator's certificate is valid for (repeatable)")
    t.add_argument("--tls", action="store_true", help="serve mutual TLS on loopback too (with server/tls/)")
    t.add_argument("--tls-cert", default=None, help="the coordinator's certificate (PEM) instead of server/tls/'s")
    t.add_argument("--tls-key", default=None, help="its private key (PEM)")
    t.add_argument("--tls-ca", default=None, help="the CA that issued the devices' client certificates (PEM)")
    p.add_argument("--simulate", action="store_true",
                   help="run rounds in this process on the devices' logs instead (the simulation)")
    p.add_argument("--interval", type=float, default=5.0, help="--simulate: seconds between eligibility checks")
    p.add_argument("--max-rounds", type=int, default=None, help="stop after this many rounds in all")
    add_config_arguments(p, RolloutConfig, ("threshold",))
    add_config_arguments(p, LiveConfig, ("overselect", "selection_window", "report_deadline", "stage_timeout",
                                         "eval_min_devices", "eval_deadline"))
    p.add_argument("--eval-devices", type=int, default=50, help="--simulate: devices that evaluate each new version")
    add_train_options(p)
    p.set_defaults(func=lambda home, args: (cmd_serve if args.simulate else cmd_serve_live)(home, args))

    dev = sub.add_parser("device", help="one device: its agent for live rounds, or deleting its data")
    dev_sub = dev.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    p = dev_sub.add_parser("run",
                           help="check in with the coordinator, train on this device's log when selected, upload")
    p.add_argument("--device", action="append", required=True, metavar="ID", help="device id (repeat to host several)")
    cmd_device_agents.agent_options(p)
    p.set_defaults(func=cmd_device_agents.cmd_device_run)
    from fedkb.cmd_keyboard import add_delete_parser

    add_delete_parser(dev_sub)

    devs = sub.add_parser("devices", help="device agents for the seeded population")
    devs_sub = devs.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    p = devs_sub.add_parser("run", help="start agents for the population's devices as separate processes")
    p.add_argument("--count", type=int, default=None, help="the first N devices (default: all)")
    p.add_argument("--processes", type=int, default=4, help="OS processes hosting them (default 4)")
    p.add_argument("--threads", type=int, default=1, help="TensorFlow threads per process (default 1)")
    cmd_device_agents.agent_options(p)
    p.set_defaults(func=cmd_device_agents.cmd_devices_run)
