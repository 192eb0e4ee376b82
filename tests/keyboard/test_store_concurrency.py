"""A device used by two processes at once: the keyboard appending, a trainer/evaluator reading.

The keyboard holds one connection and appends sentence after sentence (re-reading its status
after each, as the app does); ``fedkb train`` / ``fedkb eval`` open the device afresh for every
read of the splits and now and then record the round the device joined (a write of their own).
Nothing may be lost, every read must be a consistent snapshot, and no ``database is locked``
may reach either side.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from keyboard.store import Device, heldout_count
from tests.conftest import REPO

APPENDS = 10_000


def sentence(i: int) -> str:
    """The i-th sentence the keyboard process types (non-ASCII included, so content is really compared)."""
    return f"sentence {i} typed on the keyboard — naïve café №{i % 97}"


# The keyboard: one long-lived connection, default (wall-clock) timestamps, status after each append.
_KEYBOARD = """
import sys
from keyboard.store import Device
from tests.keyboard.test_store_concurrency import sentence
n = int(sys.argv[2])
with Device(sys.argv[1]) as dev:
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(n):
        stored = dev.append(sentence(i))
        assert stored == sentence(i), stored
        assert dev.status()["sentences"] >= i + 1
print("done", flush=True)
"""

# The trainer / evaluator: a fresh connection per read, as client_examples() and evaluate() do.
_TRAINER = """
import json, sys
from pathlib import Path
from keyboard.store import Device, heldout_count
from tests.keyboard.test_store_concurrency import sentence
directory, n = Path(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
reads = partial = last = writes = 0
while True:
    with Device(directory) as dev:
        splits = dev.splits()
        seen = splits.train + splits.heldout
        k = len(seen)
        # A consistent snapshot: exactly the first k sentences, in order, never fewer than before.
        if seen != [sentence(i) for i in range(k)]:
            sys.exit(f"inconsistent snapshot of {k} sentences after {reads} reads")
        if len(splits.heldout) != heldout_count(k) or k < last:
            sys.exit(f"bad split: {k} sentences, {len(splits.heldout)} held out, {last} before")
        dev.train_word_counts()
        status = dev.status()
        if status["sentences"] < k:
            sys.exit(f"status counts {status['sentences']} sentences after reading {k}")
        if reads % 3 == 0:  # the trainer records the round the device joined: a write of its own
            dev.set(last_round=reads)
            writes += 1
    last = k
    reads += 1
    partial += 0 < k < n
    if k == n:
        break
print(json.dumps({"reads": reads, "partial": partial, "writes": writes}), flush=True)
"""


def _start(script: str, directory: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(directory), str(APPENDS)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_keyboard_appends_while_trainer_reads_lose_nothing(tmp_path):
    directory = tmp_path / "dev"
    with Device(directory, create=True) as device:
        device.set(user="alice")
    keyboard, trainer = _start(_KEYBOARD, directory), _start(_TRAINER, directory)
    try:
        for proc in (keyboard, trainer):
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in (trainer, keyboard):  # the reader is already reading when the first append lands
            proc.stdin.write("go\n")
            proc.stdin.flush()
        # No timeouts on purpose: on a loaded machine this may take a while, and pytest's own
        # timeout (if any) reports a hang better than a guessed number here.
        k_out, k_err = keyboard.communicate()
        t_out, t_err = trainer.communicate()
    finally:
        for proc in (keyboard, trainer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for err in (k_err, t_err):
        assert "database is locked" not in err and "OperationalError" not in err, err
    assert keyboard.returncode == 0, k_err
    assert trainer.returncode == 0, t_err
    assert k_out.strip() == "done"
    stats = json.loads(t_out.strip().splitlines()[-1])
    print(f"{APPENDS} appends; trainer: {stats}")  # shown with -s
    assert stats["partial"] > 0, stats  # the trainer really read while the keyboard wrote
    assert stats["writes"] > 0, stats
    with Device(directory) as device:
        everything = device.sentences()
        splits = device.splits()
        assert device.count() == APPENDS
        assert device.get("user") == "alice"
        assert device.get("last_round") is not None
    lost = APPENDS - len(everything)
    assert lost == 0, f"{lost} of {APPENDS} appends lost"
    assert everything == [sentence(i) for i in range(APPENDS)]
    assert len(splits.heldout) == heldout_count(APPENDS) == 2_000
    assert splits.train + splits.heldout == everything
