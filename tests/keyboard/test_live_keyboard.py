"""`fedkb serve` and `fedkb keyboard` together: the keyboard's device takes part in live rounds, and
both survive a coordinator killed with SIGKILL mid-round.

While the keyboard is idle (and on mains power) its agent process checks in, trains on this
device's log and uploads; the status bar then shows the round it joined. One test covers the whole
story, with the coordinator killed in round 2 on the way: each start of `fedkb serve` imports
TensorFlow Federated, so the keyboard's restart and the round's resume share two starts, not four.
"""

import os
import subprocess
import sys
import time

import pytest

from keyboard.app import KeyboardApp
from keyboard.store import Device, list_device_dirs
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.long]


def _serve(fedkb, port, port_file, env=None):
    """`fedkb serve` with its output in ``port_file``.log (a file: nobody reads a pipe while the test runs)."""
    with open(port_file.with_suffix(".log"), "w") as log:
        return subprocess.Popen(
            [*fedkb, "serve", "--listen", f"127.0.0.1:{port}", "--port-file", str(port_file), "--max-rounds", "2",
             "--publish-every", "2", "--preset", "tiny", "--clients-per-round", "2", "--overselect", "1",
             "--selection-window", "0", "--no-pretrained", "--min-examples", "3", "--eval-deadline", "2"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


async def test_a_coordinator_killed_mid_round_resumes_while_the_keyboard_keeps_suggesting_and_its_agent_rejoins(
        seeded_home, tmp_path):
    """The keyboard's device and one other take part in round 1. The coordinator is SIGKILLed in round 2,
    after TFF wrote its state and before the seal. The keyboard goes on suggesting and logging and says the
    coordinator is unreachable; the other device's agent waits too. Once a coordinator is back on the same
    port, both agents reconnect by themselves (the keyboard's is the same process), round 2 is re-run and
    published, the status bar shows round 2, and the keyboard's agent ends with the keyboard."""
    import psutil

    from federated import ledger
    from keyboard.agent_config import AgentConfig
    from tests.keyboard.helpers import FakePredictor
    from tests.live_helpers import free_port

    device_id, other = [d.name for d in list_device_dirs(seeded_home.devices)][:2]
    fedkb = [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root)]
    port = free_port()
    first = _serve(fedkb, port, tmp_path / "port1", env={"FEDKB_CRASH_AT": "2:checkpoint"})
    # the devices retry at least every second, so they find the restarted coordinator as soon as it listens
    agent = subprocess.Popen([*fedkb, "device", "run", "--device", other, "--server", f"127.0.0.1:{port}",
                              "--max-backoff", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    second = None

    async def until(condition, timeout, what):
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            await pilot.pause(0.2)
            app.refresh_device_status()
        assert condition(), f"waited {timeout} s for {what}; status {app.status}; agent.log:\n" + \
            (seeded_home.device(device_id) / "agent.log").read_text()[-2000:] + "\nserve:\n" + "\n".join(
                p.read_text()[-2000:] for p in sorted(tmp_path.glob("port*.log")))

    try:
        with Device(seeded_home.device(device_id)) as device:
            app = KeyboardApp(device, FakePredictor(), idle_after=0.0, charging=lambda: None, train_command=None,
                              server=f"127.0.0.1:{port}")
            app.agent.config = AgentConfig(max_backoff=1.0)  # it tries every second: back as soon as it listens
            async with app.run_test() as pilot:
                await until(lambda: app.status.last_round == 1, 300, "the device to join round 1")
                await until(lambda: first.poll() is not None, 300, "the coordinator to be killed in round 2")
                assert first.returncode == -9, "the coordinator was not killed at round 2's checkpoint"
                assert agent.poll() is None  # the other device waits for it to come back
                logged = device.count()
                await pilot.press(*"hello wo")
                await until(lambda: app.suggestions == ("wo1", "wo2", "wo3"), 30, "suggestions while it is down")
                await pilot.press("enter")
                assert device.count() == logged + 1 and app.recent[-1] == ("hello wo", True), app.recent
                await until(lambda: app.status.coordinator_unreachable, 60, "the status bar to say unreachable")
                assert "coordinator unreachable" in str(app.query_one("#status").render())
                agent_pid = app.agent.process.pid
                second = _serve(fedkb, port, tmp_path / "port2")  # the same settings, so it resumes
                # reachable again from its first answered check-in; the serve ends soon after round 2, so this
                # is watched for before the round's end, not after it
                await until(lambda: not app.status.coordinator_unreachable, 300, "the status bar to say reachable")
                await until(lambda: app.status.last_round == 2, 300, "the device to join round 2 after the restart")
                assert app.agent.process.pid == agent_pid and app.agent.starts == 1  # reconnected, not restarted
                assert psutil.pid_exists(agent_pid)
            assert not app.agent.running  # the agent ends with the keyboard
        second.wait(timeout=120)
    finally:
        for proc in (first, second, agent):
            if proc is not None and proc.poll() is None:
                proc.kill()
        agent.communicate(timeout=60)
    log = (tmp_path / "port2.log").read_text()
    assert second.returncode == 0, log[-2000:]
    assert "round 1 done" in log and "round 2:" in log, log[-2000:]
    rows = ledger.round_metrics(seeded_home.server)  # rounds of 2 devices: their sums stay private
    assert [int(r["round"]) for r in rows] == [1, 2] and all(int(float(r["clients"])) == 2 for r in rows)
    assert (seeded_home.models / "latest.json").exists() or any(seeded_home.models.glob("0*"))
