"""`fedkb serve` and `fedkb keyboard` together: the keyboard's device takes part in a live round.

While the keyboard is idle (and on mains power) its agent process checks in, trains on this
device's log and uploads; the status bar then shows the round it joined.
"""

import csv
import subprocess
import sys
import time

import pytest

from keyboard.app import KeyboardApp
from keyboard.store import Device, list_device_dirs
from tests.conftest import REPO

pytestmark = pytest.mark.slow


async def test_the_keyboards_device_takes_part_in_a_live_round(seeded_home, tmp_path):
    first, second = [d.name for d in list_device_dirs(seeded_home.devices)][:2]
    port_file = tmp_path / "port"
    fedkb = [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root)]
    serve = subprocess.Popen(
        [*fedkb, "serve", "--listen", "127.0.0.1:0", "--port-file", str(port_file), "--max-rounds", "1",
         "--preset", "tiny", "--clients-per-round", "2", "--overselect", "1", "--selection-window", "0",
         "--no-pretrained", "--min-examples", "3"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    agent = None
    try:
        deadline = time.monotonic() + 180
        while not port_file.is_file() and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(0.2)
        assert port_file.is_file(), serve.communicate()[1][-2000:]
        server = f"127.0.0.1:{port_file.read_text().strip()}"
        agent = subprocess.Popen([*fedkb, "device", "run", "--device", first, "--server", server, "--rounds", "1"],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with Device(seeded_home.device(second)) as device:
            app = KeyboardApp(device, idle_after=0.0, charging=lambda: None, train_command=None, server=server)
            async with app.run_test() as pilot:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline and (app.status is None or app.status.last_round != 1):
                    await pilot.pause(0.5)
                    app.refresh_device_status()
                assert app.status.last_round == 1, (seeded_home.device(second) / "agent.log").read_text()[-2000:]
                assert app.agent.starts >= 1
            assert not app.agent.running  # the agent ends with the keyboard
    finally:
        out, err = serve.communicate(timeout=300)
        if agent is not None:
            agent.communicate(timeout=60)
    assert serve.returncode == 0, err[-2000:]
    with open(seeded_home.metrics_csv) as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["clients"])) for r in rows] == [2]  # the round counts the keyboard's device
