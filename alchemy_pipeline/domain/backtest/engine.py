"""The backtest's engine: a fund's published BUY and SELL days traded with China ETF costs, against holding it.

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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from alchemy_pipeline.domain.signals.rule import State

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
