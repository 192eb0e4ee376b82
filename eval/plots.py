"""The matplotlib figures of ``fedkb report``, returned as PNG bytes.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), never
through pyplot: nothing opens a window, no figure is left in a global registry, and the caller's
backend choice is untouched. matplotlib is imported inside the functions, so importing this
module costs nothing.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eval.results import EvalResult, RoundMetrics

FEDERATED_COLOR = "#1f5fbf"
BASELINE_STYLE = {  # name -> (label, color); the references of `fedkb eval --references`, fitted on pooled text
    "unigram": ("unigram (pooled ref.)", "#8a8a8a"),
    "ngram": ("KN trigram (pooled ref.)", "#d9822b"),
    "centralized_lstm": ("centralized LSTM (pooled ref.)", "#2e9e5b"),
}


def _figure(width: float = 6.4, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", color="#e3e3e3", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No "Software" text chunk: the report carries no URLs at all, not even inside a PNG.
    fig.savefig(buf, format="png", dpi=130, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def _percent_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.set_ylim(bottom=0)


def recall_per_version(evals: Sequence[EvalResult], k: int) -> bytes:
    """recall@k of the product and of the federated LSTM alone per evaluated version, the baselines dashed."""
    from matplotlib.patheffects import withStroke

    fig = _figure()
    ax = fig.add_subplot()
    x = list(range(len(evals)))
    labels = [f"{e.version}\nround {e.round}" if e.round is not None else e.version for e in evals]

    def series(values):
        pts = [(i, 100 * v) for i, v in zip(x, values) if v is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    names = [n for n in BASELINE_STYLE if any(n in e.baselines for e in evals)]
    names += sorted({n for e in evals for n in e.baselines} - set(names))
    for name in names:
        label, color = BASELINE_STYLE.get(name, (name, "#b07cc6"))
        xs, ys = series([e.baselines[name].recall(k) if name in e.baselines else None for e in evals])
        if xs:
            ax.plot(xs, ys, linestyle="--", marker="o", markersize=4, linewidth=1.4, color=color, label=label)
    xs, ys = series([e.recall(k) for e in evals])
    product = series([e.products["product"].recall(k) if "product" in e.products else None for e in evals])
    if product[0]:  # the LSTM alone, faded, under the product
        ax.plot(xs, ys, marker="s", markersize=4, linewidth=1.4, color=FEDERATED_COLOR, alpha=0.55,
                label="global LSTM alone", zorder=3)
        xs, ys = product
    ax.plot(xs, ys, marker="o", markersize=6, linewidth=2.4, color=FEDERATED_COLOR,
            label="product (what the keyboard shows)" if product[0] else "federated model", zorder=3)
    for xi, yi in zip(xs, ys):
        ax.annotate(f"{yi:.1f}%", (xi, yi), textcoords="offset points", xytext=(0, 8), ha="center",
                    fontsize=8, color=FEDERATED_COLOR, fontweight="bold", zorder=4,
                    path_effects=[withStroke(linewidth=3, foreground="white")])
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlim(-0.5, len(evals) - 0.5)
    _style(ax, f"recall@{k} per model version", "model version", f"recall@{k}")
    _percent_axis(ax)
    ax.set_ylim(top=max(ax.get_ylim()[1] * 1.1, 1))
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles[-1:] + handles[:-1], names[-1:] + names[:-1], loc="outside lower center", ncols=len(handles),
               fontsize=8, frameon=False)
    return _png(fig)


def loss_per_round(rounds: Sequence[RoundMetrics], evals: Sequence[EvalResult] = ()) -> bytes:
    """Client training loss per round; dotted lines mark the rounds of evaluated versions."""
    fig = _figure()
    ax = fig.add_subplot()
    pts = [(r.round, r.loss) for r in rounds if r.loss is not None]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], color=FEDERATED_COLOR, linewidth=2,
            marker="o" if len(pts) <= 40 else None, markersize=4)
    mid = (pts[0][0] + pts[-1][0]) / 2 if pts else 0
    for e in evals:
        if e.round is not None:
            right = e.round > mid  # label on the inner side of the line, so it never leaves the plot
            ax.axvline(e.round, color="#9a9a9a", linestyle=":", linewidth=1)
            ax.annotate(f"version {e.version}", (e.round, 1), xycoords=("data", "axes fraction"),
                        xytext=(-3 if right else 3, -10), ha="right" if right else "left",
                        textcoords="offset points", fontsize=8, color="#6a6a6a")
    if pts:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _style(ax, "training loss per round", "round", "loss (mean over clients)")
    return _png(fig)


def device_histogram(ev: EvalResult) -> bytes:
    """Histogram of per-device recall@1 of one version, with its median and p10/p90."""
    fig = _figure()
    ax = fig.add_subplot()
    edges = [100 * e for e in ev.histogram_edges]
    widths = [b - a for a, b in itertools.pairwise(edges)]
    ax.bar(edges[:-1], ev.histogram_counts, width=widths, align="edge", color="#9db8e3",
           edgecolor=FEDERATED_COLOR, linewidth=0.8)
    q = ev.quantiles
    if ev.histogram_counts:
        ax.set_ylim(0, max(max(ev.histogram_counts) * 1.3, 1))  # headroom for the quantile labels
    for key, style, dy in (("p10", ":", -12), ("p50", "-", -24), ("p90", ":", -12)):
        if q.get(key) is not None:
            ax.axvline(100 * q[key], color="#333333", linestyle=style, linewidth=1.2)
            ax.annotate(f"{key} {100 * q[key]:.1f}%", (100 * q[key], 1), xycoords=("data", "axes fraction"),
                        xytext=(3, dy), textcoords="offset points", fontsize=8, color="#333333")
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    devices = f", {ev.devices} devices" if ev.devices is not None else ""
    _style(ax, f"per-device recall@1, version {ev.version}{devices}", "recall@1 on the device's held-out text",
           "devices")
    return _png(fig)


LIVE_STYLE = {  # (source, summary key) -> (label, color, linestyle)
    ("typed", "impression_recall_at_3"): ("live impression recall@3, typed", "#c0392b", "-"),
    ("typed", "keystroke_savings"): ("keystroke savings, typed", "#2e9e5b", "-"),
    ("replayed", "impression_recall_at_3"): ("impression recall@3, replayed (simulated)", "#c0392b", "--"),
    ("replayed", "keystroke_savings"): ("keystroke savings, replayed (simulated)", "#2e9e5b", "--"),
}


def live_per_version(evals: Sequence[EvalResult], live: dict) -> bytes:
    """Live impression recall@3 and keystroke savings per version, offline recall@3 beside.

    Typed sentences are drawn solid, replayed ones dashed.
    """
    from eval.live import series

    versions = sorted({e.version for e in evals} | set(live), key=lambda v: (len(v), v))
    offline = {e.version: e.recall_at_3 for e in evals}
    fig = _figure()
    ax = fig.add_subplot()
    x = list(range(len(versions)))

    def plot(values, **style):
        pts = [(i, 100 * v) for i, v in zip(x, values) if v is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=5, linewidth=1.8, **style)

    plot([offline.get(v) for v in versions], color=FEDERATED_COLOR, label="offline recall@3 (held-out text)")
    for (source, key), (label, color, linestyle) in LIVE_STYLE.items():
        plot(series(live, versions, source, key), color=color, linestyle=linestyle, label=label)
    ax.set_xticks(x, versions, fontsize=8)
    ax.set_xlim(-0.5, len(versions) - 0.5)
    _style(ax, "live metrics and offline recall@3 per version", "model version", "share")
    _percent_axis(ax)
    ax.set_ylim(top=max(ax.get_ylim()[1] * 1.1, 1))
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    return _png(fig)
