"""The keyboard's user controls, mixed into ``KeyboardApp``: where the text goes and what the device learns.

- The text goes somewhere: every sentence finished in this session is kept in memory (incognito ones
  too: they are the person's text, only the log leaves them out), for ``fedkb keyboard --print``
  (:meth:`ControlsMixin.session_text`), for Ctrl+Y (copy to the clipboard, OSC 52) and for
  ``--once`` (the app closes after the first finished sentence).
- The person decides what the device learns (``keyboard/controls.py``): F4 blocks a suggested word,
  the settings screen (F9) turns federated participation off, unblocks words, and forgets what the
  device learned while keeping the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keyboard import controls
from keyboard.forget import forget, forget_learned, what_learning_would_go, what_would_go
from keyboard.predictor import FrequencyPredictor
from keyboard.screens import ConfirmScreen
from keyboard.settings import BlockScreen, SettingsScreen
from keyboard.store import DeviceError

if TYPE_CHECKING:
    from keyboard.app import KeyboardApp

    _Base = KeyboardApp
else:
    _Base = object

CONTROL_ACTIONS = {"copy_text", "block", "settings", "forget_learned"}  # act on the typing screen


class ControlsMixin(_Base):
    """Actions and state of the person's controls; ``KeyboardApp`` calls :meth:`init_controls` first."""

    def init_controls(self, once: bool) -> None:
        self.once = once  # close after the first finished sentence
        self.session: list[str] = []  # sentences finished in this session, oldest first
        self.blocked = controls.blocked_words(self.device)
        self.federated = controls.takes_part(self.device.status())

    # -- the text goes somewhere ------------------------------------------------------------------
    def watch_recent(self, old: tuple, new: tuple) -> None:
        # ``recent`` gains a new (sentence, logged) pair for every finished sentence, logged or incognito;
        # it only shrinks when the log is deleted. The pair is a new object even for a repeated sentence.
        if new and (not old or new[-1] is not old[-1]):
            self.session.append(new[-1][0])
            if self.once:
                self.exit()

    def session_text(self) -> list[str]:
        """What ``--print`` writes: the finished sentences, then the unfinished line if it holds any text."""
        unfinished = " ".join(self.typing.value.split())
        return [*self.session, *([unfinished] if unfinished else [])]

    def action_copy_text(self) -> None:
        text = " ".join(self.typing.value.split()) or (self.session[-1] if self.session else "")
        if not text:
            self.bell()
            self.notify("Nothing to copy: the line is empty and no sentence was finished yet.", timeout=3)
            return
        self.copy_to_clipboard(text)
        shown = text if len(text) <= 60 else text[:57] + "…"
        self.notify(f"Copied to the clipboard: {shown}", timeout=3, markup=False)

    # -- blocked words ----------------------------------------------------------------------------
    def action_block(self) -> None:
        if not self.suggestions:
            self.bell()
            self.notify("There is no suggestion to block.", timeout=3)
            return
        self.push_screen(BlockScreen(self.suggestions), self._block_chosen)

    def _block_chosen(self, index: int | None) -> None:
        if index is None:
            return
        word = self.suggestions[index] if index < len(self.suggestions) else None
        if word is None:
            return
        try:
            self.blocked = controls.block(self.device, word)
        except DeviceError as exc:
            self.notify(str(exc), title="Not blocked", severity="error", markup=False)
            return
        self.request_suggestions(self.typing.value)
        self.notify(f"“{word.lower()}” will not be suggested again on this device. Settings (F9) unblocks it.",
                    title="Blocked", timeout=5, markup=False)

    def unblock_word(self, word: str) -> None:
        self.blocked = controls.unblock(self.device, word)
        self.request_suggestions(self.typing.value)
        self.notify(f"“{word}” may be suggested again.", timeout=3, markup=False)

    # -- federated participation ------------------------------------------------------------------
    def set_federated(self, on: bool) -> None:
        controls.set_federated(self.device, on)
        self.federated = on
        if not on and self.agent is not None:
            self.agent.stop()  # leaves a round it is in, as a device that stops being idle does
        self.refresh_device_status()
        self.notify("This device takes part in federated training and evaluation while it is eligible." if on
                    else "This device will not join federated training or evaluation. Suggestions still learn "
                         "from your typing here.", title="Federated", timeout=5)

    # -- forgetting what was learned --------------------------------------------------------------
    def action_forget_learned(self) -> None:
        self.push_screen(ConfirmScreen(what_learning_would_go(self.device), "Forget"), self._forget_confirmed)

    def _forget_confirmed(self, confirmed: bool | None) -> None:
        if not confirmed:
            self.notify("Nothing was forgotten.", timeout=3)
            return
        self._stop_training()  # it would write a personal model learned from the text just forgotten
        gone = forget_learned(self.device)
        self._trained_for = self._training_key()  # nothing new to learn from until the next sentences
        if isinstance(self.predictor, FrequencyPredictor):  # its counts are the learned part
            self.predictor = FrequencyPredictor(reason=self.predictor.reason)
            self.request_suggestions(self.typing.value)
        else:  # the mix's personal n-grams and weights: rebuilt from the sentences after the mark (none)
            self._check_model(on_demand=False, load=True)
        self.refresh_device_status()
        self.notify(f"This device forgot what it learned from your typing"
                    f"{' (and its personal model)' if gone.personal_model else ''}; "
                    f"the {gone.kept_sentences:,} sentences of the log were kept.", title="Forgotten")

    # -- the settings screen ----------------------------------------------------------------------
    def action_settings(self) -> None:
        self.push_screen(SettingsScreen())

    # -- delete the log (F8) ----------------------------------------------------------------------
    def action_delete_log(self) -> None:
        question = what_would_go(self.device, self.references_dir)
        self.push_screen(ConfirmScreen(question, "Delete"), self._delete_confirmed)

    def _delete_confirmed(self, confirmed: bool | None) -> None:
        if not confirmed:
            self.notify("Nothing was deleted.", timeout=3)
            return
        self._stop_training()  # it would write a personal model learned from the deleted text
        gone = forget(self.device, self.references_dir)
        had_personal = gone.personal_model
        if isinstance(self.predictor, FrequencyPredictor):  # its counts came from the deleted log
            self.predictor = FrequencyPredictor(reason=self.predictor.reason)
        elif had_personal:  # the personal model learned from the deleted log: back to the global one
            self._check_model(on_demand=False, load=True)
        self.recent = ()
        self.refresh_device_status()
        self.request_suggestions(self.typing.value)
        also = " The references fitted on pooled text were deleted too." if gone.references else ""
        self.notify("This device's typing log was deleted." + also, title="Deleted")
