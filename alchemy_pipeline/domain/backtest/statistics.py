"""The figures of a state table: each row's returns, drawdown, volatility, Sharpe and trade counts, from its
running sums, for every row at once."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest.engine import (
    DAYS_PER_YEAR,
    FRACTION_DIGITS,
    MONEY_DIGITS,
    PORTFOLIO,
    TRADING_DAYS_PER_YEAR,
    BacktestSettings,
)
from alchemy_pipeline.domain.backtest.state import SLEEVE_FIELDS, SLEEVES, STATE_FIELDS, day_texts, state_numbers
from alchemy_pipeline.domain.numbers import python_round

# Returns over less than a year are not annualised (as the GIPS standards require): a week's gain would
# read as thousands of percent a year.
MIN_DAYS_TO_ANNUALISE = 365


def cagr_of(total_return: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Compound annual growth of each total return over its calendar days; NaN under a year (or without a
    day), -1 for a total loss."""
    total_return, days = np.asarray(total_return, float), np.asarray(days, float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        growth = np.expm1(np.log1p(total_return) * DAYS_PER_YEAR / days)
    growth = np.where(total_return <= -1, -1.0, growth)
    return np.where((days >= MIN_DAYS_TO_ANNUALISE) & np.isfinite(growth), growth, np.nan)


def cagr(total_return: float, first_day: dt.date, as_of: dt.date) -> float | None:
    """``cagr_of`` one return from ``first_day`` to ``as_of``; None under a year."""
    growth = float(cagr_of(np.array([total_return]), np.array([(as_of - first_day).days]))[0])
    return None if growth != growth else growth


METRICS = [
    "total_return",
    "cagr",
    "max_drawdown",
    "max_drawdown_peak",
    "max_drawdown_trough",
    "volatility",
    "sharpe",
    "calmar",
]
STRATEGY_METRICS = [*METRICS, "trades", "win_rate", "exposure", "fees"]
# What the reports' summaries, the fund pages and the UI read of each row.
SUMMARY_METRICS = [
    *(("strategy", m) for m in ("total_return", "cagr", "max_drawdown", "sharpe", "trades", "win_rate", "exposure")),
    ("strategy", "fees"),
    *(("buy_and_hold", m) for m in ("total_return", "cagr", "max_drawdown", "sharpe")),
]
SUMMARY_COLUMNS = [
    "ts_code",
    "name",
    "trade_date",
    "first_day",
    "start",
    "execution",
    *(f"{s}_{m}" for s, m in SUMMARY_METRICS),
]


def state_metrics(states: pd.DataFrame, settings: BacktestSettings) -> pd.DataFrame:
    """Every figure of every row of a state table, from its columns: ``{sleeve}_{metric}`` for ``METRICS``
    (days as day numbers), the strategy's trades, win rate, exposure and fees, and the open trade's marked
    value. The portfolio's trades, win rate, exposure and fees add up its funds' of the same day."""
    numbers = state_numbers(states)
    v = {field: numbers[:, j] for j, field in enumerate(STATE_FIELDS)}
    portfolio = (states["ts_code"] == PORTFOLIO).to_numpy()
    funds_per_day = int((~portfolio).sum() // max(int(portfolio.sum()), 1))
    start_value = np.where(portfolio, settings.cash * funds_per_day, settings.cash)
    out = {"ts_code": states["ts_code"], "name": states["name"], "trade_date": states["trade_date"]}
    first, last = v["first_day"], v["last_day"]
    annual = math.sqrt(TRADING_DAYS_PER_YEAR)
    for sleeve in SLEEVES:
        s = {f: v[f"{sleeve}_{f}"] for f in SLEEVE_FIELDS}
        total = s["previous"] / start_value - 1
        growth = cagr_of(total, last - first)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.sqrt(s["m2"] / (s["count"] - 1))
            volatility = np.where(s["count"] > 1, sd * annual, np.nan)
            sharpe = np.where((s["count"] > 1) & (sd != 0), s["mean"] / sd * annual, np.nan)
            calmar = np.where(s["worst"] < 0, growth / -s["worst"], np.nan)
        trough = s["worst_trough_day"]
        out.update(
            {
                f"{sleeve}_total_return": total,
                f"{sleeve}_cagr": growth,
                f"{sleeve}_max_drawdown": s["worst"],
                f"{sleeve}_max_drawdown_peak": np.where(
                    np.isnan(trough), np.nan, np.where(np.isnan(s["worst_peak_day"]), first, s["worst_peak_day"])
                ),
                f"{sleeve}_max_drawdown_trough": trough,
                f"{sleeve}_volatility": volatility,
                f"{sleeve}_sharpe": sharpe,
                f"{sleeve}_calmar": calmar,
            }
        )
    held = v["strategy_shares"] > 0
    trades = v["closed"] + held
    bars, in_market, wins, closed, fees = v["bars"], v["bars_in_market"], v["wins"], v["closed"], v["strategy_fees"]
    if portfolio.any():
        # Per day, the sums of the funds that have had a bar by then.
        day = np.cumsum(portfolio) - 1
        started = ~portfolio & ~np.isnan(first)
        sums = [
            np.bincount(day[started], weights=x[started], minlength=int(portfolio.sum()))
            for x in (trades, wins, closed, bars, in_market, fees)
        ]
        trades, wins, closed, bars, in_market, fees = (
            np.where(portfolio, summed[day], x)
            for summed, x in zip(sums, (trades, wins, closed, bars, in_market, fees), strict=True)
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        out.update(
            strategy_trades=trades,
            strategy_win_rate=np.where(closed > 0, wins / closed, np.nan),
            strategy_exposure=np.where(bars > 0, in_market / bars, np.nan),
            strategy_fees=fees,
        )
        value = v["strategy_shares"] * (v["last_factor"] / v["strategy_entry_factor"]) * v["last_close"]
        out["open_return"] = np.where(
            held, value / (v["strategy_shares"] * v["strategy_entry_price"] + v["strategy_entry_fee"]) - 1, np.nan
        )
    for field in (
        "first_day",
        "strategy_shares",
        "strategy_signal_day",
        "strategy_entry_day",
        "strategy_entry_price",
        "strategy_entry_fee",
    ):
        out[field] = v[field]
    return pd.DataFrame(out)


def summary_table(states: pd.DataFrame, settings: BacktestSettings) -> pd.DataFrame:
    """The figures the reports, the fund pages and the UI read (``SUMMARY_COLUMNS``), days as dates, each
    rounded as the documents publish it."""
    table = state_metrics(states, settings)
    for sleeve, metric in SUMMARY_METRICS:
        if metric != "trades":
            column = f"{sleeve}_{metric}"
            digits = MONEY_DIGITS if metric == "fees" else FRACTION_DIGITS
            values = table[column].to_numpy(float)
            table[column] = np.where(np.isfinite(values), python_round(np.nan_to_num(values), digits), np.nan)
    table["first_day"] = day_texts(table["first_day"])
    table["start"], table["execution"] = settings.start.isoformat(), settings.execution
    return table[SUMMARY_COLUMNS]
