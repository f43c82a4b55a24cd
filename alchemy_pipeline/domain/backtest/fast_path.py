"""The carried backtest for every fund of a day at once: what ``state.carry_fund_by_fund`` defines, as the
pipeline runs it.

A decade of 1,500 funds is 3.6 million fund-days; stepped one fund and bar at a time in Python, they took most
of the scale run (``benchmarks/RESULTS.md``). Here the state is one array, a row per fund in ``STATE_FIELDS``
order (the stored table's row), and each day's marks and running sums are whole-column arithmetic over the
funds with a bar that day, in the books' order of operations, so that every figure is theirs to the last
bit (``tests/test_backtest_fast_path.py`` holds it to the definition on random markets):

- fills (the first bar's purchase of buy-and-hold, a pending order at the open, an order at the close) are
  the rows that fill that day, a few at most; the lots a buy takes are found as ``Book.buy`` finds them, a lot
  fewer at a time while the cost and its commission are more than the cash;
- a closed trade becomes a ``Trade`` as the books make it;
- the portfolio is the plain ``PortfolioState`` of the funds' totals.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest.engine import CLOSE, BacktestSettings, Trade
from alchemy_pipeline.domain.backtest.state import (
    STATE_FIELDS,
    BacktestState,
    CarriedRun,
    DayBars,
    FundState,
    bars_by_day,
    day_number,
    state_frame,
    universe_total,
)

_AT = {field: j for j, field in enumerate(STATE_FIELDS)}
_BUY, _SELL = 1.0, -1.0  # pending_side, as the state stores it


class _Funds:
    """Every fund's state as one array (``STATE_FIELDS`` columns), stepped a day at a time."""

    def __init__(self, rows: np.ndarray, settings: BacktestSettings):
        self.rows, self.settings = rows, settings
        self.closed: dict[int, list[Trade]] = {}

    def column(self, field: str) -> np.ndarray:
        return self.rows[:, _AT[field]]

    def get(self, field: str, at: np.ndarray) -> np.ndarray:
        return self.rows[at, _AT[field]]

    def set(self, field: str, at: np.ndarray, values) -> None:
        self.rows[at, _AT[field]] = values

    def step(self, day: int, at: np.ndarray, opens, closes, factors, signals) -> None:
        """``FundState.step`` of the funds ``at`` (each once, in universe order) with their bars."""
        new = np.isnan(self.get("first_day", at))
        if new.any():
            self.set("first_day", at[new], day)
            self._buy("buy_and_hold", at[new], day, day, opens[new], factors[new])
        self._fill_pending(day, at, opens, factors)
        held = self.get("strategy_shares", at) > 0
        wanted = ((signals == 1) & ~held) | ((signals == -1) & held)
        if wanted.any():
            side = np.where(signals[wanted] == 1, _BUY, _SELL)
            if self.settings.execution == CLOSE:
                self._fill(at[wanted], side, day, day, closes[wanted], factors[wanted])
            else:
                self.set("pending_side", at[wanted], side)
                self.set("pending_signal_day", at[wanted], day)
        for sleeve in ("strategy", "buy_and_hold"):
            self._mark(sleeve, day, at, closes, factors)
        self.set("bars", at, self.get("bars", at) + 1)
        self.set("bars_in_market", at, self.get("bars_in_market", at) + (self.get("strategy_shares", at) > 0))
        self.set("last_day", at, day)
        self.set("last_close", at, closes)
        self.set("last_factor", at, factors)

    def _fill_pending(self, day: int, at: np.ndarray, opens, factors) -> None:
        pending = ~np.isnan(self.get("pending_side", at))
        if not pending.any():
            return
        rows = at[pending]
        side, signal_day = self.get("pending_side", rows), self.get("pending_signal_day", rows)
        self._fill(rows, side, signal_day, day, opens[pending], factors[pending])
        self.set("pending_side", rows, np.nan)
        self.set("pending_signal_day", rows, np.nan)

    def _fill(self, rows, side, signal_day, day: int, prices, factors) -> None:
        """``SignalBook._fill``: the strategy's orders of ``rows``, bought or sold at ``prices``."""
        buying = side == _BUY
        signal_day = np.broadcast_to(signal_day, rows.shape)
        if buying.any():
            self._buy("strategy", rows[buying], signal_day[buying], day, prices[buying], factors[buying])
        if (~buying).any():
            self._sell(rows[~buying], signal_day[~buying], day, prices[~buying], factors[~buying])

    def _fee(self, value: np.ndarray) -> np.ndarray:
        return np.maximum(self.settings.commission * value, self.settings.min_commission)

    def _buy(self, sleeve: str, rows, signal_day, day: int, prices, factors) -> None:
        """``Book.buy``: the whole lots the cash pays for, the commission included."""
        s = self.settings
        cash = self.get(f"{sleeve}_cash", rows)
        paid = prices * (1 + s.slippage_bps / 10_000)
        lots = (cash // (paid * s.lot * (1 + s.commission))).astype(np.int64) + 1
        while True:
            value = lots * s.lot * paid
            too_many = (lots > 0) & (value + self._fee(value) > cash)
            if not too_many.any():
                break
            lots[too_many] -= 1
        bought = lots > 0  # without one affordable lot the cash stays idle
        rows, paid, lots, cash = rows[bought], paid[bought], lots[bought], cash[bought]
        shares = lots * s.lot
        fee = self._fee(shares * paid)
        self.set(f"{sleeve}_cash", rows, cash - (shares * paid + fee))
        self.set(f"{sleeve}_fees", rows, self.get(f"{sleeve}_fees", rows) + fee)
        self.set(f"{sleeve}_shares", rows, shares)
        self.set(f"{sleeve}_signal_day", rows, np.broadcast_to(signal_day, bought.shape)[bought])
        self.set(f"{sleeve}_entry_day", rows, day)
        self.set(f"{sleeve}_entry_price", rows, paid)
        self.set(f"{sleeve}_entry_factor", rows, factors[bought])
        self.set(f"{sleeve}_entry_fee", rows, fee)

    def _sell(self, rows, signal_day, day: int, prices, factors) -> None:
        """``Book.sell`` of the strategy's position, and ``SignalBook``'s count of closed trades and wins."""
        s, p = self.settings, "strategy_"
        received = prices * (1 - s.slippage_bps / 10_000)
        shares, entry_factor = self.get(p + "shares", rows), self.get(p + "entry_factor", rows)
        proceeds = shares * (factors / entry_factor) * received
        fee = self._fee(proceeds)
        self.set(p + "cash", rows, self.get(p + "cash", rows) + (proceeds - fee))
        self.set(p + "fees", rows, self.get(p + "fees", rows) + fee)
        entries = zip(
            rows.tolist(),
            self.get(p + "signal_day", rows).tolist(),
            self.get(p + "entry_day", rows).tolist(),
            self.get(p + "entry_price", rows).tolist(),
            shares.tolist(),
            entry_factor.tolist(),
            self.get(p + "entry_fee", rows).tolist(),
            np.broadcast_to(signal_day, rows.shape).tolist(),
            received.tolist(),
            proceeds.tolist(),
            fee.tolist(),
            strict=True,
        )
        wins = []
        for (
            row,
            entry_signal,
            entry_day,
            price,
            n,
            factor,
            entry_fee,
            exit_signal,
            exit_price,
            got,
            exit_fee,
        ) in entries:
            trade = Trade(int(entry_signal), int(entry_day), price, int(n), factor, entry_fee)
            trade.exit_signal_day, trade.exit_day, trade.exit_price = int(exit_signal), day, exit_price
            trade.proceeds, trade.exit_fee = got, exit_fee
            self.closed.setdefault(row, []).append(trade)
            wins.append(trade.net_return() > 0)
        self.set("closed", rows, self.get("closed", rows) + 1)
        self.set("wins", rows, self.get("wins", rows) + np.array(wins))
        self.set(p + "shares", rows, 0)
        for field in ("signal_day", "entry_day", "entry_price", "entry_factor", "entry_fee"):
            self.set(p + field, rows, np.nan)

    def _mark(self, sleeve: str, day: int, at: np.ndarray, closes, factors) -> None:
        """``Stats.add`` of the sleeve's equity at the close (``Book.equity``)."""
        p = f"{sleeve}_"
        cash, shares = self.get(p + "cash", at), self.get(p + "shares", at)
        with np.errstate(invalid="ignore"):
            position = shares * (factors / self.get(p + "entry_factor", at)) * closes
        value = cash + np.where(shares > 0, position, 0.0)
        previous, count = self.get(p + "previous", at), self.get(p + "count", at) + 1
        mean, m2 = self.get(p + "mean", at), self.get(p + "m2", at)
        r = value / previous - 1
        delta = r - mean
        mean = mean + delta / count
        m2 = m2 + delta * (r - mean)
        peak, peak_day = self.get(p + "peak", at), self.get(p + "peak_day", at)
        higher = value > peak
        peak, peak_day = np.where(higher, value, peak), np.where(higher, day, peak_day)
        drawdown = value / peak - 1
        deeper = drawdown < self.get(p + "worst", at)
        for field, values in (
            ("previous", value),
            ("count", count),
            ("mean", mean),
            ("m2", m2),
            ("peak", peak),
            ("peak_day", peak_day),
        ):
            self.set(p + field, at, values)
        self.set(p + "worst", at[deeper], drawdown[deeper])
        self.set(p + "worst_peak_day", at[deeper], peak_day[deeper])
        self.set(p + "worst_trough_day", at[deeper], day)


def carry(
    state: BacktestState, bars: DayBars, days: list[dt.date], held_back: set[dt.date] = frozenset()
) -> CarriedRun:
    """``carry_fund_by_fund``, every fund of a day at once: ``state`` stepped through ``days`` (consecutive
    trading days after the state's); a day in ``held_back`` is not traded, its stored state the day before's."""
    record = np.array(state.record(), dtype=float).reshape(1 + len(state.funds), len(STATE_FIELDS))
    funds = _Funds(record[1:].copy(), state.settings)
    table = np.empty((len(days), len(record), len(STATE_FIELDS)))
    portfolio_row = record[0]
    traded = []
    for i, day in enumerate(days):
        todays = bars.on(day_number(day)) if day not in held_back else slice(0, 0)
        if todays.stop > todays.start:
            number = day_number(day)
            funds.step(
                number,
                bars.funds[todays],
                bars.opens[todays],
                bars.closes[todays],
                bars.factors[todays],
                bars.signals[todays],
            )
            state.portfolio.step(
                number,
                universe_total(funds.column("strategy_previous")),
                universe_total(funds.column("buy_and_hold_previous")),
            )
            portfolio_row = state.portfolio.record()
            traded.append(day)
        table[i, 0] = portfolio_row
        table[i, 1:] = funds.rows
    state.funds = [
        FundState.from_record(dict(zip(STATE_FIELDS, row, strict=True)), state.settings) for row in funds.rows.tolist()
    ]
    frame = state_frame(table.reshape(-1, len(STATE_FIELDS)), state, days)
    closed = {code: funds.closed.get(i, []) for i, code in enumerate(state.codes)}
    return CarriedRun(state, frame, closed, list(days), traded)


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
