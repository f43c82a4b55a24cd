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
from alchemy_pipeline.domain.backtest.state import (
    SLEEVE_FIELDS,
    SLEEVES,
    STATE_FIELDS,
    day_texts,
    state_column,
    state_numbers,
)
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


# What the reports and the fund pages read of each row, and the state fields it is computed from: a range's
# report reads these columns of the states alone (a decade of 1,500 funds' whole states is 1.3 GB).
REPORT_METRICS = [*((sleeve, m) for sleeve in SLEEVES for m in ("total_return", "cagr")), ("strategy", "trades")]
REPORT_FIELDS = ["first_day", "last_day", "strategy_previous", "buy_and_hold_previous", "closed", "strategy_shares"]
REPORT_STATE_COLUMNS = ["ts_code", "name", "trade_date", *REPORT_FIELDS]
REPORT_COLUMNS = ["ts_code", "name", "trade_date", "start", "execution", *(f"{s}_{m}" for s, m in REPORT_METRICS)]


def _returns(v: dict[str, np.ndarray], sleeve: str, start_value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A sleeve's total return and its compound annual growth, of each row."""
    total = v[f"{sleeve}_previous"] / start_value - 1
    return total, cagr_of(total, v["last_day"] - v["first_day"])


def _start_values(states: pd.DataFrame, settings: BacktestSettings) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are the portfolio's, and each row's starting cash (the portfolio's, every fund's)."""
    portfolio = (states["ts_code"] == PORTFOLIO).to_numpy()
    funds_per_day = int((~portfolio).sum() // max(int(portfolio.sum()), 1))
    return portfolio, np.where(portfolio, settings.cash * funds_per_day, settings.cash)


def _with_portfolio_sums(portfolio: np.ndarray, first_day: np.ndarray, *columns: np.ndarray) -> list[np.ndarray]:
    """Each column with the portfolio's row of a day set to the sum of the funds that have had a bar by then."""
    if not portfolio.any():
        return list(columns)
    day = np.cumsum(portfolio) - 1
    started = ~portfolio & ~np.isnan(first_day)
    return [
        np.where(portfolio, np.bincount(day[started], weights=x[started], minlength=int(portfolio.sum()))[day], x)
        for x in columns
    ]


def state_metrics(states: pd.DataFrame, settings: BacktestSettings) -> pd.DataFrame:
    """Every figure of every row of a state table, from its columns: ``{sleeve}_{metric}`` for ``METRICS``
    (days as day numbers), the strategy's trades, win rate, exposure and fees, and the open trade's marked
    value. The portfolio's trades, win rate, exposure and fees add up its funds' of the same day."""
    numbers = state_numbers(states)
    v = {field: numbers[:, j] for j, field in enumerate(STATE_FIELDS)}
    portfolio, start_value = _start_values(states, settings)
    out = {"ts_code": states["ts_code"], "name": states["name"], "trade_date": states["trade_date"]}
    first = v["first_day"]
    annual = math.sqrt(TRADING_DAYS_PER_YEAR)
    for sleeve in SLEEVES:
        s = {f: v[f"{sleeve}_{f}"] for f in SLEEVE_FIELDS}
        total, growth = _returns(v, sleeve, start_value)
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
    trades, wins, closed, bars, in_market, fees = _with_portfolio_sums(
        portfolio,
        first,
        v["closed"] + held,
        v["wins"],
        v["closed"],
        v["bars"],
        v["bars_in_market"],
        v["strategy_fees"],
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


def _as_published(table: pd.DataFrame, settings: BacktestSettings, metrics: list[tuple[str, str]]) -> pd.DataFrame:
    """The table with each of ``metrics`` rounded as the documents publish it, and the backtest's start and
    execution."""
    for sleeve, metric in metrics:
        if metric != "trades":
            column = f"{sleeve}_{metric}"
            digits = MONEY_DIGITS if metric == "fees" else FRACTION_DIGITS
            values = table[column].to_numpy(float)
            table[column] = np.where(np.isfinite(values), python_round(np.nan_to_num(values), digits), np.nan)
    table["start"], table["execution"] = settings.start.isoformat(), settings.execution
    return table


def summary_table(states: pd.DataFrame, settings: BacktestSettings) -> pd.DataFrame:
    """The figures the reports, the fund pages and the UI read (``SUMMARY_COLUMNS``), days as dates, each
    rounded as the documents publish it."""
    table = _as_published(state_metrics(states, settings), settings, SUMMARY_METRICS)
    table["first_day"] = day_texts(table["first_day"])
    return table[SUMMARY_COLUMNS]


def report_table(states: pd.DataFrame, settings: BacktestSettings) -> pd.DataFrame:
    """Of ``summary_table``, the columns the reports and the fund pages read (``REPORT_COLUMNS``), from the
    states' ``REPORT_STATE_COLUMNS`` alone."""
    v = {field: state_column(states, field) for field in REPORT_FIELDS}
    portfolio, start_value = _start_values(states, settings)
    out = {"ts_code": states["ts_code"], "name": states["name"], "trade_date": states["trade_date"]}
    for sleeve in SLEEVES:
        out[f"{sleeve}_total_return"], out[f"{sleeve}_cagr"] = _returns(v, sleeve, start_value)
    [out["strategy_trades"]] = _with_portfolio_sums(portfolio, v["first_day"], v["closed"] + (v["strategy_shares"] > 0))
    return _as_published(pd.DataFrame(out), settings, REPORT_METRICS)[REPORT_COLUMNS]
