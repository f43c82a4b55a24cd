"""The small image of the portfolio's equity that the Dagster UI shows on ``signal_report``."""

from __future__ import annotations

import base64
import io

import numpy as np


def equity_png(dates: list[str], strategy: list[float | None], hold: list[float | None]) -> bytes:
    """A PNG (600 x 240 px, about 40 KB) of two equity curves as a growth of 1, labelled in ASCII:
    the UI's fonts are not known to hold Chinese."""
    import matplotlib  # here: it takes a second to import, and only the report's step draws

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

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
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
