"""What the backtest publishes: each day's document (``backtests/YYYY-MM-DD.json``) and each fund's trades."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest.engine import FRACTION_DIGITS, MONEY_DIGITS, PRICE_DIGITS, Trade
from alchemy_pipeline.domain.backtest.state import CarriedRun, day_texts, number_day
from alchemy_pipeline.domain.backtest.statistics import METRICS, STRATEGY_METRICS, state_metrics
from alchemy_pipeline.domain.numbers import python_round


def _rounded(values: np.ndarray, digits: int) -> list[float | None]:
    finite = np.isfinite(values)
    listed = python_round(np.where(finite, values, 0.0), digits).tolist()
    return [x if ok else None for x, ok in zip(listed, finite.tolist(), strict=True)]


def _sleeve_json(table: pd.DataFrame, sleeve: str) -> list[dict]:
    metrics = STRATEGY_METRICS if sleeve == "strategy" else METRICS
    columns = {}
    for metric in metrics:
        values = table[f"{sleeve}_{metric}"].to_numpy(float)
        if metric.startswith("max_drawdown_"):
            columns[metric] = day_texts(values)
        elif metric == "trades":
            columns[metric] = values.astype("int64").tolist()
        else:
            columns[metric] = _rounded(values, MONEY_DIGITS if metric == "fees" else FRACTION_DIGITS)
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _open_trades_json(table: pd.DataFrame) -> list[dict | None]:
    held = table["strategy_shares"].to_numpy() > 0
    signal, entry = day_texts(table["strategy_signal_day"]), day_texts(table["strategy_entry_day"])
    price = _rounded(table["strategy_entry_price"].to_numpy(float), PRICE_DIGITS)
    shares = table["strategy_shares"].tolist()
    fees = _rounded(table["strategy_entry_fee"].to_numpy(float), MONEY_DIGITS)
    returns = _rounded(table["open_return"].to_numpy(float), FRACTION_DIGITS)
    return [
        {
            "signal_day": signal[i],
            "entry_day": entry[i],
            "entry_price": price[i],
            "exit_signal_day": None,
            "exit_day": None,
            "exit_price": None,
            "shares": int(shares[i]),
            "fees": fees[i],
            "return": returns[i],
        }
        if held[i]
        else None
        for i in range(len(table))
    ]


# Days whose documents are built at a time: a day of 1,500 funds is some 10,000 Python objects.
DOCUMENT_DAYS_AT_A_TIME = 32


def documents(run: CarriedRun, rule: dict, only: set[dt.date] | None = None) -> Iterator[dict]:
    """The published backtest of each day the run traded (of those, ``only`` these, when given), as
    ``backtests/YYYY-MM-DD.json``: the settings and fingerprint, the portfolio's figures and each fund's, its
    open trade marked at its last bar. Built from the state table's columns, a few days at a time."""
    days = [d for d in run.traded_days if only is None or d in only]
    for first in range(0, len(days), DOCUMENT_DAYS_AT_A_TIME):
        yield from _documents_of(run, rule, days[first : first + DOCUMENT_DAYS_AT_A_TIME])


def _documents_of(run: CarriedRun, rule: dict, days: list[dt.date]) -> list[dict]:
    settings = run.state.settings
    table = state_metrics(run.frame[run.frame["trade_date"].isin(pd.to_datetime(days))], settings).reset_index(
        drop=True
    )
    strategy, hold, open_trades = (
        _sleeve_json(table, "strategy"),
        _sleeve_json(table, "buy_and_hold"),
        _open_trades_json(table),
    )
    codes, names, firsts = table["ts_code"].tolist(), table["name"].tolist(), day_texts(table["first_day"])
    per_day = len(run.state.codes) + 1
    out = []
    for d, day in enumerate(days):
        rows = range(d * per_day, (d + 1) * per_day)
        p = rows[0]
        funds = []
        for i in rows[1:]:
            started = firsts[i] is not None
            funds.append(
                {
                    "ts_code": codes[i],
                    "name": names[i],
                    "first_day": firsts[i],
                    "strategy": strategy[i] if started else None,
                    "buy_and_hold": hold[i] if started else None,
                    "open_trade": open_trades[i] if started else None,
                }
            )
        out.append(
            {
                "as_of": day.isoformat(),
                "start": settings.start.isoformat(),
                "strategy": rule,
                "settings": settings.as_json(),
                "fingerprint": run.state.fingerprint,
                "portfolio": {"strategy": strategy[p], "buy_and_hold": hold[p]}
                if firsts[p] is not None
                else {"strategy": None, "buy_and_hold": None},
                "funds": funds,
            }
        )
    return out


def trade_json(trade: Trade) -> dict:
    """A closed trade as published (days are day numbers)."""
    return {
        "signal_day": number_day(trade.signal_day).isoformat(),
        "entry_day": number_day(trade.entry_day).isoformat(),
        "entry_price": round(trade.entry_price, PRICE_DIGITS),
        "exit_signal_day": number_day(trade.exit_signal_day).isoformat(),
        "exit_day": number_day(trade.exit_day).isoformat(),
        "exit_price": round(trade.exit_price, PRICE_DIGITS),
        "shares": trade.shares,
        "fees": round(trade.entry_fee + trade.exit_fee, MONEY_DIGITS),
        "return": round(trade.net_return(), FRACTION_DIGITS),
    }


def closed_before(trades: list[dict], day: dt.date) -> list[dict]:
    """Of a fund's published trades, those closed before ``day``: what a run from ``day`` on keeps."""
    return [t for t in trades if t["exit_day"] is not None and t["exit_day"] < day.isoformat()]


def trade_lists(run: CarriedRun, kept: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Every fund's trades after the run: those ``kept`` from before it, those it closed, then the open one
    marked at the fund's last bar."""
    last = run.frame[run.frame["trade_date"] == run.frame["trade_date"].max()]
    opens = dict(zip(last["ts_code"], _open_trades_json(state_metrics(last, run.state.settings)), strict=True))
    return {
        code: [
            *kept.get(code, []),
            *(trade_json(t) for t in run.closed_trades[code]),
            *([opens[code]] if opens[code] else []),
        ]
        for code in run.state.codes
    }
