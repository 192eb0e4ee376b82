"""The loop closes: `fedkb serve` runs rounds on eligible devices, publishes, promotes and rolls out a
version while the keyboard is open; the keyboard installs it (checksums verified) and suggests from
it without a restart."""

import subprocess
import sys
import time

import pytest

from keyboard.app import KeyboardApp
from keyboard.mix import ProductPredictor
from keyboard.predictor import load_predictor
from keyboard.store import Device
from tests.conftest import REPO

pytestmark = pytest.mark.slow


async def test_keyboard_installs_what_serve_publishes_without_restart(seeded_home):
    from federated.population import members

    device_id = members(seeded_home)[0].device_id
    serve = subprocess.Popen(
        [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root), "serve", "--simulate", "--interval", "0",
         "--max-rounds", "2", "--publish-every", "2", "--preset", "tiny", "--clients-per-round", "2",
         "--eval-devices", "20"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with Device(seeded_home.device(device_id)) as device:
            app = KeyboardApp(device, predictor_factory=load_predictor, models_dir=seeded_home.models,
                              check_every=0.5, charging=lambda: None, train_command=None)
            async with app.run_test() as pilot:
                await pilot.press(*"good ")
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline and not isinstance(app.predictor, ProductPredictor):
                    await pilot.pause(0.5)
                assert isinstance(app.predictor, ProductPredictor), "the keyboard never picked up the new version"
                assert app.predictor.version == "0001"
                await pilot.press(*"morning ")
                for _ in range(40):
                    await pilot.pause(0.1)
                    if app.suggestions:
                        break
                assert len(app.suggestions) == 3
                assert app.typing.value == "good morning "  # typing was never interrupted
    finally:
        out, err = serve.communicate(timeout=600)
    assert serve.returncode == 0, err[-2000:]
    # What serve says of the loop (once tests/test_demo.py's own serve test, which ran this same command).
    assert "round 2:" in out and "published 0001" in out
    assert "installed on 60 devices" in out
