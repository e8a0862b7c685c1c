"""``latency.png``: one panel per latency figure, every series as dots over a box.

matplotlib is optional (the ``bench`` extra); without it no plot is written
and the results say why.
"""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path
from typing import Any

from benchmarks.model import Figure, Series

COLORS = {"subject": "#1f77b4", "variant": "#2ca02c", "baseline": "#7f7f7f"}


def _pyplot() -> Any:
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _rows(figure: Figure) -> list[tuple[Series, str]]:
    rows = [(figure.subject, "subject")]
    rows += [(v, "variant") for v in figure.variants]
    rows += [(b, "baseline") for b in figure.baselines]
    return [(s, kind) for s, kind in rows if s.available and (s.samples or s.hangs)]


def _panel(ax: Any, figure: Figure) -> None:
    rows = _rows(figure)
    values = [v for s, _ in rows for v in s.samples if v > 0]
    top = max(values) if values else 1.0
    for y, (series, kind) in enumerate(rows):
        color = COLORS[kind]
        if series.hangs:
            ax.text(
                0.98,
                y,
                f"never stops (none within {series.timeout_s or 0:g} s) ->",
                transform=ax.get_yaxis_transform(),
                color=color,
                va="center",
                ha="right",
                fontsize=8,
            )
            continue
        jitter = [y + ((i * 7) % 11 - 5) * 0.03 for i in range(len(series.samples))]
        ax.scatter(series.samples, jitter, s=9, color=color, alpha=0.6, zorder=3)
        if len(series.samples) >= 3:
            ax.boxplot(
                series.samples,
                positions=[y],
                vert=False,
                widths=0.5,
                showfliers=False,
                manage_ticks=False,
                zorder=2,
            )
    for check in figure.spec.checks:
        limit, what = check.limit, f"budget {check.stat}"
        if limit is None and check.factor is not None and check.baseline is not None:
            base = figure.baseline(check.baseline)  # a ratio: its limit in this run
            value = None if base is None else base.stat(check.stat)
            limit = None if value is None else check.factor * value
            what = f"budget {check.stat}: {check.factor:g}x {textwrap.shorten(check.baseline, 22)}"
        if check.series is not None:
            continue  # drawn once, for the subject
        if limit is not None and check.stat in ("p50", "p95", "max"):
            ax.axvline(limit, color="#d62728", linestyle="--", linewidth=1)
            ax.annotate(
                what,
                (limit, len(rows) - 0.5),
                color="#d62728",
                fontsize=7,
                rotation=90,
                va="top",
                ha="right",
            )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([textwrap.shorten(s.label, 44) for s, _ in rows], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    low = min(values) if values else 0.1
    if top / max(low, 1e-3) > 20:
        ax.set_xscale("log")
        ticker = importlib.import_module("matplotlib.ticker")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(figure.spec.unit, fontsize=8)
    ax.set_title(textwrap.fill(figure.spec.title, 62), fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)


def write(path: Path, figures: list[Figure]) -> str | None:
    """Write the plot; None when done, else why not."""
    try:
        plt = _pyplot()
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    panels = [f for f in figures if f.spec.plot and f.error is None and _rows(f)]
    if not panels:
        return "no latency samples to plot"
    columns = 2
    lines = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(15, 3.4 * lines), squeeze=False)
    for ax, figure in zip(axes.flat, panels, strict=False):
        _panel(ax, figure)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(
        "sidecar-supervisor latency distributions: blue the supervisor, green its variants, "
        "grey the baselines; red dashes the budget"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
