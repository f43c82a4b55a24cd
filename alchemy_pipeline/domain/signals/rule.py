"""The double moving-average rule: one fund on one day, as docs/strategy.md defines it.

This module is the definition. ``fast_path`` computes the same for every fund and day of a range at
once, and ``tests/test_fast_path.py`` holds it to this module on random prices.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from alchemy_pipeline.domain.signals.averages import bar_sums, rounded_averages

# The version of the rule's definition: raised whenever a change to this module changes what it publishes,
# so that the backtest's fingerprint tells figures of the old rule from the new.
# 2: the averages computed exactly (``averages``), where TA-Lib's floating point rounded half-way ties either way.
RULE_VERSION = 2
MIN_SEARCH_DAYS = 250
# The averages are rounded to this many decimals, as the reports show them, before they are compared
# (``averages.PRICE_UNITS``: thousandths).
AVERAGE_DECIMALS = 3
# The rule's name in what is published.
RULE_NAME = "double_ma"
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
class RuleParams:
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

    def described(self) -> dict:
        """The rule as the reports and the backtest's documents name it (their ``strategy`` key)."""
        return {"name": RULE_NAME, "short": self.short, "long": self.long}


@dataclass(frozen=True)
class Signal:
    state: State
    close: float | None = None
    ma_short: float | None = None
    ma_long: float | None = None
    since: dt.date | None = None
    days: int | None = None
    pct: float | None = None
    note: str | None = None


def too_few_bars(bars: int, params: RuleParams) -> str:
    return f"{bars} bars; the strategy needs {params.long + 1}"


def no_usable_factor(days: Sequence[dt.date]) -> str:
    return "no usable adjustment factor on " + ", ".join(str(d) for d in days[:5])


def fund_signal(
    day: dt.date, dates: Sequence[dt.date], closes: Sequence[float], factors: Sequence[float], params: RuleParams
) -> Signal:
    """The signal of a fund on ``day`` from its bars (in date order) in the ``params.window`` trading days
    ending on ``day``."""
    if not dates:
        return Signal(State.NO_DATA, note=NOT_TRADING)
    if dates[-1] != day:
        return Signal(State.NO_DATA, note=MISSING_BAR)
    closes, factors, close = np.asarray(closes, float), np.asarray(factors, float), float(closes[-1])
    if unusable := [d for d, f in zip(dates, factors, strict=True) if not f > 0]:
        return Signal(State.NO_DATA, close=close, note=no_usable_factor(unusable))
    adjusted = closes * factors / factors[-1]  # forward-adjusted to the day's factor
    short, long = (_averages(closes, factors, n) for n in (params.short, params.long))
    shown = {"close": close, "ma_short": _number(short[-1]), "ma_long": _number(long[-1])}
    if len(dates) < params.long + 1:
        return Signal(State.INSUFFICIENT_HISTORY, **shown, note=too_few_bars(len(dates), params))
    # NaN compares false: a cross needs both averages on the bar before it.
    golden = [t for t in range(1, len(dates)) if short[t] > long[t] and short[t - 1] <= long[t - 1]]
    death = [t for t in range(1, len(dates)) if short[t] < long[t] and short[t - 1] >= long[t - 1]]
    today = len(dates) - 1
    if golden and golden[-1] == today:
        state, crosses = State.BUY, golden
    elif death and death[-1] == today:
        state, crosses = State.SELL, death
    else:
        # On equal averages the regime of the latest day they differed goes on; averages that have not
        # differed within the window are EMPTY (no BUY has fired).
        apart = [t for t in range(len(dates)) if short[t] != long[t] and not np.isnan(short[t] + long[t])]
        above = bool(apart) and short[apart[-1]] > long[apart[-1]]
        state, crosses = (State.HOLD, golden) if above else (State.EMPTY, death)
    if not crosses:
        return Signal(state, **shown)
    since = dates[crosses[-1]]
    # The adjusted close on the day is its close; pct is rounded as Python's round does it (of a float: a NumPy
    # number's round rounds its value times 100, which on a tie such as -3.4250000000000003 goes the other way).
    pct = round(float((close / adjusted[crosses[-1]] - 1) * 100), 2)
    return Signal(state, **shown, since=since, days=(day - since).days, pct=pct)


def _averages(closes: np.ndarray, factors: np.ndarray, n: int) -> np.ndarray:
    """The ``n``-bar averages of the closes forward-adjusted to the last bar's factor, exactly, rounded to
    thousandths; NaN before the window's ``n``-th bar."""
    averages = rounded_averages(bar_sums(closes, factors, n), n, factors[-1])
    averages[: n - 1] = np.nan
    return averages


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
