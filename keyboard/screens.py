"""Screens over the keyboard: help, a confirmation before deleting, and on-device evaluation results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Label, Static

from common import live_counts
from common.layout import DeviceLayout

_BASELINE_ORDER = ("unigram", "ngram", "centralized_lstm")


class HelpScreen(ModalScreen[None]):
    """Every key binding, in a table; any of escape, f12 or q closes it."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,f12,q", "dismiss", "close")]

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for keys, what in self.rows:
            table.add_row(keys, what)
        with Vertical(id="dialog"):
            yield Label("fedkb keyboard — keys", classes="title")
            yield Static(table)
            yield Static("What you type stays in this device's log; only model updates and sums leave it. "
                         "Escape closes this help.", classes="note")


class ConfirmScreen(ModalScreen[bool]):
    """Asks a yes/no question; dismisses with True only when the person chooses the action."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "dismiss(False)", "cancel")]

    def __init__(self, question: str, action: str) -> None:
        super().__init__()
        self.question, self.action_label = question, action

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, classes="question", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.action_label, variant="error", id="confirm")
                yield Button("Cancel", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()  # the safe choice is the default

    @on(Button.Pressed)
    def answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")


# -- evaluation results --------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or unreadable (a screen must not crash)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def load_results(directory: Path | None) -> list[dict[str, Any]]:
    """Every readable ``<version>.json`` with a recall in ``directory``, oldest version first."""
    if directory is None or not directory.is_dir():
        return []
    records = []
    for path in sorted(directory.glob("*.json")):
        record = _read_json(path)
        if record is not None and isinstance(record.get("recall_at_1"), (int, float)):
            record.setdefault("model_version", path.stem)
            records.append(record)
    return records


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "—"


def device_table(records: list[dict[str, Any]], latest: int = 5) -> Table:
    table = Table(title="This device (its own held-out sentences)", title_justify="left", expand=True)
    for col in ("version", "recall@1", "recall@3", "predictions"):
        table.add_column(col, justify="left" if col == "version" else "right")
    for r in records[-latest:]:
        table.add_row(str(r["model_version"]), _pct(r.get("recall_at_1")), _pct(r.get("recall_at_3")),
                      f"{r['predictions']:,}" if isinstance(r.get("predictions"), int) else "—")
    return table


def aggregate_table(record: dict[str, Any]) -> Table:
    table = Table(title=f"All devices, version {record['model_version']} ({record.get('devices', '?')} devices)",
                  title_justify="left", expand=True)
    for col in ("predictor", "recall@1", "recall@3"):
        table.add_column(col, justify="left" if col == "predictor" else "right")
    table.add_row("federated LSTM", _pct(record.get("recall_at_1")), _pct(record.get("recall_at_3")), style="bold")
    baselines = record.get("baselines") if isinstance(record.get("baselines"), dict) else {}
    for name in sorted(baselines, key=lambda n: (*_BASELINE_ORDER, n).index(n)):
        b = baselines[name] if isinstance(baselines[name], dict) else {}
        table.add_row(name.replace("_", " "), _pct(b.get("recall_at_1")), _pct(b.get("recall_at_3")))
    return table


def personalization_table(record: dict[str, Any]) -> Table:
    """Global against personal model on this device's held-out sentences (``keyboard/personalize.py``)."""
    in_use = "personal" if record.get("use_personal") else "global"
    table = Table(title=f"Personalization (in use: {in_use} model)", title_justify="left", expand=True)
    for col in ("model", "recall@1", "recall@3"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, label in (("global", f"global {record.get('global_version', '?')}"), ("personal", "personal")):
        scores = record.get(name) if isinstance(record.get(name), dict) else {}
        table.add_row(label, _pct(scores.get("recall_at_1")), _pct(scores.get("recall_at_3")),
                      style="bold" if name == in_use else "")
    return table


_LIVE_COLUMNS = (("impression_recall_at_1", "shown@1"), ("impression_recall_at_3", "shown@3"),
                 ("start_recall_at_1", "start@1"), ("start_recall_at_3", "start@3"),
                 ("acceptance_rate", "accepted"), ("keystroke_savings", "keys saved"),
                 ("modified_after_acceptance", "modified"))


def live_table(counts: dict[str, dict[str, int]]) -> Table:
    """Per version, how the chips did while this device typed (``common/live_counts.py`` defines each rate)."""
    table = Table(title="Live, from your typing (words of finished sentences)", title_justify="left", expand=True)
    table.add_column("version")
    table.add_column("words", justify="right")
    for _, label in _LIVE_COLUMNS:
        table.add_column(label, justify="right")
    for version in sorted(counts):
        rates = live_counts.summary(counts[version])
        table.add_row(version, f"{rates['words']:,}", *(_pct(rates[name]) for name, _ in _LIVE_COLUMNS))
    return table


def recall_chart(device: list[dict[str, Any]], aggregate: list[dict[str, Any]], width: int = 30) -> Text:
    """Recall@3 per version as Unicode bars: this device beside all devices, on one 0–max scale."""
    mine = {str(r["model_version"]): r.get("recall_at_3") for r in device}
    everyone = {str(r["model_version"]): r.get("recall_at_3") for r in aggregate}
    versions = sorted(set(mine) | set(everyone))
    values = [v for v in (*mine.values(), *everyone.values()) if isinstance(v, (int, float))]
    text = Text("recall@3 by version\n", style="bold")
    if not values:
        return text.append("no results yet", style="dim")
    top = max(max(values), 1e-9)
    for version in versions:
        for label, value, style in (("you", mine.get(version), "cyan"), ("all", everyone.get(version), "magenta")):
            if not isinstance(value, (int, float)):
                continue
            eighths = round(value / top * width * 8)
            bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
            text.append(f"{version} {label} ", style="dim")
            text.append(bar.ljust(width + 1), style=style)
            text.append(f"{value:6.1%}\n")
    text.rstrip()
    return text


class EvalScreen(Screen[None]):
    """This device's latest evaluation records, the latest all-device result, and recall per version."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,ctrl+t", "dismiss", "back to typing")]

    def __init__(self, device_dir: Path, evals_dir: Path | None, *,
                 live: dict[str, dict[str, int]] | None = None) -> None:
        super().__init__()
        self.device_dir, self.evals_dir, self.live = device_dir, evals_dir, live or {}

    def compose(self) -> ComposeResult:
        device = load_results(DeviceLayout(self.device_dir).eval)
        aggregate = load_results(self.evals_dir)
        yield Header()
        with VerticalScroll():
            yield Label("Evaluation — how often the word you typed next was among the suggestions", classes="title")
            if device:
                yield Static(device_table(device), id="device-results")
            else:
                yield Static("This device has not evaluated a model yet (it happens after a rollout, "
                             "in `fedkb eval`).", id="device-results", classes="empty")
            personal = _read_json(DeviceLayout(self.device_dir).personalization)
            if personal is not None:
                yield Static(personalization_table(personal), id="personal-results")
            if aggregate:
                yield Static(aggregate_table(aggregate[-1]), id="aggregate-results")
            else:
                yield Static(f"No all-device evaluation found{f' in {self.evals_dir}' if self.evals_dir else ''}.",
                             id="aggregate-results", classes="empty")
            yield Static(recall_chart(device, aggregate), id="chart")
            if self.live:
                yield Static(live_table(self.live), id="live-results")
            else:
                yield Static("Live, from your typing: no finished sentence counted yet (incognito counts nothing).",
                             id="live-results", classes="empty")
        yield Footer()
