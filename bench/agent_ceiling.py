"""The largest number of device agents one machine sustains in a live round.

A population of ``max(--steps)`` synthetic devices (each a resample of one bundled speaking role,
``fedbench.resampled_corpus``) is seeded once. For each step N, ``fedkb devices run --count N``
starts agents for the first N devices in ``--processes`` OS processes (one thread per device,
as ``fedkb devices run`` always hosts them), all against one coordinator in this process
(``fedkb serve``'s code: TFF runtime and gRPC service). A step **sustains** N when

* every one of the N agents checks in within ``--connect-seconds``,
* ``--rounds`` rounds of K = ``--clients`` each close with K accepted reports before their deadline,
* the coordinator answers check-ins at the rate the agents send them (at least half of
  N / retry-after per second while the rounds run: no agent left hanging).

Figures per step: seconds until all N checked in, median round seconds, check-ins answered per
second, the coordinator's RSS, and the agent processes' peak RSS (all agents together). The
ramp stops at the first step that does not sustain, or when the machine's memory would run out.
Ends with one JSON line, whose ``sustained_agents`` is the largest N that held.

    uv run python bench/agent_ceiling.py [--steps 100 250 500 1000] [--processes 4] [--clients 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.fedbench import PeakRss, emit, median, resampled_corpus
from common.layout import Home

REPO = Path(__file__).resolve().parent.parent


def population(work: Path, devices: int, vocab_size: int) -> Home:
    """A home of ``devices`` resampled devices with a tokenizer; reused when it exists."""
    from federated.population import members, seed
    from federated.vocabulary import train_tokenizer
    from tokenizer.vocab import Tokenizer, TokenizerConfig, TokenizerError

    home = Home(work / f"agents-{devices}")
    if len(members(home)) < devices:
        seed(home, resampled_corpus(work / f"resampled-{devices}.jsonl", devices), min_sentences=10)
    try:
        Tokenizer.load(home.tokenizer)
    except TokenizerError:
        train_tokenizer(home, TokenizerConfig(vocab_size=vocab_size))
    return home


def run_step(coordinator, port: int, home: Home, n: int, *, rounds: int, processes: int,
             connect_seconds: float) -> dict:
    """Agents for ``n`` devices against ``coordinator``: connection time, rounds, rates, memory."""
    import psutil

    from federated.uploads import RoundAbandoned

    with coordinator._cond:  # who checks in during this step
        coordinator.seen.clear()
    check_ins_before = coordinator.check_ins
    agents = subprocess.Popen(
        [sys.executable, "-m", "fedkb.cli", "--home", str(home.root), "devices", "run", "--count", str(n),
         "--processes", str(processes), "--server", f"127.0.0.1:{port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)  # an unread pipe would stall them
    step = {"agents": n, "processes": processes}
    try:
        with PeakRss(agents.pid, interval=0.5) as agent_rss:
            t0 = time.monotonic()
            while time.monotonic() - t0 < connect_seconds and agents.poll() is None:
                if len(coordinator.seen) >= n:
                    break
                time.sleep(0.5)
            connected = len(coordinator.seen)
            step.update(connected=connected, connect_s=round(time.monotonic() - t0, 1))
            times, closed = [], 0
            t_rounds, c_rounds = time.monotonic(), coordinator.check_ins
            if connected >= n:
                for _ in range(rounds):
                    t = time.perf_counter()
                    try:
                        result = coordinator.run_round()
                    except RoundAbandoned as exc:
                        print(f"N={n}: {exc}", flush=True)
                        break
                    times.append(time.perf_counter() - t)
                    closed += len(result.clients) >= coordinator.train.clients_per_round
            elapsed = max(time.monotonic() - t_rounds, 1e-9)
            rate = (coordinator.check_ins - c_rounds) / elapsed
        wanted = n / coordinator.live.retry_after
        step.update(rounds_closed=closed, round_s=round(median(times), 2) if times else None,
                    check_ins_per_s=round(rate, 1), check_ins_sent_per_s_expected=round(wanted, 1),
                    check_ins_total=coordinator.check_ins - check_ins_before,
                    coordinator_rss_mb=round(psutil.Process().memory_info().rss / 2**20, 1),
                    agents_peak_rss_mb=round(agent_rss.peak_mb, 1), agents_exit=agents.poll())
        step["sustained"] = bool(connected >= n and closed == rounds and rate >= 0.5 * wanted)
    finally:
        agents.terminate()
        try:
            agents.wait(60)
        except subprocess.TimeoutExpired:
            agents.kill()
            agents.wait()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 250, 500, 1000])
    parser.add_argument("--clients", type=int, default=10, help="K, reports a round needs")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per step")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--connect-seconds", type=float, default=300.0)
    parser.add_argument("--report-deadline", type=float, default=600.0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fedkb-bench")
    args = parser.parse_args()
    import psutil

    from federated import training
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.program import Session
    from federated.runtime import LocalRuntime
    from federated.service import serve

    steps = sorted(args.steps)
    home = population(args.work, steps[-1], args.vocab_size)
    results, sustained = [], 0
    with LocalRuntime():
        train = training.TrainConfig(preset=args.preset, clients_per_round=args.clients, seed=0)
        session = Session(home, train, publish_every=10_000, pretrained=False, fresh=True, live=True)
        coordinator = Coordinator(session, LiveConfig(overselect=1.0, selection_window=0.0,
                                                      report_deadline=args.report_deadline))
        server, port = serve(coordinator, "127.0.0.1:0")
        try:
            for n in steps:
                free_mb = psutil.virtual_memory().available / 2**20
                if results and results[-1]["agents_peak_rss_mb"] * n / results[-1]["agents"] > 0.8 * free_mb:
                    print(f"N={n}: stopping, the agents would need more than 80 % of the free memory", flush=True)
                    break
                step = run_step(coordinator, port, home, n, rounds=args.rounds, processes=args.processes,
                                connect_seconds=args.connect_seconds)
                print(step, flush=True)
                results.append(step)
                if not step["sustained"]:
                    break
                sustained = n
        finally:
            server.stop(grace=1)
    emit({"bench": "agent_ceiling", "preset": args.preset, "clients": args.clients, "processes": args.processes,
          "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
          "load_avg": os.getloadavg()[0], "sustained_agents": sustained, "steps": results})


if __name__ == "__main__":
    main()
