"""The screens of the person's own controls: choosing a suggestion to block, and the settings screen.

The screens only show and ask; what a choice does is the app's (``keyboard/app_controls.py``), so
a key, a button and a command-palette entry all do the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Label, ListItem, ListView, Static, Switch

from keyboard.widgets import CHIP_KEYS


def _state(on: bool) -> tuple[str, str]:
    return ("ON ", "bold green") if on else ("OFF", "bold red")


class BlockScreen(ModalScreen[int | None]):
    """Which chip's word to block: 1-3 (or F1-F3) chooses, escape cancels."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("1,f1", "dismiss(0)", "block 1st", show=False),
        Binding("2,f2", "dismiss(1)", "block 2nd", show=False),
        Binding("3,f3", "dismiss(2)", "block 3rd", show=False),
        Binding("escape,f4", "dismiss(None)", "cancel"),
    ]

    def __init__(self, words: Sequence[str]) -> None:
        super().__init__()
        self.words = tuple(words)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Never suggest which word again on this device?", classes="title")
            for i, word in enumerate(self.words):
                yield Static(f"{i + 1}  ({CHIP_KEYS[i]})  {word}", classes="choice", markup=False)
            yield Static("Press its number. Escape cancels. Blocked words can be unblocked in settings (F9).",
                         classes="note")

    def action_dismiss(self, result: int | None = None) -> None:  # type: ignore[override]
        if result is not None and result >= len(self.words):
            self.app.bell()  # no word on that chip
            return
        self.dismiss(result)


class SettingsScreen(Screen[None]):
    """Each control with its state: federated participation, incognito, blocked words, forgetting."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,f9", "app.pop_screen", "back to typing")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Label("Settings — kept on this device only", classes="title")
            with Horizontal(classes="setting"):
                yield Switch(id="federated")
                yield Static(id="federated-label", classes="label")
            with Horizontal(classes="setting"):
                yield Switch(id="incognito")
                yield Static(id="incognito-label", classes="label")
            yield Label("Blocked words — never suggested on this device", classes="section")
            yield ListView(id="blocked")
            yield Static("", id="blocked-empty", classes="empty")
            with Horizontal(classes="buttons"):
                yield Button("Unblock", id="unblock", variant="primary")
                yield Button("Forget what was learned…", id="forget-learned", variant="warning")
                yield Button("Delete log… (F8)", id="delete-log", variant="error")
        yield Footer()

    async def on_mount(self) -> None:
        await self.show_state()

    async def on_screen_resume(self) -> None:  # back from a confirmation dialog: show what it changed
        await self.show_state()

    async def show_state(self) -> None:
        """Sets every control from the app's current state (without posting Changed messages)."""
        app = self.app
        for switch_id, value in (("#federated", app.federated), ("#incognito", app.incognito)):
            switch = self.query_one(switch_id, Switch)
            with switch.prevent(Switch.Changed):
                switch.value = value
        # The state in words too: a switch's colours do not show in every terminal.
        self.query_one("#federated-label", Static).update(Text.assemble(
            _state(app.federated), " take part in federated training and evaluation (off: this device never "
            "joins a round; suggestions still learn from your typing here)"))
        self.query_one("#incognito-label", Static).update(Text.assemble(
            _state(app.incognito), " incognito: log nothing you type (Ctrl+N)"))
        words = sorted(app.blocked)
        listing = self.query_one("#blocked", ListView)
        await listing.clear()
        await listing.extend(ListItem(Label(w, markup=False), name=w) for w in words)
        listing.display = bool(words)
        empty = self.query_one("#blocked-empty", Static)
        empty.update("No word is blocked. F4 while typing blocks one of the suggestions.")
        empty.display = not words
        self.query_one("#unblock", Button).disabled = not words

    @on(Switch.Changed, "#federated")
    async def federated_changed(self, event: Switch.Changed) -> None:
        self.app.set_federated(event.value)
        await self.show_state()

    @on(Switch.Changed, "#incognito")
    async def incognito_changed(self, event: Switch.Changed) -> None:
        if event.value != self.app.incognito:
            self.app.action_toggle_incognito()
        await self.show_state()

    @on(Button.Pressed, "#unblock")
    async def unblock_selected(self) -> None:
        item = self.query_one("#blocked", ListView).highlighted_child
        if item is not None and item.name:
            self.app.unblock_word(item.name)
            await self.show_state()

    @on(ListView.Selected, "#blocked")
    async def unblock_chosen(self, event: ListView.Selected) -> None:  # Enter on a word
        if event.item.name:
            self.app.unblock_word(event.item.name)
            await self.show_state()

    @on(Button.Pressed, "#forget-learned")
    def forget_learned(self) -> None:
        self.app.action_forget_learned()

    @on(Button.Pressed, "#delete-log")
    def delete_log(self) -> None:
        self.app.action_delete_log()
