"""The keyboard's widgets: each does one job; state flows down as attributes, choices flow up as messages."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, Static

from keyboard.store import MAX_SENTENCE_CHARS
from tokenizer.words import typed_word

CHIP_KEYS = ("F1", "F2", "F3")  # also Tab (first), Alt+1..3; the help screen lists them all
ATTACHING_PUNCTUATION = ",.;:!?"  # typed right after an accepted word, these replace its space
MIN_EXAMPLES = 5  # train sentences a device needs before it can join a round (fedkb train --min-examples)


class TypingInput(Input):
    """The line being typed: takes accepted words, attaches punctuation to them, refuses oversized pastes."""

    class Refused(Message):
        """A paste was not inserted; ``reason`` says why."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    incognito: reactive[bool] = reactive(False)
    _auto_space = False  # the line ends with the space an accepted word brought

    def watch_incognito(self, incognito: bool) -> None:
        self.border_title = "INCOGNITO — nothing is logged" if incognito else None

    def accept(self, word: str) -> None:
        """Replaces the partly typed last word with ``word`` and a space."""
        value = self.value
        partial = typed_word(value)
        self.value = f"{value[: len(value) - len(partial)]}{word} "
        self.cursor_position = len(self.value)
        self._auto_space = True

    @on(events.Key)
    def attach_punctuation(self, event: events.Key) -> None:
        # Runs before Input inserts the character: "cat ," becomes "cat," as on a phone keyboard.
        if (self._auto_space and event.character and event.character in ATTACHING_PUNCTUATION
                and self.value.endswith(" ") and self.cursor_position == len(self.value)):
            self.value = self.value[:-1]
            self.cursor_position = len(self.value)
        self._auto_space = False

    @on(events.Paste)
    def refuse_huge_paste(self, event: events.Paste) -> None:
        # Input inserts only the first line of a paste; that is what would have to fit.
        line = event.text.splitlines()[0] if event.text else ""
        if len(self.value) + len(line) > MAX_SENTENCE_CHARS:
            event.prevent_default()  # keeps Input's own paste handler from inserting it
            event.stop()
            self.post_message(self.Refused(
                f"A paste of {len(line):,} characters would make this sentence longer than the "
                f"{MAX_SENTENCE_CHARS:,} allowed; nothing was inserted and nothing logged."
            ))


class Chip(Static):
    """One suggested word with its key; clicking it chooses the word."""

    word: reactive[str] = reactive("")

    class Chosen(Message):
        """The person clicked the chip at ``index``."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, index: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.index = index

    def render(self) -> Text:
        return Text.assemble((f"{CHIP_KEYS[self.index]} ", "dim"), self.word or "·")

    def watch_word(self, word: str) -> None:
        self.set_class(not word, "-empty")

    def on_click(self) -> None:
        if self.word:
            self.post_message(self.Chosen(self.index))


class SuggestionBar(Horizontal):
    """Three chips showing the current suggestions, best first."""

    words: reactive[tuple[str, ...]] = reactive(tuple)

    def compose(self) -> ComposeResult:
        for i in range(len(CHIP_KEYS)):
            yield Chip(i, id=f"chip-{i}", classes="chip")

    def watch_words(self, words: tuple[str, ...]) -> None:
        for chip in self.query(Chip):
            chip.word = words[chip.index] if chip.index < len(words) else ""


class RecentSentences(Static):
    """The last few sentences finished in this session, marked when incognito kept them out of the log."""

    lines: reactive[tuple[tuple[str, bool], ...]] = reactive(tuple)  # (sentence, logged)
    KEEP = 4

    def render(self) -> Text:
        if not self.lines:
            return Text("Finished sentences appear here. Enter or . ! ? ends a sentence.", style="dim")
        text = Text()
        for sentence, logged in self.lines[-self.KEEP :]:
            text.append("✓ logged  " if logged else "✗ not logged (incognito)  ", "green" if logged else "yellow")
            text.append(sentence + "\n")
        text.rstrip()
        return text


@dataclass(frozen=True)
class DeviceStatus:
    """What the status bar shows; built by the app from the device log and the surroundings."""

    device_id: str
    model: str | None  # installed version the suggestions come from; None = the person's word counts
    model_note: str  # shown when there is no model, or while it loads
    sentences: int
    train_sentences: int
    last_round: int | None
    idle: bool
    charging: bool | None  # None: this machine reports no battery
    unmetered: bool | None = None  # a terminal cannot tell; the simulation assumes unknown
    coordinator_unreachable: bool = False  # this device's agent is running and cannot reach the coordinator

    @property
    def enough_examples(self) -> bool:
        return self.train_sentences >= MIN_EXAMPLES

    @property
    def eligible(self) -> bool | None:
        """True when every condition holds, False when one fails, None when some are unknown."""
        conditions = (self.idle, self.charging, self.unmetered, self.enough_examples)
        if False in conditions:
            return False
        return None if None in conditions else True


def _mark(value: bool | None) -> tuple[str, str]:
    return {True: ("✓", "green"), False: ("✗", "red"), None: ("?", "yellow")}[value]


class StatusBar(Static):
    """Device id, model, log size, last round joined, and whether the device could train now."""

    status: reactive[DeviceStatus | None] = reactive(None)

    def render(self) -> Text:
        s = self.status
        if s is None:
            return Text("")
        model = Text(f"model {s.model}", "bold") if s.model else Text(s.model_note, "italic")
        first = Text.assemble(("device ", "dim"), (s.device_id, "bold"), " · ", model, " · ",
                              f"{s.sentences:,} sentence{'' if s.sentences == 1 else 's'} logged", " · ",
                              f"last round joined {s.last_round if s.last_round is not None else '—'}")
        if s.coordinator_unreachable:
            first.append_text(Text.assemble(" · ", ("coordinator unreachable", "red bold")))
        verdict = {True: ("yes", "green bold"), False: ("no", "red bold"), None: ("maybe", "yellow bold")}[s.eligible]
        second = Text.assemble(("eligible to train: ", "dim"), verdict)
        for label, value, extra in (
            ("idle", s.idle, ""), ("charging", s.charging, ""), ("unmetered", s.unmetered, ""),
            ("examples", s.enough_examples,
             f" {s.train_sentences} {'≥' if s.enough_examples else '<'} {MIN_EXAMPLES} train sentences"),
        ):
            second.append(" · ")
            second.append(f"{label} ")
            second.append(*_mark(value))
            second.append(extra, "dim")
        return Text("\n").join([first, second])
