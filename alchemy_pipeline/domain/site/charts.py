"""The small images the Dagster UI shows: the portfolio's equity on ``signal_report`` (SVG, drawn here: the
daily run would otherwise spend most of its report step importing matplotlib), the parameter lab's heatmap on
``ma_sweep`` (PNG, matplotlib). Labelled in ASCII: the UI's fonts are not known to hold Chinese."""

from __future__ import annotations

import base64
import io
import math
from xml.sax.saxutils import escape

import numpy as np


def _pyplot():
    import matplotlib  # here: it takes a second to import, and only the steps that draw need it

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


EQUITY_SIZE = (600, 240)
EQUITY_LINES = (("strategy", "#c8102e"), ("buy & hold", "#8c959f"))
PLOT_BOX = (44, 24, 590, 212)  # left, top, right, bottom: room for the title, the y labels and the x labels


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values (steps of 1, 2 or 5 times a power of ten) from ``low`` to ``high``, at most ``most``."""
    span = max(high - low, 1e-9)
    power = 10 ** math.floor(math.log10(span / most))
    step = next(k * power for k in (1, 2, 5, 10) if span / (k * power) <= most)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _date_ticks(days: np.ndarray) -> list[tuple[int, str]]:
    """(index, label) of the first day of each year, or of each quarter over less than two years."""
    months = days.astype("datetime64[M]").astype(int)
    yearly = (days[-1] - days[0]).astype(int) >= 730
    periods = months // (12 if yearly else 3)
    starts = np.flatnonzero(np.diff(periods)) + 1
    if months[0] % (12 if yearly else 3) == 0:  # the series starts in a period's first month
        starts = np.insert(starts, 0, 0)
    every = max(1, math.ceil(len(starts) / 8))
    return [(int(i), str(days[i])[: 4 if yearly else 7]) for i in starts[::every]]


def equity_svg(dates: list[str], strategy: list[float | None], hold: list[float | None]) -> bytes:
    """An SVG (600 x 240) of two equity curves as a growth of 1, the line at 1 drawn light."""
    width, height = EQUITY_SIZE
    left, top, right, bottom = PLOT_BOX
    days = np.array(dates, dtype="datetime64[D]")
    curves = [np.array(values, dtype=float) for values in (strategy, hold)]
    finite = np.concatenate([c[np.isfinite(c)] for c in curves] + [np.array([1.0])])
    low, high = float(finite.min()), float(finite.max())
    pad = (high - low) * 0.05 or 0.05
    low, high = low - pad, high + pad
    last = max(len(days) - 1, 1)

    def x(i: float) -> float:
        return left + (right - left) * i / last

    def y(value: float) -> float:
        return bottom - (bottom - top) * (value - low) / (high - low)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="10">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{width / 2}" y="14" text-anchor="middle" font-size="12">'
        "Equal-weight portfolio: equity (growth of 1)</text>",
    ]
    for value in nice_ticks(low, high):
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eaeef2"/>')
        parts.append(f'<text x="{left - 4}" y="{y(value) + 3:.1f}" text-anchor="end">{value:g}</text>')
    for i, label in _date_ticks(days) if len(days) else []:
        parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{top}" y2="{bottom}" stroke="#eaeef2"/>')
        parts.append(f'<text x="{x(i):.1f}" y="{bottom + 14}" text-anchor="middle">{label}</text>')
    parts.append(f'<line x1="{left}" x2="{right}" y1="{y(1.0):.1f}" y2="{y(1.0):.1f}" stroke="#d0d7de"/>')
    for values, (_, color) in zip(curves, EQUITY_LINES, strict=True):
        for run in np.split(np.arange(len(values)), np.flatnonzero(np.diff(np.isfinite(values))) + 1):
            if len(run) and np.isfinite(values[run[0]]):
                points = " ".join(f"{x(i):.1f},{y(values[i]):.1f}" for i in run)
                parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.2"/>')
    parts.append(f'<rect x="{left + 4}" y="{top}" width="96" height="32" fill="#ffffff" fill-opacity="0.8"/>')
    for row, (label, color) in enumerate(EQUITY_LINES):
        line_y = top + 8 + 14 * row
        parts.append(f'<line x1="{left + 8}" x2="{left + 28}" y1="{line_y}" y2="{line_y}" stroke="{color}" '
                     'stroke-width="2"/>')  # fmt: skip
        parts.append(f'<text x="{left + 32}" y="{line_y + 3}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts).encode("ascii")


def heatmap_png(
    shorts: np.ndarray, longs: np.ndarray, values: np.ndarray, title: str, marked: tuple[int, int]
) -> bytes:
    """A PNG (600 x 300 px) of ``values`` on the grid of (short, long) pairs, red high and green low around 0,
    the pair ``marked`` outlined."""
    plt = _pyplot()
    rows, columns = np.unique(shorts), np.unique(longs)
    grid = np.full((len(rows), len(columns)), np.nan)
    grid[np.searchsorted(rows, shorts), np.searchsorted(columns, longs)] = values
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if len(finite) and np.abs(finite).max() > 0 else 1.0
    figure, axes = plt.subplots(figsize=(6, 3), dpi=100)
    try:
        extent = (columns[0] - 0.5, columns[-1] + 0.5, rows[-1] + 0.5, rows[0] - 0.5)
        image = axes.imshow(grid, cmap="RdYlGn_r", vmin=-limit, vmax=limit, aspect="auto", extent=extent)
        axes.plot([marked[1]], [marked[0]], marker="s", markersize=7, markerfacecolor="none", color="black")
        axes.set_xlabel("long average (days)", fontsize=8)
        axes.set_ylabel("short (days)", fontsize=8)
        axes.set_title(f"{title}; {marked[0]}/{marked[1]} outlined", fontsize=9)
        axes.tick_params(labelsize=7)
        figure.colorbar(image, ax=axes).ax.tick_params(labelsize=7)
        figure.tight_layout()
        return _png(figure)
    finally:
        plt.close(figure)


def markdown_image(image: bytes, alt: str, media_type: str) -> str:
    return f"![{alt}](data:{media_type};base64,{base64.b64encode(image).decode('ascii')})"
