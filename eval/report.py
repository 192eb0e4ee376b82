"""``fedkb report``: evaluation results and training metrics, in the terminal and as one HTML file.

The inputs are read and checked by ``eval/report_load.py``; this module words them (the rows and
facts that the terminal and the HTML page both show) and renders them in the terminal. Missing
values show as "–".

The HTML page (``eval/report_html.py``) is self-contained: inline CSS, plots as base64 PNG
``data:`` URIs, no scripts and no links, so it opens offline and can be mailed around. With no
evaluation and no metrics, :func:`write_html` still writes a page, which says that there is nothing
to report yet and which commands to run. No TensorFlow here; rich and matplotlib are imported only
when rendering.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from eval import ablation, disclosure, live
from eval.report_load import ReportData
from eval.results import BASELINE_LABELS, EvalResult

if TYPE_CHECKING:
    from rich.console import Console

DASH = "–"


# -- shared formatting --------------------------------------------------------------------------
def pct(v: float | None) -> str:
    return DASH if v is None else f"{100 * v:.1f}%"


def _int(v: float | None) -> str:
    return DASH if v is None else f"{int(v):,}"


def _promotion(e: EvalResult) -> str:
    status = {True: "promoted", False: "not promoted", None: "promotion unknown"}[e.promoted]
    return f"{status} ({e.promotion_reason})" if e.promotion_reason else status


def _privacy(e: EvalResult) -> str:
    p = e.privacy or {}
    eps, noise = p.get("epsilon"), p.get("noise_multiplier")
    if eps is not None:
        extra = [f"δ = {p['delta']:g}" if isinstance(p.get("delta"), (int, float)) else None, p.get("accountant")]
        if p.get("mechanism") == "ftrl":  # DP-FTRL: ρ-zCDP beside ε, and the separation instead of sampling
            extra += [f"ρ = {p['rho']:.3g}" if isinstance(p.get("rho"), (int, float)) else None,
                      f"DP-FTRL, each device at most once every {p.get('min_separation')} rounds"]
        extra = ", ".join(str(x) for x in extra if x)
        words = "; ".join(f"{k}: {p[k]}" for k in ("adjacency", "sampling") if isinstance(p.get(k), str))
        amp, plain = p.get("epsilon_amplified"), p.get("epsilon_without_amplification")
        if p.get("sampling_public") and isinstance(amp, (int, float)):
            words += f"; the sampling is public, so amplification does not hold (amplified it would be {amp:g})"
        elif isinstance(plain, (int, float)):
            words += f"; without amplification by sampling ε = {plain:g}"
        return f"ε = {eps:g}" + (f" ({extra})" if extra else "") + (f"; {words}" if words else "")
    if isinstance(noise, (int, float)) and noise > 0:
        return f"DP noise multiplier {noise:g}, ε not computed"
    return "no DP"


def _created(e: EvalResult) -> str:
    if not e.created:
        return DASH
    try:
        t = dt.datetime.fromisoformat(e.created)
    except ValueError:
        return e.created
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if t.tzinfo else "")


def _title(e: EvalResult) -> str:
    bits = [f"round {e.round}" if e.round is not None else None,
            f"{e.devices:,} devices" if e.devices is not None else None,
            f"{e.predictions:,} predictions" if e.predictions is not None else None]
    inner = ", ".join(b for b in bits if b)
    return f"latest version {e.version}" + (f" ({inner})" if inner else "")


def summary_rows(e: EvalResult) -> list[tuple[str, str, str, str, str]]:
    """(model, recall@1, recall@3, recall@5, OOV rate): the ablation of the product, then each baseline.

    The rows add one part at a time: the federated LSTM alone (the beam), with the personal model,
    with the private n-grams; the last row that exists is the product, what the keyboard shows.
    """
    rows = [("global LSTM alone", pct(e.recall_at_1), pct(e.recall_at_3), pct(e.recall_at_5), pct(e.oov_rate))]
    steps = [("lstm_personal", " + personal model")] if "lstm_personal" in e.products else []
    if "product" in e.products:
        steps.append(("product", " + private n-grams = product" if steps else " + personal model = product"))
    for name, label in steps:
        b = e.products[name]
        rows.append((label, pct(b.recall_at_1), pct(b.recall_at_3), pct(b.recall_at_5), pct(b.oov_rate)))
    order = [n for n in BASELINE_LABELS if n in e.baselines] + sorted(set(e.baselines) - set(BASELINE_LABELS))
    for name in order:
        b = e.baselines[name]
        rows.append((b.label, pct(b.recall_at_1), pct(b.recall_at_3), pct(b.recall_at_5), pct(b.oov_rate)))
    return rows


def facts(e: EvalResult) -> list[tuple[str, str]]:
    q = "  ".join(f"{k} {pct(v)}" for k, v in e.quantiles.items()) or DASH
    return [
        ("token loss", DASH if e.token_loss is None else f"{e.token_loss:.3f}"),
        ("perplexity", DASH if e.perplexity is None else f"{e.perplexity:.1f}"),
        ("per-device recall@1", q),
        ("promotion", _promotion(e)),
        ("privacy", _privacy(e)),
        ("on-device personalization", _personalization(e)),
    ]


def _personalization(e: EvalResult) -> str:
    p = e.personalization
    if not p:
        return "no device has fine-tuned a personal model of this version"
    change = p.get("relative_change_at_1")
    rel = f" ({change:+.1%} relative)" if isinstance(change, (int, float)) else ""
    return (f"{p.get('devices')} devices: recall@1 {pct(p.get('global_recall_at_1'))} global → "
            f"{pct(p.get('personal_recall_at_1'))} personal{rel}")


def trend_rows(data: ReportData) -> list[tuple[str, ...]]:
    yes = {True: "yes", False: "no", None: DASH}
    return [(e.version, DASH if e.round is None else str(e.round), pct(e.recall_at_1), pct(e.recall_at_3),
             pct(e.recall_at_5), _int(e.devices), yes[e.promoted]) for e in data.evals]


TREND_COLUMNS = ("version", "round", "recall@1", "recall@3", "recall@5", "devices", "promoted")
SUMMARY_COLUMNS = ("model", "recall@1", "recall@3", "recall@5", "OOV")


def references_fact(e: EvalResult, references_dir: Path | None) -> tuple[str, str]:
    """The report's line on the references: where they are and what they were fitted on, or that there are none."""
    if not e.baselines:
        return ("references", "none computed (`fedkb eval --references` fits them on the devices' pooled raw text)")
    where = f" (kept in {references_dir}, outside server/)" if references_dir is not None else ""
    return ("references", "fitted on the devices' pooled raw text, which a federated keyboard never sees; they "
                          f"bound what the model could reach{where}")


def _training_line(data: ReportData) -> str | None:
    losses = [r.loss for r in data.rounds if r.loss is not None]
    if not data.rounds:
        return None
    text = f"{len(data.rounds)} training rounds (last round {data.rounds[-1].round})"
    return text + (f", loss {losses[0]:.3f} → {losses[-1]:.3f}" if losses else "")


# -- terminal -----------------------------------------------------------------------------------
def render_terminal(data: ReportData, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    latest = data.latest
    if latest is None:
        if data.rounds:
            console.print(Text(f"No evaluation yet: {_training_line(data)}. Run `fedkb eval` to evaluate "
                               "the latest published version.", style="yellow"))
            for line in disclosure.ledger_lines(data.server_dir):
                console.print(Text("  " + line))
        else:
            console.print(Text("Nothing to report yet: no evaluation and no training metrics in "
                               f"{data.server_dir}. Run `fedkb train`, then `fedkb eval`.", style="yellow"))
        return
    table = Table(title=Text(_title(latest)), title_justify="left")
    for i, col in enumerate(SUMMARY_COLUMNS):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=True, min_width=len(col))
    for i, row in enumerate(summary_rows(latest)):
        table.add_row(*map(Text, row), style="bold" if i == 0 else None)
    console.print(table)
    for key, value in [*facts(latest), references_fact(latest, data.references_dir)]:
        console.print(Text.assemble(("  " + key + ": ", "dim"), value))
    if line := _training_line(data):
        console.print(Text.assemble(("  training: ", "dim"), line))
    console.print(Text("  what left the devices:", style="dim"))
    for line in disclosure.statement(data.server_dir, latest.privacy, data.references_dir):
        console.print(Text("    " + line))
    console.print()
    trend = Table(title="trend over versions", title_justify="left")
    for i, col in enumerate(TREND_COLUMNS):
        trend.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
    for row in trend_rows(data):
        trend.add_row(*map(Text, row))
    console.print(trend)
    live.render_terminal(data.live, data.evals, console)
    if record := ablation.load(data.server_dir):
        table = Table(title=ablation.title(record), title_justify="left")
        for i, col in enumerate(ablation.COLUMNS):
            table.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
        for row in ablation.table_rows(record):
            table.add_row(*map(Text, row))
        console.print(table)


# -- HTML (eval/report_html.py) -----------------------------------------------------------------
def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML document (``eval/report_html.py``)."""
    from eval import report_html

    return report_html.render_html(data)


def write_html(data: ReportData, path: Path) -> Path:
    """Writes :func:`render_html` to ``path`` atomically; returns ``path`` (``eval/report_html.py``)."""
    from eval import report_html

    return report_html.write_html(data, path)
