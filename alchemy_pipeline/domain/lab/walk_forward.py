"""Anchored walk-forward validation of the lab's grid: does choosing the pair with the best past Sharpe ratio
beat the production pair on the days that follow, fold after fold?

The period's trading days are cut into ``folds + 1`` stretches of equal length. Fold k (1..K) looks at the
days before stretch k (in sample, always from the period's start), chooses the pair whose Sharpe ratio over
them is the best (the first in grid order on a tie), and scores it out of sample on stretch k: the Sharpe
ratio of the pair's daily returns over the stretch's days, as the strategy runs through them (a position taken
in sample is carried in, as it would be by anyone who switched to the pair then). The production pair is
scored on the same days. A single split can be lucky; K of them say how stable the choice is.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from alchemy_pipeline.domain.backtest.tearsheet import daily_returns, sharpe_ratios
from alchemy_pipeline.domain.lab.grid import GridError

DEFAULT_FOLDS = 5
SHARPE_DIGITS = 4


def check_folds(folds: int) -> None:
    if folds < 1:
        raise GridError(f"folds={folds}: walk-forward needs 1 fold or more")


def fold_bounds(days: int, folds: int) -> list[int]:
    """The first day (an index of the period's days) of each of the ``folds + 1`` stretches, and the end."""
    check_folds(folds)
    bounds = [days * k // (folds + 1) for k in range(folds + 2)]
    if min(b - a for a, b in itertools.pairwise(bounds)) < 2:
        raise GridError(
            f"folds={folds}: the period's {days} trading days, cut into {folds + 1} stretches, leave fewer than 2 "
            "days in a stretch; use fewer folds or a longer period"
        )
    return bounds


def sharpe_between(returns: np.ndarray, first: int, end: int) -> np.ndarray:
    """Each row's Sharpe ratio over the returns of bars ``first`` to ``end`` (excluded)."""
    return sharpe_ratios(returns[:, first:end])


def _rounded(value: float) -> float | None:
    return round(float(value), SHARPE_DIGITS) if math.isfinite(value) else None


def _summary(values: list[float | None]) -> dict:
    known = [v for v in values if v is not None]
    return {
        "folds_scored": len(known),
        "mean": _rounded(float(np.mean(known))) if known else None,
        "sd": _rounded(float(np.std(known, ddof=1))) if len(known) > 1 else None,
    }


def walk_forward(
    equity: np.ndarray,
    start_value: float,
    bar_days: np.ndarray,
    period_days: np.ndarray,
    bounds: list[int],
    pairs: np.ndarray,
    production: int | None,
) -> dict:
    """The walk-forward of one fund (or the portfolio): ``equity`` is every pair's (rows) at each of its bars
    ``bar_days`` over the period from fresh cash; ``production`` the production pair's row (None when the grid
    lacks it). Each fold's days, chosen pair and the out-of-sample Sharpe of it and of the production pair;
    then the mean and sample standard deviation of both over the folds."""
    returns = daily_returns(equity, start_value) if equity.size else equity
    folds = []
    for k in range(1, len(bounds) - 1):
        first, end = bounds[k], bounds[k + 1]
        split = int(np.searchsorted(bar_days, period_days[first]))
        stop = int(np.searchsorted(bar_days, period_days[end - 1], "right"))
        fold = {
            "in_sample": {"first": str(period_days[0]), "last": str(period_days[first - 1])},
            "out_of_sample": {"first": str(period_days[first]), "last": str(period_days[end - 1])},
            "chosen": None,
            "chosen_out_of_sample_sharpe": None,
            "production_out_of_sample_sharpe": None,
        }
        if returns.size:
            in_sample = sharpe_between(returns, 0, split)
            out_of_sample = sharpe_between(returns, split, stop)
            if not np.isnan(in_sample).all():
                best = int(np.nanargmax(in_sample))
                fold["chosen"] = {"short": int(pairs[best, 0]), "long": int(pairs[best, 1])}
                fold["chosen_out_of_sample_sharpe"] = _rounded(out_of_sample[best])
            if production is not None:
                fold["production_out_of_sample_sharpe"] = _rounded(out_of_sample[production])
        folds.append(fold)
    return {
        "folds": folds,
        "chosen": _summary([f["chosen_out_of_sample_sharpe"] for f in folds]),
        "production": _summary([f["production_out_of_sample_sharpe"] for f in folds]),
    }
