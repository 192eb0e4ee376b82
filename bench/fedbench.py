"""Shared set-up for the federated benchmarks: homes on the bundled corpus, figures, the JSON line."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.layout import Home

DEFAULT_WORK = Path(tempfile.gettempdir()) / "fedkb-bench"


def shakespeare_home(work: Path, *, vocab_size: int, corpus: Path | None = None, name: str | None = None) -> Home:
    """A home seeded from the bundled corpus (or ``corpus``) with a tokenizer; reused when it exists."""
    from federated.corpus import resolve_corpus
    from federated.population import members, seed
    from federated.vocabulary import train_tokenizer
    from tokenizer.vocab import Tokenizer, TokenizerConfig, TokenizerError

    home = Home(work / (name or f"shakespeare-v{vocab_size}"))
    if not members(home):
        seed(home, corpus or resolve_corpus("shakespeare"), min_sentences=10)
    try:
        Tokenizer.load(home.tokenizer)
    except TokenizerError:
        train_tokenizer(home, TokenizerConfig(vocab_size=vocab_size))
    return home


def add_round_options(parser, *, preset: str, clients: int, rounds: int) -> None:
    """``--preset``, ``--clients``, ``--rounds`` and ``--work``: the options of the benches timing training rounds."""
    parser.add_argument("--preset", default=preset, choices=["tiny", "small", "gboard"])
    parser.add_argument("--clients", type=int, default=clients)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)


def preset_home(work: Path, preset: str) -> Home:
    """The seeded Shakespeare home for a model preset: gboard's larger vocabulary needs a tokenizer of its own."""
    return shakespeare_home(work, vocab_size=10000 if preset == "gboard" else 8000)


def seeded_home(path: str) -> tuple[Home, list]:
    """The home at ``path`` (as typed on the command line) and its devices; exits saying how to seed it when empty."""
    from federated.population import members

    home = Home(Path(path))
    devices = members(home)
    if not devices:
        raise SystemExit(f"no devices in {home.devices}: run `uv run fedkb --home {path} population seed "
                         "--corpus shakespeare` first")
    return home, devices


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


class PeakRss:
    """Samples the resident memory of a process and its children every ``interval`` seconds."""

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        import psutil

        self._root = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        import psutil

        total = 0
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        self.peak_bytes = max(self.peak_bytes, total)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


def emit(figures: dict) -> None:
    """The benchmark's last line: its figures as one JSON object."""
    print(json.dumps(figures, sort_keys=True), flush=True)


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


def resampled_corpus(path: Path, devices: int, *, seed: int = 0) -> Path:
    """A JSONL corpus of ``devices`` synthetic users, each a bootstrap resample of one real user's sentences.

    Speaking roles are drawn with replacement, and each synthetic user types as many sentences
    as the role it copies, drawn with replacement from that role's, so the size distribution
    of devices matches the bundled corpus.
    """
    import collections

    import numpy as np

    from federated.corpus import read_records, resolve_corpus

    if path.is_file():
        return path
    by_user: dict[str, list[str]] = collections.defaultdict(list)
    for record in read_records(resolve_corpus("shakespeare")):
        by_user[record.user].append(record.text)
    roles = [texts for texts in by_user.values() if len(texts) >= 10]
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(devices):
            texts = roles[int(rng.integers(len(roles)))]
            for j in rng.integers(len(texts), size=len(texts)):
                f.write(json.dumps({"user": f"synthetic-{i:06d}", "text": texts[int(j)]}) + "\n")
    tmp.rename(path)
    return path


def copy_tokenizer(source: Home, target: Home) -> None:
    """The same vocabulary in another home, so that models and tokens are identical across homes."""
    import shutil

    if not target.tokenizer.is_dir():
        shutil.copytree(source.tokenizer, target.tokenizer)


def train_subprocess(home: Home, *args: str, sample_interval: float = 0.1) -> dict:
    """Runs ``fedkb train`` in a child process; returns its peak RSS (with ``worker_binary``) and rounds."""
    import subprocess

    cmd = [sys.executable, "-m", "fedkb.cli", "--home", str(home.root), "train", *args]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    with PeakRss(proc.pid, interval=sample_interval) as rss:
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode(errors='replace')[-3000:]}")
    from federated import ledger

    rows = ledger.round_metrics(home.server)  # the server's own round figures (small rounds' are not published)
    return {"peak_rss_mb": rss.peak_mb, "wall_s": time.perf_counter() - started,
            "round_s": [float(r["round_seconds"]) for r in rows], "clients": [int(float(r["clients"])) for r in rows],
            "tokens": [float(r["num_tokens"]) for r in rows]}
