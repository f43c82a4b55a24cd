"""Deterministic synthetic ETF prices served through the Tushare query interface.

The demo lets the whole pipeline run with no token and no network. Every fund's series is a pure
function of its code, so any query for any range returns the same numbers. Each series has one
share split, so the demo also exercises the forward adjustment. These are not market prices, and
every report built from them says so.
"""

from __future__ import annotations

import zlib
from functools import cache
from typing import ClassVar

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.market import calendar
from alchemy_pipeline.domain.market.prices import ADJ_FIELDS, BAR_FIELDS

DEMO_NOTICE = "DEMO DATA - not market prices"


@cache
def _sessions() -> list:
    # The bundled calendar only: demo prices stay the same whatever trade_cal extends it with.
    return calendar.TradingCalendar().sessions(calendar.CALENDAR_START, calendar.bundled_last_day())


@cache
def fund_series(ts_code: str) -> pd.DataFrame:
    """One fund's demo bars (daily and adjustment fields), the same for the same code on every machine."""
    rng = np.random.default_rng(zlib.crc32(ts_code.encode()))
    days = pd.DatetimeIndex(_sessions())
    n = len(days)
    # Trends that change every few weeks give the moving averages real crossings to find; a weak pull
    # back to the starting level keeps prices in a plausible band over a decade.
    drift = np.repeat(rng.normal(0.0, 0.003, size=n // 30 + 1), 30)[:n]
    shocks = drift + rng.normal(0.0, 0.011, size=n)
    level = np.empty(n)
    level[0] = 0.0
    for t in range(1, n):
        level[t] = 0.995 * level[t - 1] + shocks[t]
    fair = rng.uniform(0.8, 4.5) * np.exp(level)
    split_at = int(rng.integers(n // 4, 3 * n // 4))
    ratio = float(rng.choice([2.0, 3.0, 0.5]))
    adj_factor = np.where(np.arange(n) >= split_at, ratio, 1.0)
    close = np.round(fair / adj_factor, 3)
    pre_close = np.concatenate([[close[0]], np.round(close[:-1] * adj_factor[:-1] / adj_factor[1:], 3)])
    spread = np.abs(rng.normal(0.0, 0.006, size=n)) * close
    open_ = np.round(pre_close + (close - pre_close) * rng.uniform(0.0, 1.0, size=n), 3)
    high = np.round(np.maximum(open_, close) + spread, 3)
    low = np.round(np.maximum(np.minimum(open_, close) - spread, 0.001), 3)
    vol = np.round(rng.uniform(1e5, 5e6, size=n), 2)
    return pd.DataFrame(
        {
            "ts_code": ts_code,
            "trade_date": days.strftime("%Y%m%d"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "pre_close": pre_close,
            "change": np.round(close - pre_close, 3),
            "pct_chg": np.round((close / pre_close - 1) * 100, 4),
            "vol": vol,
            "amount": np.round(vol * close / 10, 3),
            "adj_factor": adj_factor,
        }
    )


@cache
def _trade_cal() -> pd.DataFrame:
    """SSE's calendar days as Tushare's trade_cal lists them, as far as the bundled calendar knows."""
    days = pd.date_range(calendar.CALENDAR_START, calendar.bundled_last_day(), freq="D")
    sessions = pd.DatetimeIndex(_sessions())
    previous = sessions.searchsorted(days, side="left") - 1
    return pd.DataFrame(
        {
            "exchange": calendar.TUSHARE_EXCHANGE,
            "cal_date": days.strftime("%Y%m%d"),
            "is_open": days.isin(sessions).astype(int),
            "pretrade_date": [sessions[i].strftime("%Y%m%d") if i >= 0 else None for i in previous],
        }
    )


class DemoTushareApi:
    """Answers ``fund_daily``, ``fund_adj`` and ``trade_cal`` like Tushare Pro, from the synthetic series."""

    _TABLES: ClassVar[dict[str, list[str]]] = {
        "fund_daily": BAR_FIELDS,
        "fund_adj": ADJ_FIELDS,
        "trade_cal": calendar.TRADE_CAL_FIELDS,
    }

    def __init__(self, ts_codes: list[str]):
        self._ts_codes = list(ts_codes)

    def query(self, api_name: str, fields: str = "", **params) -> pd.DataFrame:
        if api_name not in self._TABLES:
            raise Exception(f"demo source does not serve {api_name}")
        if api_name == "trade_cal":
            table, date, order = _trade_cal(), "cal_date", ["cal_date"]
        else:
            codes = params["ts_code"].split(",") if params.get("ts_code") else self._ts_codes
            table = pd.concat([fund_series(code) for code in codes], ignore_index=True)
            date, order = "trade_date", ["trade_date", "ts_code"]
        if params.get("trade_date"):
            table = table[table[date] == params["trade_date"]]
        if params.get("start_date"):
            table = table[table[date] >= params["start_date"]]
        if params.get("end_date"):
            table = table[table[date] <= params["end_date"]]
        # Newest first, as Tushare answers.
        table = table.sort_values(order, ascending=[False] + [True] * (len(order) - 1), ignore_index=True)
        offset = int(params.get("offset") or 0)
        limit = params.get("limit")
        table = table.iloc[offset : offset + int(limit) if limit else None]
        columns = fields.split(",") if fields else self._TABLES[api_name]
        return table[columns].reset_index(drop=True)
