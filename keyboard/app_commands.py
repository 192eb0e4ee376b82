"""The keyboard's screens and commands, mixed into ``KeyboardApp``: F12 help, Ctrl+T evaluation, Ctrl+P palette.

Every action is also a command of the palette, and the typing actions are disabled while another
screen (a dialog, help, evaluation) is on top, so that its buttons get the keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from keyboard.app_controls import CONTROL_ACTIONS
from keyboard.screens import EvalScreen, HelpScreen
from keyboard.store import DeviceError

if TYPE_CHECKING:
    from keyboard.app import KeyboardApp

    _Base = KeyboardApp
else:
    _Base = object

# Actions that act on the typing line; disabled while another screen is on top.
_TYPING_ACTIONS = {"accept", "toggle_incognito", "check_update", "show_eval", "delete_log", "help", "personalize",
                   *CONTROL_ACTIONS}


def key_display(keys: str) -> str:
    """``"tab,f1,alt+1"`` -> ``"Tab / F1 / Alt+1"``."""
    return " / ".join("+".join(part.upper() if len(part) <= 3 and part[0] == "f" else part.capitalize()
                               for part in key.split("+")) for key in keys.split(","))


class CommandsMixin(_Base):
    """The screens the keyboard opens and the commands it lists (see the module docstring)."""

    def action_show_eval(self) -> None:
        try:
            live = self.device.live_counts()
        except DeviceError as exc:
            live = {}
            self.notify(str(exc), title="Live counts unreadable", severity="warning", markup=False)
        self.push_screen(EvalScreen(self.device.directory, self.evals_dir, live=live))

    def action_help(self) -> None:
        rows = [(key_display(b.key), b.tooltip or b.description) for b in self.BINDINGS if isinstance(b, Binding)]
        rows[3:3] = [("Click", "accept the suggestion clicked"), ("Enter", "finish the sentence and log it"),
                     (". ! ?", "finish the sentence (with its punctuation) and log it")]
        rows.append(("Ctrl+P", "command palette: every command by name"))
        self.push_screen(HelpScreen(rows))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Priority keys such as Tab must reach a dialog's buttons when one is open.
        return not (action in _TYPING_ACTIONS and len(self.screen_stack) > 1)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Incognito on/off", "Stop or resume logging what you type", self.action_toggle_incognito)
        yield SystemCommand("Check for a new model", "Install the newest promoted model now", self.action_check_update)
        yield SystemCommand("Evaluation results", "Recall of this device and all devices", self.action_show_eval)
        yield SystemCommand("Train on this device", "Fine-tune a personal model on my log now", self.action_personalize)
        yield SystemCommand("Delete my typing log", "Forget every sentence on this device", self.action_delete_log)
        yield SystemCommand("Settings", "Federated on/off, blocked words, forget what was learned",
                            self.action_settings)
        yield SystemCommand("Copy the text", "Copy the line or the last sentence to the clipboard",
                            self.action_copy_text)
        yield SystemCommand("Forget what this device learned", "Keep the log, drop what was learned from it",
                            self.action_forget_learned)
        yield SystemCommand("fedkb keys", "Every key of the keyboard, explained", self.action_help)
