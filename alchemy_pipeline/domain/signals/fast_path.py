"""The rule of ``rule`` for every fund and day of a range at once: how each part maps onto it.

``fund_signal`` (the rule) takes one fund's bars in one day's window; this module computes a fund's days
together and classifies the grid of days x funds in whole columns. It gives the same values, bit for bit
(``tests/test_fast_path.py`` holds it to the rule on random prices with ties, gaps, splits and late
listings), and is what the pipeline runs: on 20 real funds over a year, 124x faster than the rule applied
one fund and day at a time (``benchmarks/RESULTS.md``, "The strategy's fast path"). Each trick, and why
it is safe:

- **Each average once per factor.** The rule's exact averages (``averages``) divide the sum of ``close x
  factor`` over n bars by n x the day's factor. The sum ending at a bar is the same in every window that holds
  its n bars, and a fund's factor changes only on its rare dividends and splits, so a bar's rounded average is
  the same for every day with the same factor whose window holds the bar's n bars: the averages are taken once
  per bar for each distinct factor of the days (not once per day and bar of its 300-day window), and each day
  reads its own. A column with fewer than n of the day's own bars before it has no average, as in the rule.
- **Crosses as running indices.** The rule's golden and death crosses (and the columns where the averages
  differ) become boolean masks over those averages; the latest up to each bar is a running maximum of their
  indices, and it counts for a day only where its window defines both averages on the bar before it (the
  latest is then found within the window, as the rule searches it). A cross's adjusted close is the rule's
  ``close * factor / factor of the day``, in the same order of operations.
- **The indicator table.** Per fund and day it keeps what classifying needs (the averages, the day
  before's, the latest crosses with their adjusted closes, the regime, the bar count, a note), which is
  the ``etf_indicators`` asset; ``classify`` then decides each row in whole columns, a batch of days at a
  time, with the rule's order of cases.
- **Rounding.** ``pct`` is rounded by ``numbers.python_round``, Python's ``round`` for whole columns.
- **Memory handed back.** The indicator table is assembled a column at a time from the funds' parts, and
  the memory each column's parts held is handed back to the system at once (``infrastructure/memory.py``):
  when the indicators were still a matrix of windows, the 1,500-fund scale run's peak was 1,788 MB with it
  and 2,239 MB without it, past its 2 GB target (``RESULTS.md``).
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
    all_dates = bars["trade_date"].to_numpy(dtype="datetime64[D]")
    all_closes = bars["close"].to_numpy(dtype="float64")
    all_factors = bars["adj_factor"].to_numpy(dtype="float64")
    del bars
    parts = []
    for fund, (start, end) in enumerate(itertools.pairwise([*_fund_starts(fund_of_row), len(fund_of_row)])):
        ts_code, dates = funds[fund], all_dates[start:end]
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
    return _indicator_table(parts)


def _fund_starts(fund_of_row: np.ndarray) -> np.ndarray:
    """The first row of each fund, in rows grouped by fund."""
    if not len(fund_of_row):
        return np.array([], dtype=int)
    return np.flatnonzero(np.r_[True, fund_of_row[1:] != fund_of_row[:-1]])


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


def _last_index(mask: np.ndarray) -> np.ndarray:
    """At each position, the index of the last True up to it (-1: none yet)."""
    return np.maximum.accumulate(np.where(mask, np.arange(len(mask)), -1)) if len(mask) else np.array([], int)


def _fund_days(ts_code, dates, closes, factors, lo: np.ndarray, hi: np.ndarray, params: RuleParams) -> dict:
    """Indicators of one fund on the days ending the windows ``[lo, hi)`` of its bars (the last bar is the
    day's), computed for all those days at once: one pass over the bars per distinct factor of the days."""
    rows = len(lo)
    bars = hi - lo
    day_factor = factors[hi - 1]
    products = closes * factors  # as the rule forward-adjusts: (close x factor) / factor of the day
    unusable_bar = np.isnan(factors) | (factors <= 0)
    unusable_before = np.concatenate([[0], np.cumsum(unusable_bar)])
    bad = unusable_before[hi] > unusable_before[lo]
    sums = {period: bar_sums(closes, factors, period) for period in (params.short, params.long)}
    # A column is defined for a row from its ``long``-th bar of the window on; a cross needs the column before it
    # defined. Those columns' averages are the same in every window that holds them, so each is taken once.
    defined_from = lo + params.long - 1
    part = {name: np.full(rows, np.nan) for name in ("ma_short", "ma_long", "prev_ma_short", "prev_ma_long")}
    buy, sell, apart = np.full(rows, -1), np.full(rows, -1), np.full(rows, -1)
    above_at_apart = np.zeros(rows, bool)
    _, group_of_row = np.unique(day_factor, return_inverse=True)
    for group in range(group_of_row.max() + 1 if rows else 0):
        members = np.flatnonzero(group_of_row == group)
        first, stop = int(lo[members].min()), int(hi[members].max())
        factor = day_factor[members[0]]
        short = rounded_averages(sums[params.short][first:stop], params.short, factor)
        long = rounded_averages(sums[params.long][first:stop], params.long, factor)
        end = hi[members] - 1 - first  # each member's day, in the group's bars
        for name, averages, period in (("ma_short", short, params.short), ("ma_long", long, params.long)):
            part[name][members] = np.where(bars[members] >= period, averages[end], np.nan)
            part[f"prev_{name}"][members] = np.where(bars[members] > period, averages[end - 1], np.nan)
        above, below = short > long, short < long  # False where an average is NaN
        for at, side in ((buy, above), (sell, below)):
            latest = _last_index(np.r_[False, side[1:] & ~side[:-1]])[end]
            at[members] = np.where(latest - 1 >= defined_from[members] - first, latest + first, -1)
        latest = _last_index(above | below)[end]
        valid = latest >= defined_from[members] - first
        apart[members] = np.where(valid, latest + first, -1)
        above_at_apart[members] = valid & above[np.maximum(latest, 0)]
    part.update(ts_code=ts_code, trade_date=dates[hi - 1], close=closes[hi - 1], adj_factor=day_factor, bars=bars)
    for name, at in (("buy", buy), ("sell", sell)):
        found = at >= 0
        part[f"last_{name}_date"] = np.where(found, dates[np.maximum(at, 0)], np.datetime64("NaT", "D"))
        with np.errstate(divide="ignore", invalid="ignore"):
            part[f"last_{name}_close"] = np.where(found, products[np.maximum(at, 0)] / day_factor, np.nan)
    part["trend"] = np.where(apart < 0, 0, np.where(above_at_apart, 1, -1))
    if bad.any():
        for name in ("ma_short", "ma_long", "prev_ma_short", "prev_ma_long", "last_buy_close", "last_sell_close"):
            part[name] = np.where(bad, np.nan, part[name])
        for name in ("last_buy_date", "last_sell_date"):
            part[name] = np.where(bad, np.datetime64("NaT", "D"), part[name])
        part["trend"] = np.where(bad, 0, part["trend"])
        note = np.full(rows, None, dtype=object)
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
