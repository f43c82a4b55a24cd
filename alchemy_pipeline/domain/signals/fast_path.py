"""The rule of ``rule`` for every fund and day of a range at once: how each part maps onto it.

``fund_signal`` (the rule) takes one fund's bars in one day's window; this module computes a fund's days
together and classifies the grid of days x funds in whole columns. It gives the same values, bit for bit
(``tests/test_fast_path.py`` holds it to the rule on random prices with ties, gaps, splits and late
listings), and is what the pipeline runs: on 20 real funds over a year, 45x faster than the rule applied
one fund and day at a time (``benchmarks/RESULTS.md``, "The strategy's fast path"). Each trick, and why
it is safe:

- **One row per day.** A fund's days are the rows of a 2-D array, row r the bars of day r's window (one
  copy of a sliding view of the fund's bars). The forward adjustment is the rule's ``close * factor /
  factor of the day``, in the same order of operations: the product is taken once per bar, the division
  per row.
  Rows are right-aligned: a row with fewer bars (a late listing, suspensions) starts at column ``first``.
- **Averages from the fund's sums.** The rule's exact averages (``averages``) divide the sum of ``close x
  factor`` over n bars by n x the day's factor: the sum ending at a bar is the same in every window that
  holds its n bars, so it is taken once per bar of the fund, and each row divides by its day's factor; a
  column with fewer than n of the row's own bars before it has no average, as in the rule.
- **Crosses as column masks.** The rule's lists of golden and death crosses become boolean masks over
  the rounded averages; the latest of each (and the latest column the averages differ) is the last True
  of a row.
- **The indicator table.** Per fund and day it keeps what classifying needs (the averages, the day
  before's, the latest crosses with their adjusted closes, the regime, the bar count, a note), which is
  the ``etf_indicators`` asset; ``classify`` then decides each row in whole columns, a batch of days at a
  time, with the rule's order of cases.
- **Rounding.** ``pct`` is rounded by ``numbers.python_round``, Python's ``round`` for whole columns.
- **Worker processes.** A large range's funds are computed in groups, in worker processes
  (``domain/workers.py``); a fund's result does not depend on which process computed it.
- **Memory handed back.** The indicator table is assembled a column at a time from the funds' parts, and
  the memory each column's parts held is handed back to the system at once (``domain/memory.py``):
  with it the 1,500-fund scale run's peak is 1,788 MB (``RESULTS.md``); without it, 2,239 MB, past its
  2 GB target.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.numbers import python_round
from alchemy_pipeline.domain.signals.averages import bar_sums, rounded_averages
from alchemy_pipeline.domain.signals.rule import (
    MISSING_BAR,
    NOT_TRADING,
    RuleParams,
    State,
    no_usable_factor,
    too_few_bars,
)
from alchemy_pipeline.infrastructure.frames import by_trade_date, object_column
from alchemy_pipeline.infrastructure.memory import release_free_memory
from alchemy_pipeline.infrastructure.workers import map_in_processes, worth_workers

# The columns of the prices that the indicators read.
PRICE_INPUT_COLUMNS = ["ts_code", "trade_date", "close", "adj_factor"]
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


# Funds handed to a worker process at a time: enough work to repay the hand-over.
FUNDS_PER_TASK = 50


def compute_indicators(
    prices: pd.DataFrame,
    sessions: Sequence[dt.date],
    days: Sequence[dt.date],
    params: RuleParams,
) -> pd.DataFrame:
    """Indicators for every fund with a bar on each of ``days``.

    ``prices`` holds the bars (ts_code, trade_date, close, adj_factor) of every trading day in
    ``sessions``, which must run without a gap from ``window - 1`` trading days before the first of
    ``days`` (or from the first day there is) to the last of ``days``.
    """
    position = {day: i for i, day in enumerate(sessions)}
    day_array = np.array(days, dtype="datetime64[D]")
    window_starts = np.array(
        [sessions[max(0, position[day] - params.window + 1)] for day in days], dtype="datetime64[D]"
    )
    # Only the columns the rule reads, grouped by fund as plain arrays: a decade of a large universe is
    # millions of rows, and every copy of them counts.
    bars = prices[PRICE_INPUT_COLUMNS].sort_values(["ts_code", "trade_date"])
    fund_of_row, funds = pd.factorize(bars["ts_code"])
    codes = np.asarray(funds, dtype=object)[fund_of_row]  # one shared string per fund, not one per row
    all_dates = bars["trade_date"].to_numpy(dtype="datetime64[D]")
    all_closes = bars["close"].to_numpy(dtype="float64")
    all_factors = bars["adj_factor"].to_numpy(dtype="float64")
    del bars
    starts = _fund_starts(fund_of_row)
    # Funds in groups, each group's bars one slice of the arrays; in worker processes when there are many.
    groups = itertools.pairwise([*starts[::FUNDS_PER_TASK], len(codes)])
    tasks = ((codes[a:b], all_dates[a:b], all_closes[a:b], all_factors[a:b]) for a, b in groups)
    if worth_workers(len(codes)):
        done = map_in_processes(_funds_parts, tasks, day_array, window_starts, params)
    else:
        done = (_funds_parts(task, day_array, window_starts, params) for task in tasks)
    return _indicator_table([part for parts in done for part in parts])


def _fund_starts(fund_of_row: np.ndarray) -> np.ndarray:
    """The first row of each fund, in rows grouped by fund."""
    if not len(fund_of_row):
        return np.array([], dtype=int)
    return np.flatnonzero(np.r_[True, fund_of_row[1:] != fund_of_row[:-1]])


def _funds_parts(bars: tuple, day_array: np.ndarray, window_starts: np.ndarray, params: RuleParams) -> list[dict]:
    """The indicator parts of consecutive funds: ``bars`` holds their codes, dates, closes and factors,
    fund by fund, each fund's bars in date order."""
    codes, all_dates, all_closes, all_factors = bars
    parts = []
    for start, end in itertools.pairwise([*_fund_starts(codes), len(codes)]):
        ts_code, dates = codes[start], all_dates[start:end]
        hi = np.searchsorted(dates, day_array, side="right")
        lo = np.searchsorted(dates, window_starts, side="left")
        traded = hi > lo
        has_bar = traded & (dates[np.maximum(hi - 1, 0)] == day_array)
        if has_bar.any():
            closes, factors = all_closes[start:end], all_factors[start:end]
            parts.append(_fund_days(ts_code, dates, closes, factors, lo[has_bar], hi[has_bar], params))
        # Traded within the window but not on the day: a suspension, or a bar the vendor lacks.
        suspended = traded & ~has_bar
        if suspended.any():
            parts.append({"ts_code": ts_code, "trade_date": day_array[suspended], "trend": 0,
                          "bars": (hi - lo)[suspended], "note": MISSING_BAR})  # fmt: skip
    return parts


def _indicator_table(parts: list[dict]) -> pd.DataFrame:
    """One table from the parts' columns (arrays, or one value for a whole part), ordered by day then fund
    (the parts come fund by fund, in code order). Each column is taken out of the parts as it is joined,
    so that the parts and the table are not both held whole."""
    lengths = [len(part["trade_date"]) for part in parts]
    order = np.argsort(np.concatenate([part["trade_date"] for part in parts]), kind="stable") if parts else []
    columns = {}
    for name in INDICATOR_COLUMNS:
        dtype = _INDICATOR_DTYPES[name]
        numpy_dtype = "datetime64[ns]" if dtype.startswith("datetime") else dtype
        empty = {"float64": np.nan, "int64": 0, "object": None}.get(numpy_dtype, np.datetime64("NaT"))
        pieces = [
            np.asarray(value, dtype=numpy_dtype) if np.ndim(value := part.pop(name, empty)) else
            np.full(n, value, dtype=numpy_dtype)
            for part, n in zip(parts, lengths, strict=True)
        ]  # fmt: skip
        values = np.concatenate(pieces)[order] if pieces else np.array([], dtype=numpy_dtype)
        columns[name] = object_column(values) if numpy_dtype == "object" else values
        del pieces
        release_free_memory()  # the parts' many small arrays: freed, but kept by the allocator otherwise
    return pd.DataFrame(columns, copy=False).astype(_INDICATOR_DTYPES, copy=False)


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


def _moving_average(
    closes: np.ndarray, factors: np.ndarray, period: int, hi: np.ndarray, first: np.ndarray, width: int
) -> np.ndarray:
    """Each row's exact averages over ``period`` bars (``averages``), forward-adjusted to its day's factor; NaN
    wherever the row has fewer than ``period`` of its own bars up to the column."""
    sums = np.concatenate([np.zeros(width - 1, np.int64), bar_sums(closes, factors, period)])
    windows = np.lib.stride_tricks.sliding_window_view(sums, width)[hi - 1]
    averages = rounded_averages(windows, period, factors[hi - 1][:, None])
    averages[np.arange(width)[None, :] < (first + period - 1)[:, None]] = np.nan
    return averages


def _windows_ending_at(values: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Row r: the ``width`` values up to and including ``values[ends[r]]``, NaN before the first."""
    padded = np.concatenate([np.full(width - 1, np.nan), values])
    return np.lib.stride_tricks.sliding_window_view(padded, width)[ends]


def _latest_crosses(short: np.ndarray, long: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of the averages, the columns of the latest golden cross and death cross (0: none, as a cross
    needs the column before it) and of the latest column on which the two averages differ (-1: none)."""
    above, below = short > long, short < long  # False wherever an average is not defined yet
    defined = ~(np.isnan(short) | np.isnan(long))
    buy = _last(above[:, 1:] & ~above[:, :-1] & defined[:, :-1]) + 1  # columns of the pairs are shifted by one
    sell = _last(below[:, 1:] & ~below[:, :-1] & defined[:, :-1]) + 1
    return buy, sell, _last(above | below)


def _last(mask: np.ndarray) -> np.ndarray:
    """Per row, the column of the last True (or -1)."""
    width = mask.shape[1]
    if not width:  # a one-bar window has no pair of bars to cross between
        return np.full(mask.shape[0], -1)
    return np.where(mask.any(axis=1), width - 1 - np.argmax(mask[:, ::-1], axis=1), -1)


def _fund_days(ts_code, dates, closes, factors, lo: np.ndarray, hi: np.ndarray, params: RuleParams) -> dict:
    """Indicators of one fund on the days ending the windows ``[lo, hi)`` of its bars (the last bar is the
    day's), computed for all those days at once."""
    bars = hi - lo
    width = int(bars.max())
    first = width - bars  # column of each row's first bar
    # Row r holds the ``width`` bars up to the day's (NaN before the fund's first bar), as one copy
    # of a sliding view of the fund's bars. Forward adjustment to the day's own factor: (close x factor)
    # / factor of the day, as in the rule; each bar's product is the same in every window, so it is taken
    # once. Rows with an unusable factor divide by it here, and are reported as such below.
    with np.errstate(divide="ignore", invalid="ignore"):
        adjusted = _windows_ending_at(closes * factors, hi - 1, width)
        day_factor = factors[hi - 1]
        adjusted /= day_factor[:, None]
    unusable_bar = np.isnan(factors) | (factors <= 0)
    unusable_before = np.concatenate([[0], np.cumsum(unusable_bar)])
    bad = unusable_before[hi] > unusable_before[lo]
    # The columns before a row's first bar (older bars of the fund, or NaN) are not the day's window: each
    # row's averages are TA-Lib's over its own bars, NaN before them, so no cross is found there.
    ma_short = _moving_average(closes, factors, params.short, hi, first, width)
    ma_long = _moving_average(closes, factors, params.long, hi, first, width)
    buy, sell, apart = _latest_crosses(ma_short, ma_long)
    rows = np.arange(len(lo))
    # The averages' columns copied out: a column is a view that would keep its whole matrix (days x window, 6 MB
    # a fund over a decade) alive with the part, and a worker's 50 funds' parts are held together.
    part = {
        "ts_code": ts_code,
        "trade_date": dates[hi - 1],
        "close": closes[hi - 1],
        "adj_factor": day_factor,
        "ma_short": ma_short[:, -1].copy(),
        "ma_long": ma_long[:, -1].copy(),
        "prev_ma_short": ma_short[:, -2].copy() if width > 1 else np.nan,
        "prev_ma_long": ma_long[:, -2].copy() if width > 1 else np.nan,
        "bars": bars,
    }
    for name, at in (("buy", buy), ("sell", sell)):
        found = at > 0
        part[f"last_{name}_date"] = np.where(
            found, dates[np.where(found, lo + at - first, 0)], np.datetime64("NaT", "D")
        )
        part[f"last_{name}_close"] = np.where(found, adjusted[rows, at], np.nan)
    above = ma_short[rows, apart] > ma_long[rows, apart]
    part["trend"] = np.where(apart < 0, 0, np.where(above, 1, -1))
    if bad.any():
        for name in ("ma_short", "ma_long", "prev_ma_short", "prev_ma_long", "last_buy_close", "last_sell_close"):
            part[name] = np.where(bad, np.nan, part[name])
        for name in ("last_buy_date", "last_sell_date"):
            part[name] = np.where(bad, np.datetime64("NaT", "D"), part[name])
        part["trend"] = np.where(bad, 0, part["trend"])
        note = np.full(len(lo), None, dtype=object)
        note[bad] = [
            no_usable_factor(dates[lo[r] + np.flatnonzero(unusable_bar[lo[r] : hi[r]])].tolist())
            for r in np.flatnonzero(bad)
        ]
        part["note"] = note
    return part


# Days classified at a time: the intermediate columns of a decade of a large universe would not fit.
CLASSIFY_BATCH_DAYS = 256


def classify(
    indicators: pd.DataFrame, universe: pd.DataFrame, days: Sequence[dt.date], params: RuleParams
) -> pd.DataFrame:
    """One signal per fund of the universe (in its order) on each of ``days``, a batch of days at a time."""
    days = sorted(days)
    if len(days) <= CLASSIFY_BATCH_DAYS:
        return _signal_table([_classify_days(indicators, universe, days, params)])
    indicators = by_trade_date(indicators)
    dates = indicators["trade_date"]
    parts = []
    for i in range(0, len(days), CLASSIFY_BATCH_DAYS):
        batch = days[i : i + CLASSIFY_BATCH_DAYS]
        first = dates.searchsorted(pd.Timestamp(batch[0]), side="left")
        last = dates.searchsorted(pd.Timestamp(batch[-1]), side="right")
        parts.append(_classify_days(indicators.iloc[first:last], universe, batch, params))
    return _signal_table(parts)


def _signal_table(parts: list[dict]) -> pd.DataFrame:
    """One table of the batches' columns, built once (not a table per batch, then their concatenation)."""
    columns = {name: np.concatenate([part.pop(name) for part in parts]) for name in [*SIGNAL_COLUMNS, "dated"]}
    dated = columns.pop("dated")
    for name in ("ts_code", "name", "state", "note"):
        columns[name] = object_column(columns[name])
    columns["days"] = pd.arrays.IntegerArray(columns["days"], ~dated)
    return pd.DataFrame(columns, copy=False)


def _on_grid(indicators: pd.DataFrame, codes: np.ndarray, day_array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The indicator rows of the universe's funds on ``day_array``, and each one's place in the grid of
    days x funds (a day's funds in universe order). A fund twice on one day is refused: no signal could
    choose between the two."""
    if not len(day_array) or not len(indicators):
        return np.array([], dtype=int), np.array([], dtype=int)
    fund = pd.Index(codes).get_indexer(indicators["ts_code"])
    dates = indicators["trade_date"].to_numpy(dtype="datetime64[ns]")
    day = np.minimum(np.searchsorted(day_array, dates), len(day_array) - 1)
    rows = np.flatnonzero((fund >= 0) & (day_array[day] == dates))
    places = day[rows] * len(codes) + fund[rows]
    counts = np.bincount(places, minlength=len(day_array) * len(codes))
    if (counts > 1).any():
        twice = np.flatnonzero(counts > 1)[:5]
        raise ValueError(
            "indicators have more than one row for "
            + ", ".join(f"{codes[p % len(codes)]} on {str(day_array[p // len(codes)])[:10]}" for p in twice)
        )
    return rows, places


def _classify_days(
    indicators: pd.DataFrame, universe: pd.DataFrame, days: Sequence[dt.date], params: RuleParams
) -> dict[str, np.ndarray]:
    """The signal columns of a batch of days (``dated``: where ``since`` and ``days`` are set)."""
    codes = universe["ts_code"].to_numpy(dtype=object)
    n_funds = len(codes)
    day_array = np.array(days, dtype="datetime64[D]").astype("datetime64[ns]")
    rows, places = _on_grid(indicators, codes, day_array)
    size = len(day_array) * n_funds

    def column(name: str, empty) -> np.ndarray:
        """The indicator column laid out on the grid, ``empty`` where a fund has no row."""
        values = indicators[name].to_numpy()
        laid_out = np.full(size, empty, dtype=object if values.dtype == object else values.dtype)
        laid_out[places] = values[rows]
        return laid_out

    present = np.zeros(size, dtype=bool)
    present[places] = True
    absent = ~present
    note_of_day = column("note", None)
    noted = pd.notna(note_of_day) & present
    short, long = column("ma_short", np.nan), column("ma_long", np.nan)
    prev_short, prev_long = column("prev_ma_short", np.nan), column("prev_ma_long", np.nan)
    bars = column("bars", 0)
    young = present & ~noted & ((bars < params.long + 1) | np.isnan(prev_long))
    ranked = ~(absent | noted | young)
    buy = ranked & (short > long) & (prev_short <= prev_long)
    sell = ranked & ~buy & (short < long) & (prev_short >= prev_long)
    hold = ranked & ~buy & ~sell & (column("trend", 0) > 0)
    empty = ranked & ~buy & ~sell & ~hold
    # The rule's cases in its order; every row of a state refers to one shared string.
    state = np.full(size, State.EMPTY.value, dtype=object)
    for case, value in ((hold, State.HOLD), (sell, State.SELL), (buy, State.BUY), (young, State.INSUFFICIENT_HISTORY)):
        state[case] = value.value
    state[absent | noted] = State.NO_DATA.value
    day = np.repeat(day_array, n_funds)
    nat = np.datetime64("NaT", "ns")
    since = np.select(
        [buy | sell, hold, empty], [day, column("last_buy_date", nat), column("last_sell_date", nat)], nat
    )
    since_close = np.select(
        [buy | sell, hold, empty],
        [column("close", np.nan), column("last_buy_close", np.nan), column("last_sell_close", np.nan)],
        np.nan,
    )
    close = column("close", np.nan)
    dated = ~np.isnat(since)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = (close / since_close - 1) * 100
    pct = np.full(size, np.nan)
    pct[dated] = python_round(growth[dated], 2)  # as each day's report has always been rounded
    note = np.full(size, None, dtype=object)
    note[absent] = NOT_TRADING
    note[noted] = note_of_day[noted]
    note[young] = [too_few_bars(b, params) for b in bars[young].astype(int).tolist()]
    shown = ~(absent | noted)
    return {
        "ts_code": np.tile(codes, len(day_array)),
        "name": np.tile(universe["name"].to_numpy(dtype=object), len(day_array)),
        "trade_date": day,
        "state": state,
        "close": close,
        "ma_short": np.where(shown, short, np.nan),
        "ma_long": np.where(shown, long, np.nan),
        "since": since,
        "days": np.where(dated, (day - since).astype("timedelta64[D]").astype("int64"), 0),
        "dated": dated,
        "pct": pct,
        "note": note,
    }
