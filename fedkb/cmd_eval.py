"""``fedkb eval``, ``fedkb rollout``, ``fedkb report`` and ``fedkb demo``."""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

from common import artifacts
from common.layout import Home
from federated.configs import EvalConfig, RolloutConfig
from fedkb.options import UserError, add_config_arguments


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@contextmanager
def stage_progress(console):
    """A Rich progress display fed by ``(stage, done, total)`` callbacks."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


@contextmanager
def tff_runtime(home: Home, console, workers: list[str] | None = None, workers_wait: float = 60.0):
    """TFF's runtime: a local worker we start and stop, or the ``fedkb worker`` services at ``workers``
    (each given ``workers_wait`` seconds to answer)."""
    if workers:
        with console.status(f"Connecting to {len(workers)} TFF worker(s)…"):
            import tensorflow_federated as tff

            from federated.runtime import connect_context

            tff.framework.set_default_context(connect_context(workers, startup_timeout=workers_wait))
        console.print(f"Each round's clients are split across the workers at {', '.join(workers)}")
        yield None
        return
    with console.status("Starting TensorFlow Federated…"):
        from federated.runtime import LocalRuntime

        home.logs.mkdir(parents=True, exist_ok=True)
        runtime = LocalRuntime(log_path=home.logs / "worker.log")
        runtime.__enter__()
    try:
        yield runtime
    finally:
        runtime.__exit__(None, None, None)


def do_rollout(home: Home, console, *, threshold: float, devices: int | None, seed: int,
               roll_back_to: str | None = None, reason: str = "", min_live_savings_ratio: float | None = None) -> None:
    from federated import registry
    from federated.rollout import rollout
    from fedkb.options import UserError

    if roll_back_to is not None:
        try:
            record = registry.roll_back(home.models, roll_back_to, reason=reason)
        except (registry.RegistryError, artifacts.ArtifactError) as exc:
            raise UserError(str(exc)) from None
        console.print(f"rolled back from {record['from']} to {roll_back_to}; the signed record lets devices "
                      f"running any version up to {record['upto']} install it")
    with stage_progress(console) as progress:
        report = rollout(home, threshold_points=threshold, devices=devices, seed=seed, progress=progress,
                         decide=roll_back_to is None,
                         min_live_savings_ratio=None if roll_back_to is not None else min_live_savings_ratio)
    if report.guard is not None:
        verdict = "kept" if report.guard["kept"] else f"[red]rolled back to {report.guard['previous']}[/]"
        console.print(f"version {report.guard['latest']}: {verdict} — {report.guard['reason']}")
    for name, decision in report.decisions.items():
        verdict = "[green]promoted[/]" if decision["promoted"] else "[yellow]held back[/]"
        console.print(f"version {name}: {verdict} — {decision['reason']}")
    failed = f", [red]{len(report.failed)} refused the files[/]" if report.failed else ""
    console.print(f"latest is {report.latest}; installed on {report.installed} devices (checksums verified){failed}")
    for device_id, why in list(report.failed.items())[:5]:
        console.print(f"  [red]{device_id}[/]: {why}")


def do_eval(home: Home, console, *, version: str | None, devices: int | None, seed: int,
            references: bool = False, json_path: Path | None = None) -> list:
    import json

    from eval.results import BASELINE_LABELS
    from federated import live_release
    from federated.rollout import run_eval

    if references:
        console.print(f"   --references: every device's train text is pooled into this process to fit the "
                      f"references; they are kept in {home.references} (not server state) and deleting any "
                      "device's data (F8, `fedkb device delete`) deletes them")
    with stage_progress(console) as progress:
        outcomes = run_eval(home, version=version, devices=devices, seed=seed, references=references, progress=progress)
    for o in outcomes:
        r = o.result
        console.print(f"version {o.version}: {r['devices']} devices, {r['predictions']:,} predictions — "
                      f"recall@1 {r['recall_at_1']:.1%}, @3 {r['recall_at_3']:.1%}, @5 {r['recall_at_5']:.1%}; "
                      f"written to {o.path}")
        for name, row in (o.references or {}).get("baselines", {}).items():
            console.print(f"   reference {BASELINE_LABELS.get(name, name)}: recall@1 {row['recall_at_1']:.1%}, "
                          f"@3 {row['recall_at_3']:.1%}, @5 {row['recall_at_5']:.1%}")
        if o.references_path is not None:
            console.print(f"   references written to {o.references_path}")
        for line in live_release.describe(o.live):
            console.print(f"   {line}")
    if any(o.live for o in outcomes):
        console.print(f"   live metrics merged into {home.server / live_release.LIVE_FILE}")
    if json_path is not None and outcomes:
        main = max(outcomes, key=lambda o: o.result["devices"])
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = dict(main.result)
        if main.references is not None:  # labelled and apart: not something that left the devices
            payload["references"] = main.references
        if outcomes[-1].live:  # by the version typed with, as in live_metrics.json
            payload["live_metrics"] = outcomes[-1].live
        json_path.write_text(json.dumps(payload, indent=2))
        console.print(f"JSON: {json_path}")
    return outcomes


def do_report(home: Home, console, html: Path | None) -> Path | None:
    from eval.report import render_terminal, write_html
    from eval.report_load import load_report_data

    data = load_report_data(home.server, references_dir=home.references)
    render_terminal(data, console)
    from eval import audit

    result = audit.load_result(home.server)
    if result is not None:  # `fedkb audit` measured memorization of planted canaries
        audit.render_terminal(result, console)
    if html is not None:
        path = write_html(data, html)
        console.print(f"HTML report: {path}")
        return path
    return None


def _check_devices(devices: int | None) -> None:
    """Refuses ``--devices`` below the release minimum before the runtime starts."""
    from federated.ledger import MIN_RELEASE_DEVICES

    if devices is not None and devices < MIN_RELEASE_DEVICES:
        raise UserError(f"--devices {devices}: evaluation sums are released only from at least {MIN_RELEASE_DEVICES} "
                        "devices (fewer would show each device's own figures); pass --devices "
                        f"{MIN_RELEASE_DEVICES} or more")


def cmd_rollout(home: Home, args: argparse.Namespace) -> None:
    console = _console()
    config = RolloutConfig(threshold=args.threshold, devices=args.devices, seed=args.seed)
    _check_devices(config.devices)
    with tff_runtime(home, console):
        do_rollout(home, console, threshold=config.threshold, devices=config.devices, seed=config.seed,
                   roll_back_to=args.roll_back_to, reason=args.reason,
                   min_live_savings_ratio=args.min_live_savings_ratio)


def cmd_eval(home: Home, args: argparse.Namespace) -> None:
    console = _console()
    config = EvalConfig(devices=args.devices, seed=args.seed)
    _check_devices(config.devices)
    with tff_runtime(home, console):
        do_eval(home, console, version=args.version, devices=config.devices, seed=config.seed,
                references=args.references, json_path=Path(args.json) if args.json else None)


def cmd_report(home: Home, args: argparse.Namespace) -> None:
    do_report(home, _console(), Path(args.html) if args.html else None)


def _positive_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def add_references_option(p) -> None:
    """``--references`` (off by default), shared by ``fedkb eval`` and ``fedkb demo``."""
    p.add_argument("--references", action="store_true",
                   help="also score references fitted on every device's POOLED raw text (unigram, Kneser-Ney "
                        "trigram, centralized LSTM), kept in <home>/references/ and deleted with any device's data; "
                        "the disclosure then says the text was pooled")
    # Accepted so that scripts written before --references still run; references are off by default.
    p.add_argument("--no-baselines", action="store_true", help=argparse.SUPPRESS)


def add_parsers(sub) -> None:
    p = sub.add_parser("rollout", help="promote or hold back the newest version, then install latest on devices")
    add_config_arguments(p, RolloutConfig, ("threshold", "devices", "seed"))
    p.add_argument("--roll-back-to", metavar="VERSION",
                   help="make this older version latest again, signed so that devices accept the rollback, and "
                        "install it (no candidate is decided)")
    p.add_argument("--reason", default="", help="--roll-back-to: why, recorded in the registry")
    p.add_argument("--min-live-savings-ratio", type=_positive_ratio, default=None, metavar="R",
                   help="first roll latest back to the version it replaced if its live keystroke savings (typed by "
                        "people, else replayed; released from enough devices) are below R times that version's "
                        "(default: off)")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("eval", help="on-device evaluation: recall@1/3/5 on devices' held-out sentences")
    p.add_argument("--version", help="evaluate this published version (default: what each device has installed)")
    add_config_arguments(p, EvalConfig, ("devices", "seed"))
    p.add_argument("--json", help="also write the aggregate result to this JSON file")
    add_references_option(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("report", help="recall tables and trends; --html writes a self-contained report with plots")
    p.add_argument("--html", help="write an HTML report to this path")
    p.set_defaults(func=cmd_report)
