"""The keyboard: type, see three suggested words after every keystroke, accept one with a key.

Finished sentences go to this device's log and nowhere else. Prediction runs in a thread worker
(one at a time; a superseded result is dropped), model updates install in another, and SQLite is
only touched from the event loop, because a sqlite3 connection belongs to the thread that made it.

The rest of the app is mixed in, one role a module: screens and commands (``app_commands.py``),
the person's controls (``app_controls.py``), on-device training (``app_training.py``) and model
updates (``app_updates.py``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Footer, Header

from keyboard.app_commands import CommandsMixin
from keyboard.app_controls import ControlsMixin
from keyboard.app_training import TrainingMixin, personalize_command
from keyboard.app_updates import UpdatesMixin
from keyboard.controls import suggested_words
from keyboard.impressions import SentenceTracker, base_version, chips, ends_sentence
from keyboard.predictor import Learner, Predictor, load_predictor
from keyboard.store import MAX_SENTENCE_CHARS, Device, DeviceError
from keyboard.widgets import Chip, DeviceStatus, RecentSentences, StatusBar, SuggestionBar, TypingInput


def charging_now() -> bool | None:
    """Whether the machine is on mains power; None when it reports no battery (most desktops)."""
    import psutil  # only needed here; the import costs a few milliseconds

    try:
        battery = psutil.sensors_battery()
    except (AttributeError, NotImplementedError, OSError):
        return None
    return None if battery is None else bool(battery.power_plugged)


def is_text(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogates), i.e. something a model can read."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _model_note(predictor: Predictor | None) -> str:
    """What the status bar says when suggestions do not come from a model version."""
    if predictor is None:
        return "loading the model…"
    return f"{getattr(predictor, 'reason', 'no model yet')} — suggesting from your own word counts"


def let_escape_digits_be_alt() -> None:
    """Makes Alt+1..3 reach the app in xterm, tmux, GNOME Terminal and friends.

    Those terminals send Alt+1 as ESC 1. Textual maps ESC 1..3 to the characters WezTerm on macOS
    types for Option+1..3 (¡ ™ £), so the Alt bindings never fire and a stray character is typed.
    Dropping just those three entries lets the parser report them as alt+1..3.
    """
    try:
        from textual._ansi_sequences import ANSI_SEQUENCES_KEYS
    except ImportError:  # a future Textual without the table: nothing to undo
        return
    for digit in "123":
        ANSI_SEQUENCES_KEYS.pop(f"\x1b{digit}", None)


class Predicted(Message):
    """Suggestions for ``text`` from ``predictor`` (a worker posts this; the app may drop it as stale)."""

    def __init__(self, text: str, words: tuple[str, ...], predictor: Predictor, error: str | None = None) -> None:
        super().__init__()
        self.text, self.words, self.predictor, self.error = text, words, predictor, error


class KeyboardApp(CommandsMixin, ControlsMixin, TrainingMixin, UpdatesMixin, App[None]):
    """A next-word-prediction keyboard for one device.

    Args:
        device: the device whose log finished sentences go to (used from the event loop only).
        predictor: suggestions to start with; None loads one with ``predictor_factory`` in a worker.
        predictor_factory: builds a predictor for the device directory (called after an update).
        models_dir: the server's published models (``registry.json``); None disables updates.
        evals_dir: the server's all-device evaluation results, shown on the evaluation screen.
        references_dir: the pooled references (``<home>/references``), deleted with the log by F8.
        idle_after: seconds without a keystroke after which the device counts as idle.
        check_every: seconds between checks for a newly promoted model.
        charging: reports mains power (None = unknown); replaceable so tests are deterministic.
        train_command: the command line of on-device training for a device directory; None disables it.
        server: the coordinator of live rounds; None: the device joins none (nor does it when opted out).
        once: close after the first finished sentence (``fedkb keyboard --once``).
    """

    CSS_PATH = "app.tcss"
    TITLE = "fedkb keyboard"
    BINDINGS: ClassVar[list[Binding]] = [
        # The chips show F1-F3 themselves, so the footer lists only Tab among the accept keys.
        Binding("tab,f1,alt+1", "accept(0)", "accept", priority=True,
                tooltip="accept the first suggestion (or click a suggestion)"),
        Binding("f2,alt+2", "accept(1)", "2nd", show=False, priority=True, tooltip="accept the second suggestion"),
        Binding("f3,alt+3", "accept(2)", "3rd", show=False, priority=True, tooltip="accept the third suggestion"),
        Binding("ctrl+n", "toggle_incognito", "incognito", tooltip="incognito on/off: nothing is logged while on"),
        Binding("ctrl+r", "check_update", "update", tooltip="check for a newer promoted model now"),
        Binding("ctrl+t", "show_eval", "eval", tooltip="evaluation results of this device and of all devices"),
        Binding("ctrl+o", "personalize", "train here",
                tooltip="fine-tune a personal model on this device's log now (also starts by itself when eligible)"),
        Binding("ctrl+y", "copy_text", "copy",
                tooltip="copy the line (or, when it is empty, the last finished sentence) to the clipboard"),
        # F4 and F8 stay out of the footer to keep it on one line; F12 lists them, and settings holds both.
        Binding("f4", "block", "block word", show=False,
                tooltip="never suggest a word again on this device: F4, then the chip's number"),
        Binding("f8", "delete_log", "delete log", show=False, tooltip="delete this device's typing log (asks first)"),
        Binding("f9", "settings", "settings",
                tooltip="federated on/off, blocked words, forget what was learned, delete the log"),
        Binding("f12", "help", "help", tooltip="this help"),
        Binding("ctrl+q,ctrl+c", "quit", "quit", key_display="^q", priority=True, tooltip="quit"),
    ]

    incognito: reactive[bool] = reactive(False)
    suggestions: reactive[tuple[str, ...]] = reactive(tuple)
    recent: reactive[tuple[tuple[str, bool], ...]] = reactive(tuple)  # (sentence, logged), newest last
    status: reactive[DeviceStatus | None] = reactive(None)

    def __init__(
        self,
        device: Device,
        predictor: Predictor | None = None,
        *,
        predictor_factory: Callable[[Path], Predictor] = load_predictor,
        models_dir: Path | None = None,
        evals_dir: Path | None = None,
        references_dir: Path | None = None,
        idle_after: float = 30.0,
        check_every: float = 60.0,
        charging: Callable[[], bool | None] = charging_now,
        train_command: Callable[[Path], list[str]] | None = personalize_command,
        server: str | None = None,
        once: bool = False,
    ) -> None:
        super().__init__()
        let_escape_digits_be_alt()
        self.device, self.predictor, self.predictor_factory = device, predictor, predictor_factory
        self.models_dir, self.evals_dir, self.references_dir = models_dir, evals_dir, references_dir
        self.idle_after, self.check_every, self.charging = idle_after, check_every, charging
        self.last_keystroke = time.monotonic()
        self._previous_text = ""
        self._checking = False  # a model check (install + load) is running in a worker
        self._last_error: str | None = None  # periodic checks report each distinct error once
        self._device_meta: dict = {}
        self.live = SentenceTracker()  # how the chips did for the sentence being typed (keyboard/impressions.py)
        self._live_failed = False  # a failure to record live counts is reported once
        self.train_command = train_command  # None: no on-device training (tests of other things)
        self._training: subprocess.Popen | None = None
        self._trained_for: tuple | None = None  # (version, train sentences) last trained on, this session
        self.init_controls(once)
        # With a coordinator address, the device takes part in live rounds while it is eligible.
        self.agent = None
        if server:
            from keyboard.agent_process import BackgroundAgent  # grpc is imported only by the agent's process

            self.agent = BackgroundAgent(device.directory, server)

    def compose(self) -> ComposeResult:
        # Kept as an attribute: app.query_one() searches whichever screen is on top (help, eval…).
        self.typing = TypingInput(placeholder="Type here — Tab accepts the first suggestion, Enter logs the sentence",
                                  id="typing").data_bind(KeyboardApp.incognito)
        yield Header()
        yield self.typing
        yield SuggestionBar(id="suggestions").data_bind(words=KeyboardApp.suggestions)
        yield RecentSentences(id="recent").data_bind(lines=KeyboardApp.recent)
        yield StatusBar(id="status").data_bind(KeyboardApp.status)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"device {self.device.id}"
        self.refresh_device_status()
        self.set_interval(1.0, self.refresh_status)  # idle and charging change without events
        self.set_interval(10.0, self.refresh_device_status)  # a trainer may record a round meanwhile
        if self.predictor is None or self.models_dir is not None:
            self._check_model(on_demand=False, load=self.predictor is None)
        if self.models_dir is not None:
            self.set_interval(self.check_every, lambda: self._check_model(on_demand=False))
        if self.predictor is not None:
            self.request_suggestions("")

    # -- typing and suggestions ------------------------------------------------------------------
    @on(TypingInput.Changed, "#typing")
    def text_changed(self, event: TypingInput.Changed) -> None:
        text, previous = event.value, self._previous_text
        self._previous_text = text
        if text:  # clearing after a finished sentence is not a keystroke
            self.last_keystroke = time.monotonic()
        if ends_sentence(previous, text):
            self.finish_sentence(text)
        else:
            self.request_suggestions(text)

    @on(TypingInput.Submitted, "#typing")
    def text_submitted(self, event: TypingInput.Submitted) -> None:
        self.finish_sentence(event.value)

    def request_suggestions(self, text: str) -> None:
        if self.predictor is None or len(text) > MAX_SENTENCE_CHARS or not is_text(text):
            self.suggestions = ()  # nothing a model could read, or a line that cannot be logged anyway
            return
        self._predict(self.predictor, text)

    @work(exclusive=True, thread=True, group="predict")
    def _predict(self, predictor: Predictor, text: str) -> None:
        try:
            words, error = tuple(suggested_words(predictor, text, self.blocked)), None
        except Exception as exc:  # a broken predictor must not end the typing session
            words, error = (), f"{type(exc).__name__}: {exc}"
        self.post_message(Predicted(text, words, predictor, error))

    @on(Predicted)
    def show_suggestions(self, message: Predicted) -> None:
        if message.predictor is not self.predictor or message.text != self.typing.value:
            return  # stale: typing moved on, or the model was swapped meanwhile
        if message.error and message.error != self._last_error:
            self._last_error = message.error
            self.notify(message.error, title="Suggestions failed", severity="error", markup=False)
        self.suggestions = chips(message.text, message.words)
        if not self.incognito:
            self.live.shown(message.text, self.suggestions)

    def action_accept(self, index: int) -> None:
        if index >= len(self.suggestions):
            self.bell()
            return
        before = self.typing.value
        self.typing.accept(self.suggestions[index])
        if not self.incognito:
            self.live.accepted(before, self.suggestions[index], self.typing.value)

    @on(Chip.Chosen)
    def chip_chosen(self, message: Chip.Chosen) -> None:
        self.action_accept(message.index)
        self.typing.focus()

    @on(TypingInput.Refused)
    def paste_refused(self, message: TypingInput.Refused) -> None:
        self.notify(message.reason, title="Paste refused", severity="error", timeout=8)

    # -- the log --------------------------------------------------------------------------------
    def finish_sentence(self, text: str) -> None:
        """Logs ``text`` as one sentence (unless incognito) and clears the line for the next."""
        if not text.strip():
            self.notify("Nothing to log: the line is empty.", severity="warning", timeout=3)
            return
        if self.incognito:
            self.recent = (*self.recent, (" ".join(text.split()), False))[-RecentSentences.KEEP :]
            self.live.reset()
            self.typing.clear()
            return
        try:
            stored = self.device.append(text)
        except DeviceError as exc:  # too long or not text: keep the line so nothing typed is lost
            self.notify(str(exc), title="Not logged", severity="error", timeout=8, markup=False)
            return
        self._record_live(text)
        if isinstance(self.predictor, Learner):
            self.predictor.observe(stored)
        self.recent = (*self.recent, (stored, True))[-RecentSentences.KEEP :]
        self.typing.clear()
        self.refresh_device_status()

    def _record_live(self, text: str) -> None:
        """Adds the finished sentence's live counts to the version in use; a failure never stops typing."""
        counts = self.live.finished(text)
        if not counts["words"]:
            return
        try:
            self.device.add_live_counts(base_version(getattr(self.predictor, "version", None)), counts)
        except DeviceError as exc:
            if not self._live_failed:
                self._live_failed = True
                self.notify(f"{exc} (the sentence was logged)", title="Live counts not recorded",
                            severity="warning", timeout=8, markup=False)

    def watch_incognito(self, incognito: bool) -> None:
        self.set_class(incognito, "-incognito")

    def action_toggle_incognito(self) -> None:
        self.incognito = not self.incognito
        # Nothing typed in incognito is kept; a line it began counts nothing when typing resumes.
        self.live.reset(skip_sentence=bool(self.typing.value))
        if not self.incognito:
            self.request_suggestions(self.typing.value)  # the chips now on screen count again
        self.notify("Incognito on: nothing you type is logged." if self.incognito
                    else "Incognito off: finished sentences are logged on this device.", timeout=3)

    # -- status -----------------------------------------------------------------------------------
    def refresh_device_status(self) -> None:
        """Re-reads the log's counts and the status record (cheap: one COUNT and one small table)."""
        self._device_meta = self.device.status()
        self.refresh_status()

    def refresh_status(self) -> None:
        meta, p = self._device_meta, self.predictor
        self.status = DeviceStatus(
            device_id=self.device.id, model=p.version if p is not None else None, model_note=_model_note(p),
            sentences=meta.get("sentences", 0), train_sentences=meta.get("train_sentences", 0),
            last_round=meta.get("last_round"), idle=time.monotonic() - self.last_keystroke >= self.idle_after,
            charging=self.charging(),
            coordinator_unreachable=bool(self.agent is not None and self.agent.running
                                         and meta.get("coordinator_unreachable")),
        )
        eligible = self.status.eligible is not False and self.status.idle  # unknown charging: a desktop on mains
        if self.agent is not None:
            self.agent.ensure(eligible and self.federated)  # an opted-out device never starts its agent
        if eligible:
            self._maybe_personalize()

    def on_unmount(self) -> None:
        self._stop_training()
        if self.agent is not None:
            self.agent.stop()
