"""The backtest: every fund's published BUY and SELL days traded with China ETF costs, against holding it.

The model (docs and the rules page say it for users):

- A signal published for day D fills at the open of the fund's next bar after D (``next_open``; a
  suspended fund waits), or at D's own close (``close``, optimistic: the close is known only once it is
  over). Long only, all in on BUY, all out on SELL; a BUY while in and a SELL while out do nothing. Only a
  BUY inside the period enters: a regime running at its start is not entered.
- Fills are at real traded prices, moved against the trader by the slippage. Once bought, a position
  follows the forward-adjusted price (``shares * factor / factor at entry``), so splits, consolidations and
  distributions neither look like crashes nor vanish. A buy takes the whole lots the cash pays for, the
  commission ``max(rate x value, minimum)`` included; ETFs pay no stamp duty; idle cash earns nothing.
- Buy-and-hold buys at the open of the fund's first bar in the period, with the same lots and costs.
- Equity is marked at each of the fund's bar closes; an open position at the end is valued at the last
  close, without an exit fee. The portfolio is one sleeve per fund of the universe, each with the same
  starting cash (kept idle until the fund's first bar), and its equity is the sum of the sleeves.
- Only published days trade: a day held back from publication is no bar for any fund (no fill, no mark);
  an order waits for the next published bar, as for a suspension.

The backtest is carried day to day: a ``BacktestState`` holds, per fund and for the portfolio, everything
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
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.numbers import python_round
from alchemy_pipeline.domain.strategy import RULE_VERSION, State

NEXT_OPEN, CLOSE = "next_open", "close"
EXECUTIONS = (NEXT_OPEN, CLOSE)
# Trading days in a year, to annualise daily volatility and Sharpe ratios.
TRADING_DAYS_PER_YEAR = 244
DAYS_PER_YEAR = 365.25
PRICE_COLUMNS = ["ts_code", "trade_date", "open", "close", "adj_factor"]
SIGNAL_COLUMNS = ["ts_code", "trade_date", "state"]
# The code of the portfolio's rows (no fund's code looks like it).
PORTFOLIO = "PORTFOLIO"
PORTFOLIO_NAME = "等权组合"
FRACTION_DIGITS = 6
PRICE_DIGITS = 4
MONEY_DIGITS = 2


@dataclass(frozen=True)
class BacktestSettings:
    start: dt.date
    execution: str = NEXT_OPEN
    cash: float = 100_000.0
    commission: float = 0.00025
    min_commission: float = 5.0
    slippage_bps: float = 0.0
    lot: int = 100

    def __post_init__(self):
        if self.execution not in EXECUTIONS:
            raise ValueError(f"execution={self.execution!r}: use one of {', '.join(EXECUTIONS)}")

    def fee(self, value: float) -> float:
        return max(self.commission * value, self.min_commission)

    def as_json(self) -> dict:
        return {
            "execution": self.execution,
            "cash": self.cash,
            "commission": self.commission,
            "min_commission": self.min_commission,
            "slippage_bps": self.slippage_bps,
            "lot": self.lot,
        }


def fingerprint(settings: BacktestSettings, rule: dict, codes: list[str], max_funds_without_data: int) -> str:
    """What every figure depends on besides the prices: the rule (its lengths and definition's version), the
    backtest's settings and start, the universe's codes in order, and the held-back threshold. States and
    documents carry it; a stored state with another one is not carried on."""
    described = {
        "rule": {**rule, "version": RULE_VERSION},
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


def _day_texts(numbers: np.ndarray) -> list[str | None]:
    """A column of day numbers as ISO dates, None where it has no day (NaN)."""
    numbers = np.asarray(numbers, float)
    known = ~np.isnan(numbers)
    texts = np.full(len(numbers), None, dtype=object)
    texts[known] = np.datetime_as_string(numbers[known].astype("int64").astype("datetime64[D]"), unit="D")
    return texts.tolist()


@dataclass
class Trade:
    """One round trip; the exit fields stay None while it is open. Days are whatever labels the caller
    steps with (day numbers in the backtest, bar numbers in the lab)."""

    signal_day: int
    entry_day: int
    entry_price: float  # paid per share, slippage included
    shares: int
    entry_factor: float
    entry_fee: float
    exit_signal_day: int | None = None
    exit_day: int | None = None
    exit_price: float | None = None  # received per share, slippage included
    proceeds: float | None = None  # the value sold, before its fee
    exit_fee: float = 0.0

    @property
    def cost(self) -> float:
        return self.shares * self.entry_price

    def value(self, factor: float, price: float) -> float:
        """What the position is worth at ``price`` on a bar whose adjustment factor is ``factor``."""
        return self.shares * (factor / self.entry_factor) * price

    def net_return(self, value: float | None = None) -> float:
        """Net of fees: of the exit, or of an open position worth ``value`` (marked without an exit fee)."""
        got = self.proceeds - self.exit_fee if value is None else value
        return got / (self.cost + self.entry_fee) - 1


class Book:
    """The cash and the position of one sleeve, and the trades it entered while it was stepped."""

    def __init__(self, settings: BacktestSettings, cash: float, fees: float = 0.0, position: Trade | None = None):
        self.settings = settings
        self.cash, self.fees, self.position = cash, fees, position
        self.trades: list[Trade] = []

    def buy(self, signal_day, day, price: float, factor: float) -> None:
        s = self.settings
        paid = price * (1 + s.slippage_bps / 10_000)
        lots = int(self.cash // (paid * s.lot * (1 + s.commission))) + 1
        while lots > 0 and lots * s.lot * paid + s.fee(lots * s.lot * paid) > self.cash:
            lots -= 1
        if lots == 0:
            return  # not one lot affordable: the cash stays idle
        shares = lots * s.lot
        fee = s.fee(shares * paid)
        self.cash -= shares * paid + fee
        self.fees += fee
        self.position = Trade(signal_day, day, paid, shares, factor, fee)
        self.trades.append(self.position)

    def sell(self, signal_day, day, price: float, factor: float) -> Trade:
        s, trade = self.settings, self.position
        received = price * (1 - s.slippage_bps / 10_000)
        proceeds = trade.value(factor, received)
        fee = s.fee(proceeds)
        self.cash += proceeds - fee
        self.fees += fee
        trade.exit_signal_day, trade.exit_day, trade.exit_price = signal_day, day, received
        trade.proceeds, trade.exit_fee = proceeds, fee
        self.position = None
        return trade

    def equity(self, factor: float, close: float) -> float:
        return self.cash + (self.position.value(factor, close) if self.position else 0.0)


class SignalBook(Book):
    """The strategy's sleeve: a book that trades the published signals, with the order waiting for the next
    bar and the count of closed trades and of those that gained."""

    def __init__(self, settings, cash, fees=0.0, position=None, pending=None, closed=0, wins=0):
        super().__init__(settings, cash, fees, position)
        self.pending: tuple[str, int] | None = pending  # (BUY or SELL, signal day), filled at the next open
        self.closed, self.wins = closed, wins
        self.closed_trades: list[Trade] = []  # closed while stepped

    def step(self, day, open_: float, close: float, factor: float, state: str) -> None:
        if self.pending is not None:  # the order of the fund's previous bar fills at this open
            side, signal_day = self.pending
            self._fill(side, signal_day, day, open_, factor)
            self.pending = None
        if (state == State.BUY and self.position is None) or (state == State.SELL and self.position is not None):
            if self.settings.execution == CLOSE:
                self._fill(state, day, day, close, factor)
            else:
                self.pending = (state, day)

    def _fill(self, side: str, signal_day, day, price: float, factor: float) -> None:
        if side == State.BUY:
            self.buy(signal_day, day, price, factor)
            return
        trade = self.sell(signal_day, day, price, factor)
        self.closed += 1
        self.wins += trade.net_return() > 0
        self.closed_trades.append(trade)


class Stats:
    """The running figures of one equity curve: the last point, the drawdown from the highest point so far
    (the starting value included) and the worst one with its days, and the count, mean and sum of squared
    deviations of the returns (Welford's running form). Days: None before any (the starting value)."""

    __slots__ = ("count", "m2", "mean", "peak", "peak_day", "previous", "worst", "worst_peak_day", "worst_trough_day")

    def __init__(self, start_value: float):
        self.previous = self.peak = start_value
        self.peak_day = self.worst_peak_day = self.worst_trough_day = None
        self.worst, self.count, self.mean, self.m2 = 0.0, 0, 0.0, 0.0

    def add(self, value: float, day) -> None:
        r = value / self.previous - 1
        self.previous, self.count = value, self.count + 1
        delta = r - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (r - self.mean)
        if value > self.peak:
            self.peak, self.peak_day = value, day
        drawdown = value / self.peak - 1
        if drawdown < self.worst:
            self.worst, self.worst_peak_day, self.worst_trough_day = drawdown, self.peak_day, day


@dataclass(frozen=True)
class FundBars:
    """One fund's usable bars, in day order, with the signal published for each day."""

    days: list
    opens: np.ndarray
    closes: np.ndarray
    factors: np.ndarray
    states: list[str]


@dataclass
class Sleeve:
    """One sleeve stepped over a fund's bars: its equity at every bar's close and the trades it entered."""

    equity: np.ndarray
    trades: list[Trade]


def follow_signals(bars: FundBars, settings: BacktestSettings) -> Sleeve:
    """The strategy's sleeve over ``bars`` from the starting cash."""
    book = SignalBook(settings, settings.cash)
    equity = []
    for day, open_, close, factor, state in zip(
        bars.days, bars.opens.tolist(), bars.closes.tolist(), bars.factors.tolist(), bars.states, strict=True
    ):
        book.step(day, open_, close, factor, state)
        equity.append(book.equity(factor, close))
    return Sleeve(np.array(equity), book.trades)


def buy_and_hold(bars: FundBars, settings: BacktestSettings) -> Sleeve:
    """The benchmark's sleeve: bought at the open of the fund's first bar, held to the end."""
    book = Book(settings, settings.cash)
    if bars.days:
        book.buy(bars.days[0], bars.days[0], float(bars.opens[0]), float(bars.factors[0]))
    factors, closes = bars.factors.tolist(), bars.closes.tolist()
    return Sleeve(np.array([book.equity(f, c) for f, c in zip(factors, closes, strict=True)]), book.trades)


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

    def step(self, day: int, funds: list[FundState]) -> None:
        # Added fund after fund in universe order, whatever ran the funds: the same sum, to the last bit.
        strategy = hold = 0.0
        for fund in funds:
            strategy += fund.strategy_stats.previous
            hold += fund.hold_stats.previous
        self.strategy_stats.add(strategy, day)
        self.hold_stats.add(hold, day)
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


def state_numbers(frame: pd.DataFrame) -> np.ndarray:
    """A state frame's fields as one float array, days as day numbers."""
    columns = []
    for field in STATE_FIELDS:
        values = frame[field]
        if field in DAY_FIELDS:
            days = values.to_numpy("datetime64[D]")
            columns.append(np.where(np.isnat(days), np.nan, days.astype("int64").astype(float)))
        else:
            columns.append(values.to_numpy(float, na_value=np.nan))
    return np.column_stack(columns)


@dataclass(frozen=True)
class Bar:
    fund: int  # its index in the universe
    open: float
    close: float
    factor: float
    state: str


def bars_by_day(
    prices: pd.DataFrame, signals: pd.DataFrame, codes: list[str], days: list[dt.date]
) -> dict[int, list[Bar]]:
    """Each day's usable bars (positive open, close and adjustment factor), in universe order, with the
    signal published for the fund that day (NO_DATA without one). Days outside ``days`` are left out."""
    span = prices[prices["trade_date"].isin(pd.to_datetime(days)) & prices["ts_code"].isin(codes)]
    usable = span[(span["open"] > 0) & (span["close"] > 0) & (span["adj_factor"] > 0)]
    merged = usable[PRICE_COLUMNS].merge(signals[SIGNAL_COLUMNS], on=["ts_code", "trade_date"], how="left")
    merged["fund"] = merged["ts_code"].map({c: i for i, c in enumerate(codes)}).astype("int64")
    merged = merged.sort_values(["trade_date", "fund"], kind="stable")
    out: dict[int, list[Bar]] = {}
    numbers = merged["trade_date"].to_numpy("datetime64[D]").astype("int64").tolist()
    states = merged["state"].astype(object).where(merged["state"].notna(), State.NO_DATA).tolist()
    for day, fund, open_, close, factor, state in zip(
        numbers,
        merged["fund"].tolist(),
        merged["open"].astype(float).tolist(),
        merged["close"].astype(float).tolist(),
        merged["adj_factor"].astype(float).tolist(),
        states,
        strict=True,
    ):
        out.setdefault(day, []).append(Bar(fund, open_, close, factor, str(state)))
    return out


@dataclass
class CarriedRun:
    """A state stepped through days: the state after each of them (``frame``: the portfolio's row then each
    fund's, per day), the trades each fund closed in them and its open one at the end, and the days traded."""

    state: BacktestState
    frame: pd.DataFrame
    closed_trades: dict[str, list[Trade]]
    days: list[dt.date]  # every day stepped through
    traded_days: list[dt.date]  # those with a bar of some fund, not held back


def carry(
    state: BacktestState, bars: dict[int, list[Bar]], days: list[dt.date], held_back: set[dt.date] = frozenset()
) -> CarriedRun:
    """Steps ``state`` through ``days`` (consecutive trading days after the state's), each day's ``bars``
    (``bars_by_day``). A day in ``held_back`` is not traded: its stored state is the day before's."""
    entities = 1 + len(state.funds)
    # Each fund's state after each of its bars, and before the first day, as doubles (a decade of a large
    # universe is millions of them): rows of a day without a bar repeat the bar before's, found by position.
    records = [array("d", row) for row in state.record()]
    record_days: list[list[int]] = [[-1] for _ in range(entities)]
    for fund in state.funds:
        fund.strategy.closed_trades = []
    traded = []
    for i, day in enumerate(days):
        todays = bars.get(day_number(day), []) if day not in held_back else []
        if not todays:
            continue
        number = day_number(day)
        for bar in todays:
            fund = state.funds[bar.fund]
            fund.step(number, bar.open, bar.close, bar.factor, bar.state)
            records[bar.fund + 1].extend(fund.record())
            record_days[bar.fund + 1].append(i)
        state.portfolio.step(number, state.funds)
        records[0].extend(state.portfolio.record())
        record_days[0].append(i)
        traded.append(day)
    positions = np.arange(len(days))
    table = np.empty((len(days), entities, len(STATE_FIELDS)))
    for e in range(entities):
        at = np.searchsorted(np.array(record_days[e]), positions, "right") - 1
        table[:, e, :] = np.frombuffer(records[e]).reshape(-1, len(STATE_FIELDS))[at]
        records[e] = None  # handed back as the table fills
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
TABLE_FIGURES = [
    *(("strategy", m) for m in ("total_return", "cagr", "max_drawdown", "sharpe", "trades", "win_rate", "exposure")),
    ("strategy", "fees"),
    *(("buy_and_hold", m) for m in ("total_return", "cagr", "max_drawdown", "sharpe")),
]
FIGURE_COLUMNS = [
    "ts_code",
    "name",
    "trade_date",
    "first_day",
    "start",
    "execution",
    *(f"{s}_{m}" for s, m in TABLE_FIGURES),
]


def figures(states: pd.DataFrame, settings: BacktestSettings) -> pd.DataFrame:
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


def figure_table(states: pd.DataFrame, settings: BacktestSettings) -> pd.DataFrame:
    """The figures the reports, the fund pages and the UI read (``FIGURE_COLUMNS``), days as dates, each
    rounded as the documents publish it."""
    table = figures(states, settings)
    for sleeve, metric in TABLE_FIGURES:
        if metric != "trades":
            column = f"{sleeve}_{metric}"
            digits = MONEY_DIGITS if metric == "fees" else FRACTION_DIGITS
            values = table[column].to_numpy(float)
            table[column] = np.where(np.isfinite(values), python_round(np.nan_to_num(values), digits), np.nan)
    table["first_day"] = _day_texts(table["first_day"])
    table["start"], table["execution"] = settings.start.isoformat(), settings.execution
    return table[FIGURE_COLUMNS]


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
            columns[metric] = _day_texts(values)
        elif metric == "trades":
            columns[metric] = values.astype("int64").tolist()
        else:
            columns[metric] = _rounded(values, MONEY_DIGITS if metric == "fees" else FRACTION_DIGITS)
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _open_trades_json(table: pd.DataFrame) -> list[dict | None]:
    held = table["strategy_shares"].to_numpy() > 0
    signal, entry = _day_texts(table["strategy_signal_day"]), _day_texts(table["strategy_entry_day"])
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
    table = figures(run.frame[run.frame["trade_date"].isin(pd.to_datetime(days))], settings).reset_index(drop=True)
    strategy, hold, open_trades = (
        _sleeve_json(table, "strategy"),
        _sleeve_json(table, "buy_and_hold"),
        _open_trades_json(table),
    )
    codes, names, firsts = table["ts_code"].tolist(), table["name"].tolist(), _day_texts(table["first_day"])
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
    opens = dict(zip(last["ts_code"], _open_trades_json(figures(last, run.state.settings)), strict=True))
    return {
        code: [
            *kept.get(code, []),
            *(trade_json(t) for t in run.closed_trades[code]),
            *([opens[code]] if opens[code] else []),
        ]
        for code in run.state.codes
    }


def run_backtest(
    prices: pd.DataFrame,
    signals: pd.DataFrame,
    universe: pd.DataFrame,
    settings: BacktestSettings,
    days: list[dt.date],
    held_back: set[dt.date] = frozenset(),
    fingerprint_: str = "",
) -> CarriedRun:
    """The backtest from its empty state through ``days`` (the trading days from ``settings.start``)."""
    state = BacktestState.empty(settings, universe, fingerprint_)
    return carry(state, bars_by_day(prices, signals, state.codes, days), days, held_back)
