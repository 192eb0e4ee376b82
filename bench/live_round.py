"""Live round time against the simulation's, for the same participants, and the coordinator's memory.

On the bundled Shakespeare population (``bench/fedbench.shakespeare_home``), for each K in
``--clients`` (default 10 and 50):

* **live**: ``fedkb devices run`` starts agents for 2K devices in ``--processes`` OS processes;
  the coordinator (this process: TFF runtime, gRPC service) runs ``--rounds`` rounds with
  over-selection 1 and no selection window, so a round is: selection, task download, training
  on the devices, upload, TFF aggregation and server update, checkpoint.
* **simulated**: a ``Session`` on a copy of the same home runs rounds with the same selected
  devices in the same order (``fedkb train``'s path: TFF runs every client's work in its
  ``worker_binary``).

The first round of each is a warm-up (graph tracing) and is left out. Figures: median round
seconds each, the ratio live / simulated (goal ≤ 1.3), the coordinator's RSS before the agents
connect and while they are all held in check-in (per connected device), and the agents' peak RSS.
Ends with one JSON line.

    uv run python bench/live_round.py [--clients 10 50] [--rounds 3] [--preset small]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.fedbench import emit, median, shakespeare_home
from common.layout import Home

REPO = Path(__file__).resolve().parent.parent


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def _tree_rss_mb(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def run_k(base: Home, work: Path, k: int, rounds: int, preset: str, processes: int) -> dict:
    from federated import training
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.population import Selection
    from federated.program import Session
    from federated.service import serve

    live_home, sim_home = Home(work / f"live-{k}"), Home(work / f"sim-{k}")
    for h in (live_home, sim_home):
        shutil.rmtree(h.root, ignore_errors=True)
        shutil.copytree(base.root, h.root, ignore=shutil.ignore_patterns("server"))
        shutil.copytree(base.tokenizer, h.tokenizer)
    train = training.TrainConfig(preset=preset, clients_per_round=k, seed=0)
    session = Session(live_home, train, publish_every=10_000, pretrained=False, fresh=True, live=True)
    coordinator = Coordinator(session, LiveConfig(overselect=1.0, selection_window=0.0, report_deadline=1800))
    server, port = serve(coordinator, "127.0.0.1:0")
    rss_before = _rss_mb(os.getpid())
    # a file, not a pipe nobody reads: a full pipe stalls agents
    with open(work / f"agents-{k}.log", "w") as agent_log:
        agents = subprocess.Popen(
            [sys.executable, "-m", "fedkb.cli", "--home", str(live_home.root), "devices", "run", "--count", str(2 * k),
             "--processes", str(processes), "--server", f"127.0.0.1:{port}"],
            cwd=REPO, stdout=agent_log, stderr=subprocess.STDOUT, text=True)
        peak_agents = [0.0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak_agents[0] = max(peak_agents[0], _tree_rss_mb(agents.pid))
                except Exception:
                    pass
                stop.wait(0.5)

        threading.Thread(target=sample, daemon=True).start()
        live_times, selections, rss_connected, connected = [], [], None, 0
        try:
            for r in range(rounds):
                t0 = time.perf_counter()
                if r == 0:  # wait until every agent that can take part is held in check-in, then measure
                    deadline = time.monotonic() + 300
                    while time.monotonic() < deadline:
                        with coordinator._cond:
                            coordinator._selecting = True
                            connected = len(coordinator._waiting)
                        if connected >= k and len(coordinator.seen) >= 2 * k:
                            break
                        time.sleep(0.5)
                    time.sleep(2.0)
                    with coordinator._cond:
                        connected = len(coordinator._waiting)
                    rss_connected = _rss_mb(os.getpid())
                result = coordinator.run_round(on_event=lambda msg: print(f"K={k} {msg}", flush=True))
                live_times.append(time.perf_counter() - t0)
                selections.append(list(result.clients))
                print(f"K={k} live round {r + 1}: {live_times[-1]:.1f} s", flush=True)
        finally:
            stop.set()
            server.stop(grace=1)
            agents.terminate()
            agents.wait(60)
    sim = Session(sim_home, train, publish_every=10_000, pretrained=False, fresh=True)
    sim_times = []
    for r, chosen in enumerate(selections):
        t0 = time.perf_counter()
        sim.run_round(selection=Selection(chosen, len(chosen), len(chosen)))
        sim_times.append(time.perf_counter() - t0)
        print(f"K={k} simulated round {r + 1}: {sim_times[-1]:.1f} s", flush=True)
    live_s, sim_s = median(live_times[1:] or live_times), median(sim_times[1:] or sim_times)
    per_device = (rss_connected - rss_before) / connected if connected else float("nan")
    return {"clients": k, "live_round_s": round(live_s, 2), "simulated_round_s": round(sim_s, 2),
            "live_over_simulated": round(live_s / sim_s, 3), "coordinator_rss_mb": round(rss_before, 1),
            "coordinator_mb_per_connected_device": round(per_device, 3), "connected_devices": connected,
            "agents_peak_rss_mb": round(peak_agents[0], 1), "agent_processes": processes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per K; the first is a warm-up")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fedkb-bench")
    args = parser.parse_args()
    from federated.runtime import LocalRuntime

    base = shakespeare_home(args.work, vocab_size=args.vocab_size)
    results = []
    with LocalRuntime():
        for k in args.clients:
            res = run_k(base, args.work / "live_round", k, args.rounds, args.preset, args.processes)
            print(res, flush=True)
            results.append(res)
    emit({"bench": "live_round", "preset": args.preset, "rounds": args.rounds, "load_avg": os.getloadavg()[0],
          "results": results})


if __name__ == "__main__":
    main()
