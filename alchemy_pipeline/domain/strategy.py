"""The double moving-average strategy.

For fund f on day D, over the fund's bars within the last ``window`` trading days up to D:

- forward-adjusted close on day t: ``close[t] * adj_factor[t] / adj_factor[D]``;
- ``ma_short`` / ``ma_long``: TA-Lib simple moving averages, rounded to 3 decimals (the ETF tick);
- BUY: short > long on D and short <= long the bar before; SELL: short < long on D and short >= long
  the bar before; HOLD: short > long otherwise; EMPTY: short < long otherwise. On a day where the two
  averages are equal, the regime of the latest day on which they differed goes on;
- ``since``: the day the current regime's cross fired; ``days``: calendar days from since to D;
  ``pct``: the % change of the adjusted close from since to D, rounded to 2.

The window is a fixed number of exchange trading days ending at D, never the start of a run's range:
TA-Lib's running sum gives last-bit differences when its window starts elsewhere, and the 3-decimal
rounding would then flip near-ties. So a day's signal is the same whether it was computed alone or in
any backfill.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd
import talib

MIN_SEARCH_DAYS = 250
MISSING_BAR = "no bar on this day (suspended, or missing from the vendor)"
NOT_TRADING = "no bar in the history window (not listed yet, or delisted)"


class State(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"
    EMPTY = "EMPTY"
    NO_DATA = "NO_DATA"
    INSUFFICIENT_HISTORY = "INSUFFICIENT_HISTORY"


@dataclass(frozen=True)
class StrategyParams:
    short: int = 11
    long: int = 22
    # Trading days of history behind each day: the long average plus at least 250 days to search
    # back for the cross that started the current regime.
    window: int = 300

    def __post_init__(self):
        if not 1 < self.short < self.long:
            raise ValueError(f"moving averages need 1 < short < long, got short={self.short}, long={self.long}")
        if self.window < self.long + MIN_SEARCH_DAYS + 1:
            raise ValueError(
                f"window={self.window} trading days is too short: the strategy searches back at least "
                f"{MIN_SEARCH_DAYS} days past the {self.long}-day average, so it needs "
                f"{self.long + MIN_SEARCH_DAYS + 1} or more"
            )


INDICATOR_COLUMNS = [
    "ts_code",
    "trade_date",
    "close",
    "adj_factor",
    "ma_short",
    "ma_long",
    "prev_ma_short",
    "prev_ma_long",
    "trend",
    "last_buy_date",
    "last_buy_close",
    "last_sell_date",
    "last_sell_close",
    "bars",
    "note",
]
SIGNAL_COLUMNS = [
    "ts_code",
    "name",
    "trade_date",
    "state",
    "close",
    "ma_short",
    "ma_long",
    "since",
    "days",
    "pct",
    "note",
]


def compute_indicators(
    prices: pd.DataFrame,
    sessions: Sequence[dt.date],
    days: Sequence[dt.date],
    params: StrategyParams,
) -> pd.DataFrame:
    """Indicators for every fund with a bar on each of ``days``.

    ``prices`` holds the bars (ts_code, trade_date, close, adj_factor) of every trading day in
    ``sessions``, which must run without a gap from ``window - 1`` trading days before the first of
    ``days`` (or from the first day there is) to the last of ``days``.
    """
    position = {day: i for i, day in enumerate(sessions)}
    window_start = {day: sessions[max(0, position[day] - params.window + 1)] for day in days}
    rows = []
    for ts_code, fund in prices.sort_values("trade_date").groupby("ts_code", sort=True):
        dates = fund["trade_date"].to_numpy(dtype="datetime64[D]")
        closes = fund["close"].to_numpy(dtype="float64")
        factors = fund["adj_factor"].to_numpy(dtype="float64")
        for day in days:
            d = np.datetime64(day, "D")
            hi = int(np.searchsorted(dates, d, side="right"))
            lo = int(np.searchsorted(dates, np.datetime64(window_start[day], "D"), side="left"))
            if hi > lo and dates[hi - 1] == d:
                rows.append(_fund_day(ts_code, day, dates[lo:hi], closes[lo:hi], factors[lo:hi], params))
            elif hi > lo:
                # Traded within the window but not today: a suspension, or a bar the vendor lacks.
                rows.append({"ts_code": ts_code, "trade_date": pd.Timestamp(day), "trend": 0, "bars": hi - lo,
                             "note": MISSING_BAR})  # fmt: skip
    table = pd.DataFrame(rows, columns=INDICATOR_COLUMNS).astype(_INDICATOR_DTYPES)
    return table.sort_values(["trade_date", "ts_code"], ignore_index=True)


_INDICATOR_DTYPES = {
    "ts_code": "object",
    "trade_date": "datetime64[ns]",
    "close": "float64",
    "adj_factor": "float64",
    "ma_short": "float64",
    "ma_long": "float64",
    "prev_ma_short": "float64",
    "prev_ma_long": "float64",
    "trend": "int64",
    "last_buy_date": "datetime64[ns]",
    "last_buy_close": "float64",
    "last_sell_date": "datetime64[ns]",
    "last_sell_close": "float64",
    "bars": "int64",
    "note": "object",
}


def _fund_day(ts_code, day, dates, closes, factors, params: StrategyParams) -> dict:
    row = dict.fromkeys(INDICATOR_COLUMNS)
    row.update(
        ts_code=ts_code,
        trade_date=pd.Timestamp(day),
        close=closes[-1],
        adj_factor=factors[-1],
        trend=0,
        bars=len(closes),
    )
    missing = dates[np.isnan(factors) | (factors <= 0)]
    if len(missing):
        row["note"] = "no usable adjustment factor on " + ", ".join(str(m) for m in missing[:5])
        return row
    adjusted = closes * factors / factors[-1]
    ma_short = np.round(talib.SMA(adjusted, params.short), 3)
    ma_long = np.round(talib.SMA(adjusted, params.long), 3)
    row.update(ma_short=ma_short[-1], ma_long=ma_long[-1])
    if len(adjusted) < 2:
        return row
    row.update(prev_ma_short=ma_short[-2], prev_ma_long=ma_long[-2])
    above, below = ma_short > ma_long, ma_short < ma_long  # False wherever an average is not defined yet
    defined = ~(np.isnan(ma_short) | np.isnan(ma_long))
    crossed_up = np.flatnonzero(above[1:] & ~above[:-1] & defined[:-1]) + 1
    crossed_down = np.flatnonzero(below[1:] & ~below[:-1] & defined[:-1]) + 1
    if len(crossed_up):
        i = crossed_up[-1]
        row.update(last_buy_date=pd.Timestamp(dates[i]), last_buy_close=adjusted[i])
    if len(crossed_down):
        i = crossed_down[-1]
        row.update(last_sell_date=pd.Timestamp(dates[i]), last_sell_close=adjusted[i])
    apart = np.flatnonzero(above | below)
    if len(apart):
        row["trend"] = 1 if above[apart[-1]] else -1
    return row


def classify(
    indicators: pd.DataFrame, universe: pd.DataFrame, days: Sequence[dt.date], params: StrategyParams
) -> pd.DataFrame:
    """One signal per fund of the universe (in its order) on each of ``days``."""
    rows_by_day: dict[pd.Timestamp, dict] = {pd.Timestamp(day): {} for day in days}
    for row in indicators.itertuples(index=False):
        if row.trade_date in rows_by_day:
            rows_by_day[row.trade_date][row.ts_code] = row
    signals = []
    for day, by_code in rows_by_day.items():
        for fund in universe.itertuples():
            signal = dict.fromkeys(SIGNAL_COLUMNS)
            signal.update(ts_code=fund.ts_code, name=fund.name, trade_date=day)
            signal.update(_signal(by_code.get(fund.ts_code), day, params))
            signals.append(signal)
    return pd.DataFrame(signals, columns=SIGNAL_COLUMNS).astype(_SIGNAL_DTYPES)


_SIGNAL_DTYPES = {
    "ts_code": "object",
    "name": "object",
    "trade_date": "datetime64[ns]",
    "state": "object",
    "close": "float64",
    "ma_short": "float64",
    "ma_long": "float64",
    "since": "datetime64[ns]",
    "days": "Int64",
    "pct": "float64",
    "note": "object",
}


def _signal(row, day: pd.Timestamp, params: StrategyParams) -> dict:
    if row is None:
        return {"state": State.NO_DATA.value, "note": NOT_TRADING}
    if isinstance(row.note, str):
        return {"state": State.NO_DATA.value, "close": row.close, "note": row.note}
    values = {"close": row.close, "ma_short": row.ma_short, "ma_long": row.ma_long}
    if row.bars < params.long + 1 or np.isnan(row.prev_ma_long):
        note = f"{row.bars} bars; the strategy needs {params.long + 1}"
        return {**values, "state": State.INSUFFICIENT_HISTORY.value, "note": note}
    short, long, prev_short, prev_long = row.ma_short, row.ma_long, row.prev_ma_short, row.prev_ma_long
    if short > long and prev_short <= prev_long:
        state, since, since_close = State.BUY, day, row.close
    elif short < long and prev_short >= prev_long:
        state, since, since_close = State.SELL, day, row.close
    elif row.trend > 0:
        state, since, since_close = State.HOLD, row.last_buy_date, row.last_buy_close
    else:
        state, since, since_close = State.EMPTY, row.last_sell_date, row.last_sell_close
    values["state"] = state.value
    if not pd.isna(since):
        values["since"] = since
        values["days"] = (day - since).days
        values["pct"] = round((row.close / since_close - 1) * 100, 2)
    return values
