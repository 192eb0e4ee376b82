"""Snapshots pinning how the keyboard looks (regenerate with ``--snapshot-update`` and review the SVGs)."""

from __future__ import annotations

import json

import pytest

from keyboard.app import KeyboardApp
from keyboard.predictor import FrequencyPredictor
from keyboard.store import Device
from tests.keyboard.helpers import FakePredictor

SIZE = (110, 30)


def typing(*keys: str):
    """Presses ``keys`` and waits until suggestions are shown (``press=`` would not wait for workers)."""

    async def run_before(pilot) -> None:
        await pilot.press(*keys)
        for _ in range(3):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        pilot.app.clear_notifications()  # toasts would hide the status bar

    return run_before


@pytest.fixture
def device(tmp_path):
    with Device(tmp_path / "devices" / "snap-device", create=True) as d:
        for i in range(6):
            d.append(f"earlier sentence number {i}", timestamp=1_700_000_000 + i)
        d.set(last_round=7)
        yield d


def _app(device, predictor, **kwargs) -> KeyboardApp:
    # Never idle and no battery: the status line must not depend on the machine running the test.
    return KeyboardApp(device, predictor, idle_after=1e9, charging=lambda: None, **kwargs)


def test_main_screen(snap_compare, device):
    app = _app(device, FakePredictor(version="0003", words=("sat", "sits", "sang")))
    assert snap_compare(app, run_before=typing(*"hello world", "enter", *"the cat s"),
                        terminal_size=SIZE)


def test_main_screen_incognito_without_a_model(snap_compare, device):
    app = _app(device, FrequencyPredictor(device.sentences()))
    assert snap_compare(app, run_before=typing("ctrl+n", *"secret", "enter", *"earlier s"),
                        terminal_size=SIZE)


def test_eval_screen(snap_compare, device, tmp_path):
    (device.directory / "eval").mkdir()
    for version, r1, r3 in (("0001", 0.08, 0.17), ("0002", 0.11, 0.22), ("0003", 0.14, 0.27)):
        (device.directory / "eval" / f"{version}.json").write_text(json.dumps(
            {"model_version": version, "recall_at_1": r1, "recall_at_3": r3, "predictions": 37}))
    (device.directory / "eval" / "personalization.json").write_text(json.dumps({
        "global_version": "0003", "use_personal": True, "global": {"recall_at_1": 0.14, "recall_at_3": 0.27},
        "personal": {"recall_at_1": 0.19, "recall_at_3": 0.33}}))
    evals = tmp_path / "server" / "evals"
    evals.mkdir(parents=True)
    for version, r1, r3 in (("0002", 0.10, 0.20), ("0003", 0.12, 0.24)):
        (evals / f"{version}.json").write_text(json.dumps({
            "model_version": version, "devices": 60, "predictions": 2400, "recall_at_1": r1, "recall_at_3": r3,
            "baselines": {"unigram": {"recall_at_1": 0.05, "recall_at_3": 0.10},
                          "ngram": {"recall_at_1": 0.08, "recall_at_3": 0.16},
                          "centralized_lstm": {"recall_at_1": 0.13, "recall_at_3": 0.25}}}))
    device.add_live_counts("0003", {"words": 40, "shown_at_1": 18, "shown_at_3": 26, "start_at_1": 10,
                                    "start_at_3": 16, "accepted": 12, "modified": 2, "letters": 160,
                                    "letters_saved": 30})
    app = _app(device, FakePredictor(version="0003"), evals_dir=evals)
    assert snap_compare(app, run_before=typing("ctrl+t"), terminal_size=(100, 48))
