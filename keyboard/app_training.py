"""On-device training, mixed into ``KeyboardApp``: fine-tune a personal model on the device's log.

It runs in a separate process (``python -m keyboard.personalize``: it imports TensorFlow, the
keyboard never does), started by Ctrl+O or by itself when the device is idle and eligible and has
something new to learn from; a thread waits for its one-line JSON result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.message import Message

from common.layout import DeviceLayout
from keyboard.install import read_pointer

if TYPE_CHECKING:
    from keyboard.app import KeyboardApp

    _Base = KeyboardApp
else:
    _Base = object


def personalize_command(device_dir: Path) -> list[str]:
    """On-device training runs in its own process: it imports TensorFlow, the keyboard never does."""
    return [sys.executable, "-m", "keyboard.personalize", "--device-dir", str(device_dir)]


class Personalized(Message):
    """On-device training finished: its one-line JSON result, or an error."""

    def __init__(self, result: dict | None, error: str | None) -> None:
        super().__init__()
        self.result, self.error = result, error


class TrainingMixin(_Base):
    """Starts, waits for and reports on-device training; ``KeyboardApp`` sets ``train_command`` and ``_training``."""

    def _training_key(self) -> tuple | None:
        # The pointer file, not ``installed()``: this runs every second while idle, and verifying
        # would re-hash megabytes of weights each time. Training itself verifies what it loads.
        current = read_pointer(self.device.directory).get("current")
        if current is None:
            return None
        return current, self._device_meta.get("train_sentences", 0)

    def _maybe_personalize(self) -> None:
        """Starts on-device training when the device is eligible and has something new to learn from."""
        key = self._training_key()
        if key is None or self._training is not None or key == self._trained_for or self.train_command is None:
            return
        try:
            record = json.loads(DeviceLayout(self.device.directory).personalization.read_text())
            if (record.get("global_version"), record.get("trained_on_sentences")) == key:
                self._trained_for = key  # already trained on exactly this
                return
        except (OSError, ValueError):
            pass
        self.action_personalize(automatic=True)

    def action_personalize(self, automatic: bool = False) -> None:
        if self.train_command is None:
            self.notify("On-device training is off in this keyboard.")
            return
        if self._training is not None:
            self.notify("On-device training is already running.", timeout=3)
            return
        key = self._training_key()
        if key is None:
            self.notify("No model is installed yet: there is nothing to fine-tune.", timeout=4)
            return
        self._trained_for = key
        self._training = subprocess.Popen(self.train_command(self.device.directory), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.notify(("The device is idle and eligible: " if automatic else "")
                    + "fine-tuning a personal model on this device's log in the background.", timeout=4)
        self._wait_for_training(self._training)

    @work(thread=True, group="personalize")
    def _wait_for_training(self, process: subprocess.Popen) -> None:
        out, err = process.communicate()
        if process.returncode == 0:
            try:
                self.post_message(Personalized(json.loads(out.strip().splitlines()[-1]), None))
                return
            except (ValueError, IndexError):
                err = f"unreadable result: {out[-200:]!r}"
        self.post_message(Personalized(None, (err or f"exit code {process.returncode}").strip().splitlines()[-1]))

    def on_personalized(self, message: Personalized) -> None:  # by name: ``@on`` needs Textual's metaclass
        self._training = None
        if message.error:
            self.notify(message.error, title="On-device training failed", severity="warning", timeout=8, markup=False)
            return
        r = message.result
        g, p = r.get("global", {}), r.get("personal", {})
        verdict = "suggestions now come from it" if r.get("use_personal") else "the global model stays in use"
        self.notify(f"Personal model recall@1 {p.get('recall_at_1', 0):.1%} vs global {g.get('recall_at_1', 0):.1%} "
                    f"on your held-out sentences: {verdict}.", title="Personal model", timeout=8)
        self._check_model(on_demand=False, load=True)

    def _stop_training(self) -> None:
        if self._training is not None and self._training.poll() is None:
            self._training.kill()
        self._training = None
