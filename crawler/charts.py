"""Inline SVG charts for report.html: no network, no script."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any

__all__ = ["bar_chart", "column_chart", "fmt", "pages_over_time"]

_BAR_W, _LABEL_W, _VALUE_W, _ROW_H = 270, 190, 60, 22
# plot area, with room above for the scale and at the sides for the first and last labels
_COL_W, _COL_PAD, _COL_TOP, _COL_H, _AXIS_H = 440, 40, 20, 140, 30
_CHAR_W = 7  # about one character of the 12px labels, to keep axis labels apart
TIMELINE_W = 1000


def fmt(value: Any) -> str:
    """A number exactly as the summary holds it (no separators, no rounding)."""
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def bar_chart(rows: Sequence[tuple[str, int | float]], label: str) -> str:
    """A horizontal bar chart as inline SVG: one bar per `(name, value)` row, in order.

    Names are escaped here; values are printed in full next to their bars, so the chart
    carries the same numbers as the summary.
    """
    if not rows:
        return '<p class="muted">none</p>'
    top = max(value for _, value in rows) or 1
    height = len(rows) * _ROW_H + 4
    width = _LABEL_W + _BAR_W + _VALUE_W
    parts = [
        f'<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}">'
    ]
    for i, (name, value) in enumerate(rows):
        y = i * _ROW_H + 2
        bar = max(1.0, _BAR_W * value / top) if value else 0.0
        shown = name if len(name) <= 30 else name[:29] + "…"
        parts.append(
            f"<g><title>{escape(name)}: {fmt(value)}</title>"
            f'<text x="{_LABEL_W - 8}" y="{y + 15}" text-anchor="end">{escape(shown)}</text>'
            f'<rect class="bar" x="{_LABEL_W}" y="{y + 3}" width="{bar:.1f}" '
            f'height="{_ROW_H - 6}"/>'
            f'<text x="{_LABEL_W + bar + 6:.1f}" y="{y + 15}">{fmt(value)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def column_chart(columns: Sequence[tuple[str, int]], label: str, plot_w: int = _COL_W) -> str:
    """A column chart as inline SVG (histograms, counts over time), `plot_w` wide; every
    column has a tooltip with its label and count, and at most six labels that do not
    overlap are written under the axis."""
    if not columns:
        return '<p class="muted">none</p>'
    top = max(n for _, n in columns) or 1
    width, height = plot_w + 2 * _COL_PAD, _COL_TOP + _COL_H + _AXIS_H
    axis = _COL_TOP + _COL_H
    step = plot_w / len(columns)
    label_w = max(len(name) for name, _ in columns) * _CHAR_W + 12
    every = max(1, math.ceil(len(columns) / 6), math.ceil(label_w / step))
    parts = [
        f'<svg class="columns" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">',
        f'<line x1="{_COL_PAD}" y1="{axis}" x2="{_COL_PAD + plot_w}" y2="{axis}"/>',
        f'<text x="{_COL_PAD}" y="13">highest column: {top}</text>',
    ]
    for i, (name, n) in enumerate(columns):
        h = _COL_H * n / top
        x = _COL_PAD + i * step
        parts.append(
            f"<g><title>{escape(name)}: {n}</title>"
            f'<rect class="bar" x="{x + step * 0.1:.1f}" y="{axis - h:.1f}" '
            f'width="{max(step * 0.8, 1):.1f}" height="{h:.1f}"/></g>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{axis + 16}" text-anchor="middle">'
                f"{escape(name)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def pages_over_time(timeline: dict[str, Any]) -> str:
    """The summary's `timeline` as a column chart: one column per bucket, labelled with the
    bucket's start as a UTC clock time (to the millisecond when buckets are under a second)."""
    start = datetime.fromisoformat(timeline["start"])
    bucket_s = timeline["bucket_s"]
    columns = [
        (_clock(start + timedelta(seconds=i * bucket_s), bucket_s), n)
        for i, n in enumerate(timeline["counts"])
    ]
    return column_chart(columns, "pages over time", TIMELINE_W)


def _clock(at: datetime, bucket_s: float) -> str:
    return at.strftime("%H:%M:%S.%f")[:-3] if bucket_s < 1 else at.strftime("%H:%M:%S")
