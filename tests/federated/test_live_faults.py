"""Live rounds survive faults: an upload cut mid-way, and devices whose clocks are hours off.

A coordinator killed with SIGKILL mid-round, restarted, resumed, with its devices retrying, is
tested with the keyboard's agent among them (tests/keyboard/test_live_keyboard.py): one pair of
`fedkb serve` starts covers both.
"""

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_an_upload_cut_mid_way_is_sent_again_counted_once_and_a_replay_is_refused(seeded_home):
    import numpy as np

    from common import messages
    from federated import training
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.program import Session
    from federated.runtime import LocalRuntime
    from federated.service import serve
    from keyboard.agent import connect
    from keyboard.store import list_device_dirs
    from tests.live_helpers import CuttingRelay

    cut, direct = [d.name for d in list_device_dirs(seeded_home.devices)][:2]
    train = training.TrainConfig(preset="tiny", clients_per_round=2, batch_size=4, seed=3, min_examples=3)
    fedkb = [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root), "device", "run", "--rounds", "1",
             "--verbose"]
    with LocalRuntime():
        session = Session(seeded_home, train, publish_every=5, pretrained=False, live=True)
        coordinator = Coordinator(session, LiveConfig(overselect=1.0, selection_window=0.0, report_deadline=240))
        server, port = serve(coordinator, "127.0.0.1:0")
        # check-ins and the tokenizer request are a few hundred bytes each; the delta is tens of kilobytes
        relay = CuttingRelay(port, cut_after=16_000)
        agents = [subprocess.Popen([*fedkb, "--device", device, "--server", f"127.0.0.1:{p}"], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for device, p in ((cut, relay.port), (direct, port))]
        try:
            result = coordinator.run_round()
            outputs = [a.communicate(timeout=120) for a in agents]
            task_id = next(t.task_id for t in coordinator._round.uploads.tasks.values() if t.device_id == cut)
            replay = {"task_id": task_id, "device_id": cut, "round": 1, "weight": 1.0, "metrics": {}}
            zeros = {n: np.zeros(s, np.float32) for n, s in coordinator._round.uploads.shapes.items()}
            upload = connect(f"127.0.0.1:{port}").unary_unary(f"/{messages.SERVICE}/Upload")
            replayed = messages.unpack(upload(messages.pack(replay, zeros), timeout=60))[0]
        finally:
            relay.close()
            server.stop(grace=1)
            for a in agents:
                if a.poll() is None:
                    a.kill()
    cut_log = outputs[0][1]
    assert relay.cuts == 1 and "upload failed" in cut_log and "sending it again" in cut_log, \
        (relay.cut_at, cut_log[-2000:])
    assert f"{cut}: 1 tasks, 1 uploads accepted, 0 refused" in outputs[0][0], cut_log[-2000:]
    assert sorted(result.clients) == sorted([cut, direct]) and result.metrics["clients"] == 2
    assert replayed["accepted"] is False and "replayed upload" in replayed["reason"], replayed
    assert [d for d, _ in coordinator.refusals] == [cut]  # the replay only: the cut upload never arrived


def test_devices_whose_clocks_are_hours_off_take_part_in_a_round(seeded_home):
    """Nothing in the protocol reads a device's wall clock: check-ins carry no time, the task's deadline is a
    duration, and the coordinator times rounds on its own monotonic clock. Two devices, 9 h behind and 9 h
    ahead, are selected, train and upload within an unchanged report deadline."""
    import datetime as dt

    from federated import training
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.program import Session
    from federated.runtime import LocalRuntime
    from federated.service import serve
    from keyboard.store import list_device_dirs

    skews = dict(zip([d.name for d in list_device_dirs(seeded_home.devices)][:2], (-9, 9)))
    train = training.TrainConfig(preset="tiny", clients_per_round=2, batch_size=4, seed=4, min_examples=3)
    with LocalRuntime():
        session = Session(seeded_home, train, publish_every=5, pretrained=False, live=True)
        coordinator = Coordinator(session, LiveConfig(overselect=1.0, selection_window=0.0, report_deadline=240))
        server, port = serve(coordinator, "127.0.0.1:0")
        agents = {device: subprocess.Popen(
            [sys.executable, "-m", "tests.federated.skewed_agent", "--skew-hours", str(hours), "--device-dir",
             str(seeded_home.device(device)), "--server", f"127.0.0.1:{port}", "--rounds", "1"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for device, hours in skews.items()}
        try:
            result = coordinator.run_round()
            logs = {device: a.communicate(timeout=120)[1] for device, a in agents.items()}
        finally:
            server.stop(grace=1)
            for a in agents.values():
                if a.poll() is None:
                    a.kill()
    assert sorted(result.clients) == sorted(skews) and not coordinator.refusals, coordinator.refusals
    for device, hours in skews.items():
        line = next((ln for ln in logs[device].splitlines() if "round 1 upload accepted" in ln), None)
        assert line is not None, f"{device} ({hours:+d} h): no accepted upload in its log:\n{logs[device][-2000:]}"
        logged = dt.datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")  # the agent's local time, as it sees it
        off = (logged - dt.datetime.now()).total_seconds() / 3600
        assert abs(off - hours) < 0.5, f"{device}: its log says {line[:19]}, {off:+.1f} h off, not {hours:+d} h"
