"""`fedkb serve` and `fedkb keyboard` together: the keyboard's device takes part in a live round.

While the keyboard is idle (and on mains power) its agent process checks in, trains on this
device's log and uploads; the status bar then shows the round it joined. One test covers it, with a
coordinator restart on the way: each start of `fedkb serve` imports TensorFlow Federated (~15 s).
"""

import subprocess
import sys
import time

import pytest

from keyboard.app import KeyboardApp
from keyboard.store import Device, list_device_dirs
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _serve(fedkb, port, port_file):
    """`fedkb serve` with its output in ``port_file``.log (a file: nobody reads a pipe while the test runs)."""
    with open(port_file.with_suffix(".log"), "w") as log:
        return subprocess.Popen(
            [*fedkb, "serve", "--listen", f"127.0.0.1:{port}", "--port-file", str(port_file), "--max-rounds", "1",
             "--preset", "tiny", "--clients-per-round", "2", "--overselect", "1",
             "--selection-window", "0", "--no-pretrained", "--min-examples", "3", "--eval-deadline", "2"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)


async def test_the_keyboard_keeps_suggesting_while_the_coordinator_restarts_and_its_agent_rejoins(seeded_home,
                                                                                                   tmp_path):
    """The coordinator is SIGKILLed while the keyboard's agent waits in a check-in; the keyboard goes on
    suggesting and logging, says the coordinator is unreachable, and once a coordinator is back on the same
    port its agent reconnects by itself and the device takes part in a live round: it trains on its own log
    and uploads, the status bar shows the round it joined, and the agent ends with the keyboard."""
    import psutil

    from keyboard.agent_config import AgentConfig
    from tests.keyboard.helpers import FakePredictor
    from tests.live_helpers import free_port, wait_until

    device_id, other = [d.name for d in list_device_dirs(seeded_home.devices)][:2]
    fedkb = [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root)]
    port = free_port()
    first = _serve(fedkb, port, tmp_path / "port1")  # a round of 2 and only the keyboard's device: held open
    second = agent = None

    async def until(condition, timeout, what):
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            await pilot.pause(0.5)
            app.refresh_device_status()
        assert condition(), f"waited {timeout} s for {what}; status {app.status}; agent.log:\n" + \
            (seeded_home.device(device_id) / "agent.log").read_text()[-2000:] + "\nserve:\n" + "\n".join(
                p.read_text()[-2000:] for p in sorted(tmp_path.glob("port*.log")))

    def agent_connected():
        conns = psutil.Process(app.agent.process.pid).net_connections("tcp") if app.agent.running else []
        return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in conns)

    try:
        wait_until(lambda: (tmp_path / "port1").is_file() or first.poll() is not None, 180, "`fedkb serve` to listen")
        assert first.poll() is None, (tmp_path / "port1.log").read_text()[-2000:]
        with Device(seeded_home.device(device_id)) as device:
            app = KeyboardApp(device, FakePredictor(), idle_after=0.0, charging=lambda: None, train_command=None,
                              server=f"127.0.0.1:{port}")
            app.agent.config = AgentConfig(max_backoff=1.0)  # it tries every second: back as soon as it listens
            async with app.run_test() as pilot:
                await until(agent_connected, 120, "the keyboard's agent to connect to the coordinator")
                first.kill()
                first.wait(timeout=60)
                logged = device.count()
                await pilot.press(*"hello wo")
                await until(lambda: app.suggestions == ("wo1", "wo2", "wo3"), 30, "suggestions while it is down")
                await pilot.press("enter")
                assert device.count() == logged + 1 and app.recent[-1] == ("hello wo", True), app.recent
                await until(lambda: app.status.coordinator_unreachable, 60, "the status bar to say unreachable")
                assert "coordinator unreachable" in str(app.query_one("#status").render())
                agent_pid = app.agent.process.pid
                second = _serve(fedkb, port, tmp_path / "port2")  # the same settings, so it resumes
                agent = subprocess.Popen([*fedkb, "device", "run", "--device", other, "--server", f"127.0.0.1:{port}",
                                          "--rounds", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
                await until(lambda: app.status.last_round == 1, 300, "the device to join round 1 after the restart")
                assert not app.status.coordinator_unreachable
                assert app.agent.process.pid == agent_pid and app.agent.starts == 1  # reconnected, not restarted
            assert not app.agent.running  # the agent ends with the keyboard
        second.wait(timeout=120)
        agent.communicate(timeout=60)
    finally:
        for proc in (first, second, agent):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=60)
    assert second.returncode == 0, (tmp_path / "port2.log").read_text()[-2000:]
    from federated import ledger

    assert [int(float(r["clients"])) for r in ledger.round_metrics(seeded_home.server)] == [2]
