"""The small images the Dagster UI shows: the portfolio's equity on ``signal_report``, the parameter lab's
heatmap on ``ma_sweep``. Labelled in ASCII: the UI's fonts are not known to hold Chinese."""

from __future__ import annotations

import base64
import io

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


def equity_png(dates: list[str], strategy: list[float | None], hold: list[float | None]) -> bytes:
    """A PNG (600 x 240 px, about 40 KB) of two equity curves as a growth of 1."""
    plt = _pyplot()
    days = np.array(dates, dtype="datetime64[D]")
    figure, axes = plt.subplots(figsize=(6, 2.4), dpi=100)
    try:
        for values, label, color in ((strategy, "strategy", "#c8102e"), (hold, "buy & hold", "#8c959f")):
            axes.plot(days, np.array(values, dtype=float), label=label, color=color, linewidth=1.2)
        axes.axhline(1.0, color="#d0d7de", linewidth=0.8)
        axes.set_title("Equal-weight portfolio: equity (growth of 1)", fontsize=9)
        axes.legend(fontsize=8, frameon=True, framealpha=0.8, loc="best")
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        figure.autofmt_xdate()
        figure.tight_layout()
        return _png(figure)
    finally:
        plt.close(figure)


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


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
