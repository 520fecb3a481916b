"""Charts of the key figures with matplotlib (Agg: no display, safe in a server process)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: the gateway and the CLI never open a window

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from gateway.figures._table import Row

# Colours with at least 4.5:1 contrast against white (WCAG AA for text and marks).
SHOWN = "#1f4e79"
HIDDEN = "#595959"


def _figure(rows: Sequence[Row], title: str) -> Figure:
    height = max(2.5, 0.42 * len(rows) + 1.2)
    figure, axes = plt.subplots(figsize=(8, height), dpi=100)
    labels = [r.label for r in rows]
    # A proportion as per cent, so that a rate and a count share one readable axis.
    values = [
        0.0 if r.value is None else (r.value * 100 if r.numerator is not None else r.value)
        for r in rows
    ]
    colours = [HIDDEN if r.suppressed else SHOWN for r in rows]
    bars = axes.barh(range(len(rows)), values, color=colours)
    for bar, row in zip(bars, rows, strict=True):
        text = "skjult" if row.suppressed else "-" if row.value is None else f"{bar.get_width():g}"
        if row.numerator is not None and row.value is not None:
            text += " %"
        axes.annotate(
            text,
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color="#000000",
        )
    axes.set_yticks(range(len(rows)), labels=labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_title(title, fontsize=10)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    return figure


def chart_png(rows: Sequence[Row], title: str) -> bytes:
    figure = _figure(rows, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def chart_svg(rows: Sequence[Row], title: str) -> str:
    figure = _figure(rows, title)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # inline: without the XML declaration and DOCTYPE
