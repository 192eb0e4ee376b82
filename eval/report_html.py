"""The HTML page of ``fedkb report``: one self-contained file, inline CSS, plots as ``data:`` PNGs.

What the page shows is loaded and worded by ``eval/report.py`` (terminal and HTML share it);
this module only lays it out. matplotlib is imported only when plots are drawn.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval import ablation, disclosure, live
from eval.report import (
    DASH,
    SUMMARY_COLUMNS,
    TREND_COLUMNS,
    EvalResult,
    ReportData,
    _created,
    _privacy,
    _title,
    _training_line,
    facts,
    pct,
    references_fact,
    summary_rows,
    trend_rows,
)

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1d2330; background: #f5f6f8; margin: 0; }
main { max-width: 1080px; margin: 0 auto; padding: 0 24px 40px; }
header { background: #1f3b66; color: #fff; padding: 22px 24px; margin-bottom: 8px; }
header h1 { margin: 0 auto; max-width: 1080px; font-size: 24px; }
header p { margin: 4px auto 0; max-width: 1080px; opacity: .85; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 16px 22px; margin: 18px 0; }
h2 { font-size: 18px; margin: 0 0 10px; color: #1f3b66; }
h3 { font-size: 14px; margin: 14px 0 6px; color: #4a5568; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; border-bottom: 1px solid #e7eaee; text-align: right; }
th { background: #f0f3f7; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
tr.main td { font-weight: 700; }
dl { display: grid; grid-template-columns: max-content auto; gap: 3px 16px; margin: 8px 0; }
dt { color: #5a6475; } dd { margin: 0; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 12px; }
img { width: 100%; height: auto; border: 1px solid #eef0f3; border-radius: 4px; }
.settings { display: flex; flex-wrap: wrap; gap: 0 28px; }
.note { color: #5a6475; } .empty { color: #8a5a00; }
footer { color: #7a8494; font-size: 12px; text-align: center; }
"""


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], main_first: bool = False) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join(("<tr class='main'>" if main_first and i == 0 else "<tr>")
                   + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{_esc(alt)}">'


def _setting(v: Any) -> str:
    if v is None:
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _settings_html(e: EvalResult) -> str:
    groups: dict[str, dict] = {}
    loose = {k: v for k, v in e.settings.items() if not isinstance(v, dict)}
    groups.update({k: v for k, v in e.settings.items() if isinstance(v, dict)})
    if loose:
        groups["general"] = loose
    groups["privacy"] = {"summary": _privacy(e), **(e.privacy or {})}
    parts = [f"<div><h3>{_esc(name)}</h3>" + _table(("setting", "value"), [(k, _setting(v)) for k, v in g.items()])
             + "</div>" for name, g in groups.items()]
    return '<div class="settings">' + "".join(parts) + "</div>"


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML document."""
    from eval import plots

    e = data.latest
    sections = []
    if e is not None:
        left = "<br>".join(_esc(line) for line in disclosure.statement(data.server_dir, e.privacy, data.references_dir))
        dl = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>"
                     for k, v in [*facts(e), references_fact(e, data.references_dir)])
        dl += f"<dt>what left the devices</dt><dd>{left}</dd>"
        sections.append(f'<section id="latest"><h2>{_esc(_title(e))}</h2>'
                        + _table(SUMMARY_COLUMNS, summary_rows(e), main_first=True) + f"<dl>{dl}</dl>"
                        + '<p class="note">Recall@k: share of next words whose true word is among the top k '
                        "suggestions.</p></section>")
        trend = "".join(_img(plots.recall_per_version(data.evals, k), f"recall@{k} per version") for k in (1, 3))
        if record := ablation.load(data.server_dir):
            sections.append(f'<section id="ablation"><h2>{_esc(ablation.title(record))}</h2>'
                            + _table(ablation.COLUMNS, ablation.table_rows(record)) + "</section>")
        sections.append(f'<section id="trend"><h2>Trend over versions</h2><div class="plots">{trend}</div>'
                        + _table(TREND_COLUMNS, trend_rows(data)) + "</section>")
        sections.append(live.html_section(data.live, data.evals, _table, _img))
    if data.rounds:
        sections.append(f'<section id="training"><h2>Training</h2><p>{_esc(_training_line(data))}</p>'
                        + '<div class="plots">' + _img(plots.loss_per_round(data.rounds, data.evals),
                                                        "training loss per round") + "</div></section>")
    if e is not None:
        hist = (_img(plots.device_histogram(e), "histogram of per-device recall@1") if e.histogram_counts
                else '<p class="empty">This evaluation has no per-device histogram.</p>')
        quant = _table(tuple(e.quantiles), [[pct(v) for v in e.quantiles.values()]]) if e.quantiles else ""
        sections.append(f'<section id="devices"><h2>Per-device recall@1, version {_esc(e.version)}</h2>'
                        f'<div class="plots">{hist}</div>{quant}</section>')
        sections.append(f'<section id="settings"><h2>Settings of the run</h2>{_settings_html(e)}</section>')
        sub = f"latest version {e.version} · round {e.round if e.round is not None else DASH} · evaluated {_created(e)}"
    else:
        what = "`fedkb eval`" if data.rounds else "`fedkb train`, then `fedkb eval`"
        sections.insert(0, f'<section id="empty"><h2>No evaluation yet</h2><p class="empty">Nothing has been '
                        f"evaluated in {_esc(data.server_dir)}. Run {_esc(what)} and then `fedkb report` again."
                        "</p></section>")
        sub = "no evaluated version yet"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>fedkb report{_esc(' · ' + e.version) if e else ''}</title><style>{CSS}</style></head><body>"
            f"<header><h1>fedkb report</h1><p>{_esc(sub)}</p></header><main>{''.join(sections)}"
            f"<footer>generated {now} from {_esc(data.server_dir)}</footer></main></body></html>\n")


def write_html(data: ReportData, path: Path) -> Path:
    """Writes :func:`render_html` to ``path`` atomically (temp file, fsync, rename); returns ``path``.

    Always writes a page, even with no data: it then says which commands to run first.
    """
    from common.atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render_html(data).encode("utf-8"))
    return path
