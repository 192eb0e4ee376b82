"""No device process outlives its parent: `fedkb devices run` and the keyboard, each killed with SIGKILL
while their agents' check-ins are held open by a coordinator that is selecting."""

import signal
import subprocess
import sys

import pytest

from keyboard.store import list_device_dirs
from tests.conftest import REPO
from tests.live_helpers import HoldingCoordinator, alive, descendants, wait_until

pytestmark = pytest.mark.slow


def _kill_and_wait_for_orphans(parent: subprocess.Popen, agents: list, what: str) -> None:
    parent.send_signal(signal.SIGKILL)
    parent.wait(30)
    pids = [a.pid for a in agents]
    wait_until(lambda: not any(alive(p) for p in pids), 30,
               f"{what}'s agent processes {pids} to end after it was SIGKILLed; alive: {[p for p in pids if alive(p)]}")


def test_devices_run_killed_leaves_no_agent_process(seeded_home):
    coordinator = HoldingCoordinator()
    parent = subprocess.Popen(
        [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root), "devices", "run", "--count", "4",
         "--processes", "2", "--server", f"127.0.0.1:{coordinator.port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        agents = wait_until(lambda: len(descendants(parent.pid, " device run ")) == 2 and coordinator.held == 4
                            and descendants(parent.pid, " device run "), 120, "2 agent processes holding 4 check-ins")
        _kill_and_wait_for_orphans(parent, agents, "`fedkb devices run`")
    finally:
        coordinator.close()
        if parent.poll() is None:
            parent.kill()


def test_the_keyboards_agent_ends_when_the_keyboard_is_killed(seeded_home):
    coordinator = HoldingCoordinator()
    device_dir = next(iter(list_device_dirs(seeded_home.devices)))
    keyboard = subprocess.Popen(
        [sys.executable, "-m", "tests.keyboard.headless_keyboard", "--device-dir", str(device_dir),
         "--server", f"127.0.0.1:{coordinator.port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        agents = wait_until(lambda: coordinator.held == 1 and descendants(keyboard.pid, "keyboard.agent_process"), 120,
                            "the keyboard's agent to hold a check-in")
        _kill_and_wait_for_orphans(keyboard, agents, "the keyboard")
    finally:
        coordinator.close()
        if keyboard.poll() is None:
            keyboard.kill()
