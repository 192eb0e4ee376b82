"""The live part of ``fedkb report``: how the suggestions did while people typed, per model version.

Reads ``<home>/server/live_metrics.json`` (``federated/live_release.py``): counts from the devices'
keyboards, summed over devices and released per (version, source) only from at least the minimum
of devices. They are shown beside the version's offline recall (``server/evals/``), which scores
held-out sentences rather than typing. Source "replayed" is typing by simulated typists
(``bench/typing_replay.py``, ``fedkb demo``), never mistaken for people's. A withheld entry is shown
as withheld, with why. No TensorFlow here; rich and matplotlib are imported only when rendering.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from federated import live_release

if TYPE_CHECKING:
    from rich.console import Console

    from eval.results import EvalResult

DASH = "–"
SOURCE_LABELS = {"typed": "typed by people", "replayed": "replayed (simulated typists)"}
SHORT_SOURCE = {"typed": "typed", "replayed": "replayed*"}
SHORT_COLUMNS = ("version", "source", "devices", "words", "off@3", "imp@1", "imp@3", "start@1", "start@3",
                 "accept", "saved", "modif")
LEGEND = ("off@3: offline recall@3 on held-out sentences; imp@k: impression recall@k (the word was among the first "
          "k chips before it was complete); start@k: already before its first letter; accept: acceptance rate; "
          "saved: keystroke savings; modif: modified after acceptance; *replayed by simulated typists, not people")
COLUMNS = ("version", "source", "devices", "words", "offline recall@3", "impression recall@1",
           "impression recall@3", "at-start recall@1", "at-start recall@3", "acceptance", "keystroke savings",
           "modified after acceptance")
_RATES = ("impression_recall_at_1", "impression_recall_at_3", "start_recall_at_1", "start_recall_at_3",
          "acceptance_rate", "keystroke_savings", "modified_after_acceptance")
TITLE = "live metrics: how the suggestions did while typing (summed over devices)"


def load(server_dir: Path) -> dict[str, dict[str, dict]]:
    """``{version: {source: entry}}`` from ``live_metrics.json``; empty without it.

    A bad file raises ``ReportError``.
    """
    from eval.report_load import ReportError

    try:
        return live_release.load(server_dir)["versions"]
    except live_release.LiveMetricsError as exc:
        raise ReportError(str(exc)) from None


def _pct(v: float | None) -> str:
    return DASH if v is None else f"{100 * v:.1f}%"


def rows(live: Mapping[str, Mapping[str, dict]], evals: Sequence[EvalResult], labels: Mapping[str, str] = SOURCE_LABELS,
         withheld: str = "withheld") -> list[tuple[str, ...]]:
    """One row per (version, source), in version order, typed first; withheld figures say so (``withheld``)."""
    offline = {e.version: e.recall_at_3 for e in evals}
    out = []
    for version in sorted(live, key=lambda v: (len(v), v)):
        for source in ("typed", "replayed"):
            entry = live[version].get(source)
            if entry is None:
                continue
            head = (version, labels[source], str(entry["devices"]))
            if "withheld" in entry:
                out.append((*head, "withheld", _pct(offline.get(version)), *[withheld] * len(_RATES)))
            else:
                s = entry["summary"]
                out.append((*head, f"{s['words']:,}", _pct(offline.get(version)), *(_pct(s[k]) for k in _RATES)))
    return out


def withheld_notes(live: Mapping[str, Mapping[str, dict]]) -> list[str]:
    """Why each withheld entry is withheld, one line each."""
    return [f"version {version}, {SOURCE_LABELS[source]}: {entry['withheld']} (fewer would show devices' own counts)"
            for version in sorted(live) for source, entry in sorted(live[version].items()) if "withheld" in entry]


def render_terminal(live: Mapping[str, Mapping[str, dict]], evals: Sequence[EvalResult], console: Console) -> None:
    """The live table under the offline one; nothing if no live counts were ever summed."""
    from rich.table import Table
    from rich.text import Text

    if not live:
        return
    table = Table(title=TITLE, title_justify="left")
    for i, col in enumerate(SHORT_COLUMNS):
        table.add_column(col, justify="left" if i < 2 else "right", no_wrap=True, min_width=len(col))
    for row in rows(live, evals, SHORT_SOURCE, withheld="·"):  # the words column and the note below say why
        table.add_row(*map(Text, row))
    console.print(table)
    console.print(Text("  " + LEGEND, style="dim"))
    for line in withheld_notes(live):
        console.print(Text("  " + line, style="yellow"))


def html_section(live: Mapping[str, Mapping[str, dict]], evals: Sequence[EvalResult], table, img) -> str:
    """The live section of the HTML report (``table`` and ``img`` are the report's own helpers)."""
    from eval import plots

    if not live:
        return ""
    notes = "".join(f'<p class="empty">{html.escape(line)}</p>' for line in withheld_notes(live))
    plot = img(plots.live_per_version(evals, live), "live impression recall@3 and keystroke savings per version")
    return (f'<section id="live"><h2>{html.escape(TITLE[0].upper() + TITLE[1:])}</h2>'
            + table(COLUMNS, rows(live, evals)) + notes
            + '<p class="note">Impression recall@k: share of finished words that were among the first k chips '
              "at some keystroke before the word was complete; at-start: already before its first letter. "
              "Keystroke savings: letters not typed thanks to accepted, unmodified suggestions, over all letters. "
              "Offline recall@3 is on held-out sentences, not typing.</p>"
            + f'<div class="plots">{plot}</div></section>')


def series(live: Mapping[str, Mapping[str, dict]], versions: Sequence[str], source: str, key: str) -> list:
    """``key`` of the released ``source`` entry of each of ``versions`` (None where absent or withheld)."""
    out = []
    for version in versions:
        entry = live.get(version, {}).get(source)
        out.append(None if entry is None or "withheld" in entry else entry["summary"][key])
    return out
