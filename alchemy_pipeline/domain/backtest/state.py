"""The backtest carried day to day, and its state stored as a table.

A ``BacktestState`` holds, per fund and for the portfolio, everything
the figures need to go on (cash, position, pending order, running peak and worst drawdown, the running sums
of the daily returns), in full precision, and ``carry`` steps it through days. A run from the start is
``carry`` from the empty state; a day's state depends only on the day before's and the day's bars, so a
day's figures are the same whichever run computed them. A day's figures are those of each fund's last bar
on or before it (a year's rate is measured to that bar).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest.engine import (
    PORTFOLIO,
    PORTFOLIO_NAME,
    PRICE_COLUMNS,
    SIGNAL_COLUMNS,
    BacktestSettings,
    Book,
    SignalBook,
    Stats,
    Trade,
)
from alchemy_pipeline.domain.signals.rule import RULE_VERSION, State


def fingerprint(
    settings: BacktestSettings, rule: dict, codes: list[str], max_funds_without_data: int, version: int = RULE_VERSION
) -> str:
    """What every figure depends on besides the prices: the rule (its lengths and definition's version), the
    backtest's settings and start, the universe's codes in order, and the held-back threshold. States and
    documents carry it; a stored state with another one is not carried on."""
    described = {
        "rule": {**rule, "version": version},
        "backtest": {"start": settings.start.isoformat(), **settings.as_json()},
        "universe": list(codes),
        "max_funds_without_data": max_funds_without_data,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode("utf-8")).hexdigest()[:16]


# Days inside the engine are day numbers (days since 1970-01-01): they order like dates, and a state is
# then all numbers, kept as one float array per run.
_EPOCH = dt.date(1970, 1, 1).toordinal()


def day_number(day: dt.date) -> int:
    return day.toordinal() - _EPOCH


def number_day(number: float) -> dt.date:
    return dt.date.fromordinal(int(number) + _EPOCH)


def day_texts(numbers: np.ndarray) -> list[str | None]:
    """A column of day numbers as ISO dates, None where it has no day (NaN)."""
    numbers = np.asarray(numbers, float)
    known = ~np.isnan(numbers)
    texts = np.full(len(numbers), None, dtype=object)
    texts[known] = np.datetime_as_string(numbers[known].astype("int64").astype("datetime64[D]"), unit="D")
    return texts.tolist()


# A state as numbers: one row per fund (and the portfolio's), these fields, days as day numbers (NaN: none).
SLEEVE_FIELDS = [
    "cash",
    "fees",
    "shares",
    "signal_day",
    "entry_day",
    "entry_price",
    "entry_factor",
    "entry_fee",
    "previous",
    "peak",
    "peak_day",
    "worst",
    "worst_peak_day",
    "worst_trough_day",
    "count",
    "mean",
    "m2",
]
SLEEVES = ("strategy", "buy_and_hold")
STATE_FIELDS = [
    "first_day",
    "last_day",
    "bars",
    "bars_in_market",
    "last_close",
    "last_factor",
    "closed",
    "wins",
    "pending_side",
    "pending_signal_day",
    *(f"{s}_{f}" for s in SLEEVES for f in SLEEVE_FIELDS),
]
DAY_FIELDS = [f for f in STATE_FIELDS if f.endswith("_day")]
_PENDING = {State.BUY: 1.0, State.SELL: -1.0}
_SIDES = {1.0: State.BUY, -1.0: State.SELL}
_NAN = math.nan


def _or_nan(value) -> float:
    return _NAN if value is None else value


def _or_none(value: float):
    return None if value != value else value


_NO_POSITION = (0, *(_NAN,) * 5)


def _sleeve_record(book: Book | None, stats: Stats) -> tuple:
    p = book.position if book is not None else None
    return (
        *((book.cash, book.fees) if book is not None else (_NAN, _NAN)),
        *((p.shares, p.signal_day, p.entry_day, p.entry_price, p.entry_factor, p.entry_fee) if p else _NO_POSITION),
        stats.previous,
        stats.peak,
        _or_nan(stats.peak_day),
        stats.worst,
        _or_nan(stats.worst_peak_day),
        _or_nan(stats.worst_trough_day),
        stats.count,
        stats.mean,
        stats.m2,
    )


def _sleeve_from(values: dict, sleeve: str, start_value: float) -> tuple[Trade | None, Stats]:
    v = {f: values[f"{sleeve}_{f}"] for f in SLEEVE_FIELDS}
    position = None
    if v["shares"] > 0:
        position = Trade(
            int(v["signal_day"]),
            int(v["entry_day"]),
            v["entry_price"],
            int(v["shares"]),
            v["entry_factor"],
            v["entry_fee"],
        )
    stats = Stats(start_value)
    stats.previous, stats.peak, stats.worst, stats.mean, stats.m2 = (
        v["previous"],
        v["peak"],
        v["worst"],
        v["mean"],
        v["m2"],
    )
    stats.count = int(v["count"])
    stats.peak_day, stats.worst_peak_day, stats.worst_trough_day = (
        _day_or_none(v[f]) for f in ("peak_day", "worst_peak_day", "worst_trough_day")
    )
    return position, stats


def _day_or_none(value: float) -> int | None:
    return None if value != value else int(value)


class FundState:
    """One fund's two sleeves and what its figures need, carried from bar to bar."""

    def __init__(self, settings: BacktestSettings):
        self.settings = settings
        self.strategy = SignalBook(settings, settings.cash)
        self.hold = Book(settings, settings.cash)
        self.strategy_stats, self.hold_stats = Stats(settings.cash), Stats(settings.cash)
        self.first_day: int | None = None
        self.last_day: int | None = None
        self.bars = self.bars_in_market = 0
        self.last_close = self.last_factor = _NAN

    def step(self, day: int, open_: float, close: float, factor: float, state: str) -> None:
        if self.first_day is None:
            self.first_day = day
            self.hold.buy(day, day, open_, factor)
        self.strategy.step(day, open_, close, factor, state)
        self.strategy_stats.add(self.strategy.equity(factor, close), day)
        self.hold_stats.add(self.hold.equity(factor, close), day)
        self.bars += 1
        self.bars_in_market += self.strategy.position is not None
        self.last_day, self.last_close, self.last_factor = day, close, factor

    def record(self) -> tuple:
        s = self.strategy
        pending = (_PENDING[s.pending[0]], s.pending[1]) if s.pending else (_NAN, _NAN)
        return (
            _or_nan(self.first_day),
            _or_nan(self.last_day),
            self.bars,
            self.bars_in_market,
            self.last_close,
            self.last_factor,
            s.closed,
            s.wins,
            *pending,
            *_sleeve_record(s, self.strategy_stats),
            *_sleeve_record(self.hold, self.hold_stats),
        )

    @classmethod
    def from_record(cls, values: dict, settings: BacktestSettings) -> FundState:
        fund = cls(settings)
        fund.first_day, fund.last_day = _day_or_none(values["first_day"]), _day_or_none(values["last_day"])
        fund.bars, fund.bars_in_market = int(values["bars"]), int(values["bars_in_market"])
        fund.last_close, fund.last_factor = values["last_close"], values["last_factor"]
        position, fund.strategy_stats = _sleeve_from(values, "strategy", settings.cash)
        side = values["pending_side"]
        pending = None if side != side else (_SIDES[side], int(values["pending_signal_day"]))
        fund.strategy = SignalBook(
            settings,
            values["strategy_cash"],
            values["strategy_fees"],
            position,
            pending,
            int(values["closed"]),
            int(values["wins"]),
        )
        held, fund.hold_stats = _sleeve_from(values, "buy_and_hold", settings.cash)
        fund.hold = Book(settings, values["buy_and_hold_cash"], values["buy_and_hold_fees"], held)
        return fund


class PortfolioState:
    """The equal-weight portfolio: the sum of every fund's sleeves, on each day some fund has a bar."""

    def __init__(self, start_value: float):
        self.strategy_stats, self.hold_stats = Stats(start_value), Stats(start_value)
        self.first_day: int | None = None
        self.last_day: int | None = None

    def step(self, day: int, strategy_total: float, hold_total: float) -> None:
        """A day some fund has a bar: the sleeves' totals (``universe_total``) marked."""
        self.strategy_stats.add(strategy_total, day)
        self.hold_stats.add(hold_total, day)
        if self.first_day is None:
            self.first_day = day
        self.last_day = day

    def record(self) -> tuple:
        no_book = (_NAN,) * 8
        return (
            _or_nan(self.first_day),
            _or_nan(self.last_day),
            *no_book,
            *_sleeve_record(None, self.strategy_stats),
            *_sleeve_record(None, self.hold_stats),
        )

    @classmethod
    def from_record(cls, values: dict, start_value: float) -> PortfolioState:
        portfolio = cls(start_value)
        portfolio.first_day, portfolio.last_day = _day_or_none(values["first_day"]), _day_or_none(values["last_day"])
        _, portfolio.strategy_stats = _sleeve_from(values, "strategy", start_value)
        _, portfolio.hold_stats = _sleeve_from(values, "buy_and_hold", start_value)
        return portfolio


class StateError(ValueError):
    """A stored state that cannot be carried on: another fingerprint, or not a state at all."""


@dataclass
class BacktestState:
    """The whole backtest after a day: every fund of the universe (in its order) and the portfolio."""

    settings: BacktestSettings
    fingerprint: str
    codes: list[str]
    names: list[str]
    funds: list[FundState]
    portfolio: PortfolioState

    @classmethod
    def empty(cls, settings: BacktestSettings, universe: pd.DataFrame, fingerprint: str) -> BacktestState:
        codes, names = universe["ts_code"].tolist(), universe["name"].tolist()
        funds = [FundState(settings) for _ in codes]
        return cls(settings, fingerprint, codes, names, funds, PortfolioState(settings.cash * len(codes)))

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, settings: BacktestSettings, universe: pd.DataFrame, fingerprint: str
    ) -> BacktestState:
        """The state stored as one day's rows (``state_frame``); a ``StateError`` saying why it cannot go on."""
        if frame.empty or "fingerprint" not in frame.columns:
            raise StateError("no state was stored (a day backtested before the backtest was carried day to day)")
        stored = str(frame["fingerprint"].iloc[0])
        if stored != fingerprint:
            raise StateError(
                f"it was made with other settings, rule or universe (fingerprint {stored}, now {fingerprint})"
            )
        codes = frame["ts_code"].tolist()
        if codes[1:] != universe["ts_code"].tolist():
            raise StateError("its funds are not the universe's")
        rows = state_numbers(frame).tolist()
        records = [dict(zip(STATE_FIELDS, row, strict=True)) for row in rows]
        state = cls.empty(settings, universe, fingerprint)
        state.portfolio = PortfolioState.from_record(records[0], settings.cash * len(codes[1:]))
        state.funds = [FundState.from_record(r, settings) for r in records[1:]]
        return state

    def record(self) -> list[tuple]:
        """The portfolio's row, then each fund's, as numbers in ``STATE_FIELDS`` order."""
        return [self.portfolio.record(), *(fund.record() for fund in self.funds)]


def state_column(frame: pd.DataFrame, field: str) -> np.ndarray:
    """One field of a state frame as floats, a day as its day number."""
    values = frame[field]
    if field in DAY_FIELDS:
        days = values.to_numpy("datetime64[D]")
        return np.where(np.isnat(days), np.nan, days.astype("int64").astype(float))
    return values.to_numpy(float, na_value=np.nan)


def state_numbers(frame: pd.DataFrame) -> np.ndarray:
    """A state frame's fields as one float array, days as day numbers."""
    return np.column_stack([state_column(frame, field) for field in STATE_FIELDS])


def universe_total(values: np.ndarray) -> float:
    """The sum of every fund's value, added fund after fund in universe order: whatever ran the funds, the
    same sum to the last bit (a cumulative sum adds in order; a plain sum pairs them up)."""
    return float(np.cumsum(values)[-1]) if len(values) else 0.0


# A bar's signal as a number: what the engine trades on.
SIGNAL_CODES = {State.BUY: 1, State.SELL: -1}


@dataclass(frozen=True)
class DayBars:
    """Every usable bar of a run (positive open, close and adjustment factor) as columns, ordered by day then
    by the fund's place in the universe, with the signal published for the fund that day (1 BUY, -1 SELL,
    0 anything else, or none)."""

    days: np.ndarray  # day numbers
    funds: np.ndarray  # index in the universe
    opens: np.ndarray
    closes: np.ndarray
    factors: np.ndarray
    signals: np.ndarray

    def on(self, day: int) -> slice:
        """Where the bars of day number ``day`` are (an empty slice without any)."""
        return slice(*np.searchsorted(self.days, [day, day + 1]))


def bars_by_day(prices: pd.DataFrame, signals: pd.DataFrame, codes: list[str], days: list[dt.date]) -> DayBars:
    """The usable bars of ``codes`` on ``days``, with their signals."""
    span = prices[prices["trade_date"].isin(pd.to_datetime(days)) & prices["ts_code"].isin(codes)]
    usable = span[(span["open"] > 0) & (span["close"] > 0) & (span["adj_factor"] > 0)]
    merged = usable[PRICE_COLUMNS].merge(signals[SIGNAL_COLUMNS], on=["ts_code", "trade_date"], how="left")
    merged["fund"] = merged["ts_code"].map({c: i for i, c in enumerate(codes)}).astype("int64")
    merged = merged.sort_values(["trade_date", "fund"], kind="stable")
    return DayBars(
        days=merged["trade_date"].to_numpy("datetime64[D]").astype("int64"),
        funds=merged["fund"].to_numpy("int64"),
        opens=merged["open"].to_numpy(float),
        closes=merged["close"].to_numpy(float),
        factors=merged["adj_factor"].to_numpy(float),
        signals=merged["state"].map(SIGNAL_CODES).fillna(0).to_numpy("int8"),
    )


@dataclass
class CarriedRun:
    """A state stepped through days: the state after each of them (``frame``: the portfolio's row then each
    fund's, per day), the trades each fund closed in them and its open one at the end, and the days traded."""

    state: BacktestState
    frame: pd.DataFrame
    closed_trades: dict[str, list[Trade]]
    days: list[dt.date]  # every day stepped through
    traded_days: list[dt.date]  # those with a bar of some fund, not held back


_SIGNALS = {1: State.BUY, -1: State.SELL, 0: State.HOLD}


def carry_fund_by_fund(
    state: BacktestState, bars: DayBars, days: list[dt.date], held_back: set[dt.date] = frozenset()
) -> CarriedRun:
    """The definition of carrying a state: ``state`` stepped through ``days`` (consecutive trading days after
    the state's) one fund and bar at a time, with the books of ``engine``. A day in ``held_back`` is not
    traded: its stored state is the day before's. The pipeline runs ``fast_path.carry``, which gives the
    same to the last bit (``tests/test_backtest_fast_path.py``)."""
    table = np.empty((len(days), 1 + len(state.funds), len(STATE_FIELDS)))
    rows = np.array(state.record(), dtype=float).reshape(1 + len(state.funds), len(STATE_FIELDS))
    for fund in state.funds:
        fund.strategy.closed_trades = []
    traded = []
    for i, day in enumerate(days):
        todays = bars.on(day_number(day)) if day not in held_back else slice(0, 0)
        if todays.stop > todays.start:
            number = day_number(day)
            for fund_index, open_, close, factor, signal in zip(
                bars.funds[todays].tolist(),
                bars.opens[todays].tolist(),
                bars.closes[todays].tolist(),
                bars.factors[todays].tolist(),
                bars.signals[todays].tolist(),
                strict=True,
            ):
                fund = state.funds[fund_index]
                fund.step(number, open_, close, factor, _SIGNALS[signal])
                rows[fund_index + 1] = fund.record()
            state.portfolio.step(
                number,
                universe_total(np.array([f.strategy_stats.previous for f in state.funds])),
                universe_total(np.array([f.hold_stats.previous for f in state.funds])),
            )
            rows[0] = state.portfolio.record()
            traded.append(day)
        table[i] = rows
    frame = state_frame(table.reshape(-1, len(STATE_FIELDS)), state, days)
    closed = {code: fund.strategy.closed_trades for code, fund in zip(state.codes, state.funds, strict=True)}
    return CarriedRun(state, frame, closed, list(days), traded)


def state_frame_empty() -> pd.DataFrame:
    """A state table without rows: the output of a run whose days are all before the backtest's start."""
    state = BacktestState(BacktestSettings(dt.date(1970, 1, 1)), "", [], [], [], PortfolioState(0.0))
    return state_frame(np.empty((0, len(STATE_FIELDS))), state, []).iloc[0:0]


def state_frame(numbers: np.ndarray, state: BacktestState, days: list[dt.date]) -> pd.DataFrame:
    """The states of ``days`` as a table: per day the portfolio's row (ts_code PORTFOLIO) then each fund's."""
    codes, names = [PORTFOLIO, *state.codes], [PORTFOLIO_NAME, *state.names]
    keys = pd.DataFrame(
        {
            "ts_code": pd.Series(codes * len(days), dtype=object),
            "name": pd.Series(names * len(days), dtype=object),
            "trade_date": _timestamps(np.repeat(np.array(days, dtype="datetime64[D]"), len(codes))),
            "fingerprint": pd.Series([state.fingerprint] * (len(codes) * len(days)), dtype=object),
        }
    )
    # The numbers themselves, not a copy: a decade of 1,500 funds is more than a gigabyte of them.
    frame = pd.concat([keys, pd.DataFrame(numbers, columns=list(STATE_FIELDS), copy=False)], axis=1)
    for j, field in enumerate(STATE_FIELDS):
        if field in DAY_FIELDS:
            values = numbers[:, j]
            stamped = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
            known = ~np.isnan(values)
            stamped[known] = values[known].astype("int64").astype("datetime64[D]")
            frame[field] = _timestamps(stamped)
    return frame


def _timestamps(days: np.ndarray) -> pd.Series:
    # Nanoseconds, as every other table's trade_date: frames are merged on it.
    return pd.Series(days.astype("datetime64[ns]"))
