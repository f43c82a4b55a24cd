"""The tearsheet of a fund or of the portfolio: the figures analysts judge a strategy by beyond the running
ones of the backtest's documents (``backtests/tearsheets/<ts_code>.json``).

Every figure is computed from a sleeve's equity at each of the fund's published bars, in full precision (the
backtest's state, as the equity ledger keeps it), and from the starting value before the first bar: the daily
returns are ``equity / previous equity - 1``, the very returns of the documents' volatility and Sharpe ratio.
Fractions are rounded as the documents round them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest.engine import FRACTION_DIGITS, TRADING_DAYS_PER_YEAR
from alchemy_pipeline.domain.backtest.state import SLEEVES

DRAWDOWN_EPISODES = 5
# The rolling Sharpe ratio looks back a trading year, as the documents annualise.
ROLLING_BARS = TRADING_DAYS_PER_YEAR
HOLDING_DIGITS = 2
TRADE_STATISTICS = ("profit_factor", "expectancy", "average_holding_days", "best_trade", "worst_trade")
_ANNUAL = math.sqrt(TRADING_DAYS_PER_YEAR)


def _fraction(value: float) -> float | None:
    return round(float(value), FRACTION_DIGITS) if math.isfinite(value) else None


def daily_returns(equity: np.ndarray, start_value: float) -> np.ndarray:
    """Each bar's return over the bar before (the starting value before the first), as the backtest's running
    figures take it; along the last axis (a curve, or rows of curves)."""
    equity = np.asarray(equity, float)
    first = np.full((*equity.shape[:-1], 1), start_value)
    return equity / np.concatenate((first, equity[..., :-1]), axis=-1) - 1


def sharpe_ratios(returns: np.ndarray) -> np.ndarray:
    """Each row's Sharpe ratio: its mean daily return over their sample standard deviation, annualised as the
    documents do, the risk-free rate 0; NaN under two returns or when flat."""
    if returns.shape[1] < 2:
        return np.full(len(returns), np.nan)
    sd = returns.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, returns.mean(axis=1) / sd * _ANNUAL, np.nan)


def sortino(returns: np.ndarray) -> float:
    """The mean daily return over the downside deviation ``sqrt(mean(min(r, 0)^2))``, annualised with the
    square root of 244, the risk-free rate 0; NaN without a return or without a loss."""
    if not len(returns):
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    return float(np.mean(returns)) / downside * _ANNUAL if downside > 0 else math.nan


# The calendar periods of a fund's dates and the index of each one's last date (``period_ends``).
PeriodEnds = tuple[np.ndarray, np.ndarray]


def period_ends(dates: list[str] | np.ndarray, width: int) -> PeriodEnds:
    """The calendar periods of ``dates`` (``width`` 7: months ``YYYY-MM``, 4: years ``YYYY``) and the index of
    each one's last date."""
    periods = np.asarray(dates, dtype=f"U{width}")  # ISO dates cut to their month or year
    last = np.flatnonzero(np.append(periods[1:] != periods[:-1], True)) if len(periods) else np.array([], int)
    return periods[last], last


def period_returns(
    dates: list[str], equity: np.ndarray, start_value: float, width: int, ends: PeriodEnds | None = None
) -> dict[str, float | None]:
    """The return of each calendar period (``width`` 7: months ``YYYY-MM``, 4: years ``YYYY``): its last
    equity over the previous period's last, the starting value before the first. ``ends``: the dates'
    ``period_ends``, when already taken."""
    periods, last = ends or period_ends(dates, width)
    closing = np.asarray(equity, float)[last]
    opening = np.concatenate(([start_value], closing[:-1]))
    return {p: _fraction(r) for p, r in zip(periods.tolist(), (closing / opening - 1).tolist(), strict=True)}


def drawdown_episodes(
    dates: list[str], equity: np.ndarray, start_value: float, as_of: str, count: int = DRAWDOWN_EPISODES
) -> list[dict]:
    """The ``count`` deepest drawdowns, deepest first (the earlier of two as deep): each a stretch of bars
    below the highest equity so far (the starting value included), with the day of its peak (its last bar at
    the peak, the first bar when the peak is the starting value), of its trough (the first at its depth) and of
    its recovery (the first bar back at the peak; None while not recovered), its depth and its calendar days
    from the peak to the recovery, or to ``as_of``."""
    equity = np.asarray(equity, float)
    if not len(equity):
        return []
    peaks = np.maximum.accumulate(np.concatenate(([start_value], equity)))[1:]
    drawdown = equity / peaks - 1
    below = np.concatenate(([0], (equity < peaks).astype(np.int8), [0]))
    starts, ends = np.flatnonzero(np.diff(below) == 1), np.flatnonzero(np.diff(below) == -1)
    if not len(starts):
        return []
    depths = np.minimum.reduceat(drawdown, starts)
    deepest = sorted(range(len(starts)), key=lambda k: (depths[k], starts[k]))[:count]
    episodes = []
    for k in deepest:
        first, end = int(starts[k]), int(ends[k])
        peak = dates[first - 1] if first else dates[0]
        recovery = dates[end] if end < len(dates) else None
        days = (dt.date.fromisoformat(recovery or as_of) - dt.date.fromisoformat(peak)).days
        trough = first + int(np.argmin(drawdown[first:end]))
        episodes.append(
            {"peak": peak, "trough": dates[trough], "recovery": recovery, "depth": _fraction(depths[k]), "days": days}
        )
    return episodes


def rolling_sharpe(
    dates: list[str], returns: np.ndarray, bars: int = ROLLING_BARS, months: PeriodEnds | None = None
) -> list[dict]:
    """At each month's last bar, the Sharpe ratio of the ``bars`` daily returns ending on it (inclusive; the
    sample standard deviation; annualised as the documents do); None while fewer bars, or flat. ``months``: the
    dates' months (``period_ends``), when already taken."""
    _, ends = months or period_ends(dates, 7)
    values = np.full(len(ends), np.nan)
    full = ends >= bars - 1
    if full.any():
        windows = np.lib.stride_tricks.sliding_window_view(np.asarray(returns, float), bars)[ends[full] - bars + 1]
        values[full] = sharpe_ratios(windows)
    return [{"day": dates[i], "value": _fraction(v)} for i, v in zip(ends.tolist(), values.tolist(), strict=True)]


def sleeve_tearsheet(
    dates: list[str],
    ends: dict[int, PeriodEnds],
    equity: np.ndarray,
    returns: np.ndarray,
    start_value: float,
    as_of: str,
) -> dict:
    """A sleeve's figures from its equity at each bar of ``dates``, their months' and years' ends (by the width
    of ``period_ends``) and its daily returns."""
    return {
        "sortino": _fraction(sortino(returns)),
        "monthly_returns": period_returns(dates, equity, start_value, 7, ends[7]),
        "yearly_returns": period_returns(dates, equity, start_value, 4, ends[4]),
        "drawdowns": drawdown_episodes(dates, equity, start_value, as_of),
        "rolling_sharpe": rolling_sharpe(dates, returns, months=ends[7]),
    }


def closed_trades(trades: list[dict], dates: list[str]) -> list[tuple[float, int]]:
    """The net return and the bars held (from the entry's bar to the exit's, among ``dates``, the fund's bars)
    of each closed trade as published."""
    closed = [t for t in trades if t["exit_day"] is not None]
    # Bisected in the list: a fund has tens of trades and thousands of bars, not worth an array of them.
    return [
        (t["return"], bisect.bisect_left(dates, t["exit_day"]) - bisect.bisect_left(dates, t["entry_day"]))
        for t in closed
    ]


def trade_statistics(closed: list[tuple[float, int]]) -> dict:
    """Over closed trades (``closed_trades``; the portfolio pools its funds'), net of fees: the profit factor
    (the sum of the gains over the sum of the losses, of their net returns; None without a loss), the
    expectancy (the mean net return), the average bars held, and the best and worst net returns."""
    if not closed:
        return {"closed_trades": 0, **dict.fromkeys(TRADE_STATISTICS)}
    returns = np.array([r for r, _ in closed], float)
    losses = -returns[returns < 0].sum()
    return {
        "closed_trades": len(closed),
        "profit_factor": _fraction(returns[returns > 0].sum() / losses) if losses > 0 else None,
        "expectancy": _fraction(returns.mean()),
        "average_holding_days": round(float(np.mean([b for _, b in closed])), HOLDING_DIGITS),
        "best_trade": _fraction(returns.max()),
        "worst_trade": _fraction(returns.min()),
    }


def relative(strategy: np.ndarray, hold: np.ndarray) -> dict:
    """The strategy's beta (the sample covariance of its daily returns with holding's over holding's sample
    variance) and alpha (``(mean strategy - beta x mean holding) x 244``); None under two returns or when
    holding's did not vary."""
    if len(hold) < 2 or not np.ptp(hold) > 0:
        return {"alpha": None, "beta": None}
    beta = float(np.cov(strategy, hold, ddof=1)[0, 1] / np.var(hold, ddof=1))
    alpha = (float(np.mean(strategy)) - beta * float(np.mean(hold))) * TRADING_DAYS_PER_YEAR
    return {"alpha": _fraction(alpha), "beta": _fraction(beta)}


def headline_ratios(equity: pd.DataFrame, start_value: float) -> dict:
    """The strategy's Sortino ratio and beta against holding, as its tearsheet publishes them."""
    strategy = daily_returns(equity["strategy"].to_numpy(float), start_value)
    hold = daily_returns(equity["buy_and_hold"].to_numpy(float), start_value)
    return {"sortino": _fraction(sortino(strategy)), "beta": relative(strategy, hold)["beta"]}


def tearsheet(code: str, as_of: str, equity: pd.DataFrame, start_value: float, closed: list[tuple[float, int]]) -> dict:
    """The published tearsheet of one fund (or the portfolio) as of ``as_of``: ``equity`` is its ledger
    (``day``, ``strategy``, ``buy_and_hold``: the equity at each published bar, in day order) and ``closed``
    its closed trades (``closed_trades``)."""
    dates = equity["day"].tolist()
    curves = {sleeve: equity[sleeve].to_numpy(float) for sleeve in SLEEVES}
    returns = {sleeve: daily_returns(curve, start_value) for sleeve, curve in curves.items()}
    sheet = {"as_of": as_of, "ts_code": code}
    # Both sleeves' periods: one calendar, cut to months and years from one array of the dates.
    day_array = np.asarray(dates, dtype="U10")
    ends = {width: period_ends(day_array, width) for width in (7, 4)}
    for sleeve in SLEEVES:
        sheet[sleeve] = sleeve_tearsheet(dates, ends, curves[sleeve], returns[sleeve], start_value, as_of)
    sheet["strategy"].update(trade_statistics(closed))
    sheet["relative"] = relative(returns["strategy"], returns["buy_and_hold"])
    return sheet
