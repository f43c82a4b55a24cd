"""How the lab simulates every pair of a fund at once.

How it is fast (``tests/test_lab.py`` holds it to ``follow_signals`` pair by pair): a fund's pairs are
simulated together, as rows of arrays. Which signals open and close a trade is decided for all rows at
once (a BUY opens one unless the signal in force is a BUY; a SELL closes one only then); the cash is then
carried trade by trade (the k-th trade of every row in one step of whole-column arithmetic, in the
engine's order of operations, so the figures are the engine's to the last bit); the equity is built
from the fills in one pass. A row whose cash cannot buy one lot (the one case where a BUY does not open a
trade) is handed to ``follow_signals`` itself.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import talib

from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.signals.averages import bar_sums, rounded_averages
from alchemy_pipeline.domain.signals.rule import State

# The figures each pair gets per part of the period: the backtest's names, less the drawdown's dates.
EQUITY_METRICS = ["total_return", "cagr", "max_drawdown", "volatility", "sharpe", "calmar"]
TRADE_METRICS = ["trades", "win_rate", "exposure", "fees"]
PAIR_METRICS = [*EQUITY_METRICS, *TRADE_METRICS]


@dataclass(frozen=True)
class FundHistory:
    """One fund's bars from its first to the period's end (close and factor positive), in day order."""

    ts_code: str
    name: str
    days: np.ndarray  # datetime64[D]
    opens: np.ndarray
    closes: np.ndarray
    factors: np.ndarray


def fund_histories(prices: pd.DataFrame, universe: pd.DataFrame, end: dt.date) -> list[FundHistory]:
    """Each fund of ``universe`` (in its order) with its bars up to ``end``; a fund without any, empty."""
    bars = prices[
        (prices["trade_date"] <= pd.Timestamp(end)) & (prices["close"] > 0) & (prices["adj_factor"] > 0)
    ].sort_values(["ts_code", "trade_date"], kind="stable")
    groups = {code: rows for code, rows in bars.groupby("ts_code", sort=False, observed=True)}
    empty = np.array([], dtype="datetime64[D]")
    histories = []
    for code, name in zip(universe["ts_code"], universe["name"], strict=True):
        rows = groups.get(code)
        if rows is None:
            histories.append(FundHistory(code, name, empty, np.array([]), np.array([]), np.array([])))
            continue
        histories.append(
            FundHistory(
                code,
                name,
                rows["trade_date"].to_numpy("datetime64[D]"),
                rows["open"].to_numpy(float),
                rows["close"].to_numpy(float),
                rows["adj_factor"].to_numpy(float),
            )
        )
    return histories


def pair_signals(closes: np.ndarray, factors: np.ndarray, pairs: np.ndarray, rounded: bool = True) -> np.ndarray:
    """Per pair (row) and bar (column): 1 a BUY, -1 a SELL, 0 neither, by the production rule: on bar t the
    averages of t and of the bar before, forward-adjusted to t's factor, exactly and rounded to thousandths as
    the rule computes them (``signals.averages``); not ``rounded``, TA-Lib's floating-point averages, for
    comparing with tools that do not round."""
    signals = np.zeros((len(pairs), len(closes)), dtype=np.int8)
    if len(closes) < 2:
        return signals
    today, yesterday = {}, {}
    for n in np.unique(pairs).tolist():
        if rounded:
            sums = bar_sums(closes, factors, n)
            # Bar t's window is adjusted to t's factor: its average, and the one of the bar before, over it.
            today[n] = rounded_averages(sums, n, factors)
            yesterday[n] = rounded_averages(np.r_[0, sums[:-1]], n, factors)
            today[n][: n - 1], yesterday[n][:n] = np.nan, np.nan
        else:
            scaled = closes * factors
            average = talib.SMA(scaled, n) if len(scaled) >= n else np.full(len(scaled), np.nan)
            today[n], yesterday[n] = average / factors, np.r_[np.nan, average[:-1]] / factors
    for short in np.unique(pairs[:, 0]).tolist():
        rows = np.flatnonzero(pairs[:, 0] == short)
        longs = pairs[rows, 1].tolist()
        now_long, then_long = np.stack([today[n] for n in longs]), np.stack([yesterday[n] for n in longs])
        now_short, then_short = today[short][None, :], yesterday[short][None, :]
        settled = ~np.isnan(then_short) & ~np.isnan(then_long)  # a cross needs both averages the bar before
        signals[rows] += (now_short > now_long) & ~(then_short > then_long) & settled
        signals[rows] -= (now_short < now_long) & ~(then_short < then_long) & settled
    return signals


@dataclass
class PairRuns:
    """The strategy's sleeve of every pair (rows) over one fund's bars (columns), and its trades: the k-th
    trade of each row in column k, with a bar number past the last bar where there is none (or its exit
    has not filled)."""

    equity: np.ndarray
    entry_bar: np.ndarray
    exit_bar: np.ndarray
    entry_fee: np.ndarray
    exit_fee: np.ndarray
    won: np.ndarray  # a closed trade that gained, net of fees


def _trade_fills(signals: np.ndarray, delay: int) -> tuple[np.ndarray, np.ndarray]:
    """The bars where each row's trades fill, ``delay`` bars after their signals (a bar number past the last
    where none does): the entries and the exits, (rows, trades) each. A BUY opens a trade unless the signal in
    force (the row's latest BUY or SELL before it) is a BUY; a SELL closes one only when it is, so a row's
    openings and closings alternate, an opening first."""
    pairs, bars = signals.shape
    rows, cols = np.nonzero(signals)  # in row order, each row's in bar order
    kinds = signals[rows, cols]
    in_force = np.zeros_like(kinds)
    in_force[1:] = kinds[:-1]
    in_force[np.r_[True, rows[1:] != rows[:-1]] if len(rows) else []] = 0
    keep = ((kinds == 1) & (in_force != 1)) | ((kinds == -1) & (in_force == 1))
    rows, cols = rows[keep], np.minimum(cols[keep] + delay, bars)
    per_row = np.bincount(rows, minlength=pairs)
    nth = np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row)  # 0, 1, 2... in each row
    trades = (int(per_row.max()) + 1) // 2 if len(rows) else 0
    fills = np.full((pairs, 2 * max(trades, 1)), bars, dtype=np.int64)
    fills[rows, nth] = cols
    return fills[:, 0::2], fills[:, 1::2]


def simulate_pairs(
    signals: np.ndarray, opens: np.ndarray, closes: np.ndarray, factors: np.ndarray, settings: bt.BacktestSettings
) -> PairRuns:
    """What ``backtest.follow_signals`` gives for each row of ``signals`` on these bars."""
    pairs, bars = signals.shape
    delay, price = (1, opens) if settings.execution == bt.NEXT_OPEN else (0, closes)
    entry_bar, exit_bar = _trade_fills(signals, delay)
    trades = entry_bar.shape[1]

    s = settings
    cash = np.full(pairs, s.cash, dtype=float)
    shares, entry_factor = np.zeros((pairs, trades)), np.ones((pairs, trades))
    entry_fee, exit_fee = np.zeros((pairs, trades)), np.zeros((pairs, trades))
    cash_in, cash_out = np.zeros((pairs, trades)), np.zeros((pairs, trades))
    won = np.zeros((pairs, trades), dtype=bool)
    unaffordable = np.zeros(pairs, dtype=bool)
    for k in range(trades):
        rows = np.flatnonzero(entry_bar[:, k] < bars)
        at = entry_bar[rows, k]
        paid = price[at] * (1 + s.slippage_bps / 10_000)
        funds = cash[rows]
        lots = (funds // (paid * s.lot * (1 + s.commission))).astype(np.int64) + 1
        while True:  # the engine's search for the most whole lots the cash pays for, fee included
            value = lots * s.lot * paid
            over = (lots > 0) & (value + np.maximum(s.commission * value, s.min_commission) > funds)
            if not over.any():
                break
            lots -= over
        unaffordable[rows[lots == 0]] = True
        held = (lots * s.lot).astype(float)
        value = held * paid
        fee = np.maximum(s.commission * value, s.min_commission)
        funds = funds - (value + fee)
        shares[rows, k], entry_factor[rows, k], entry_fee[rows, k], cash_in[rows, k] = held, factors[at], fee, funds
        cash[rows] = funds
        out = exit_bar[rows, k] < bars
        rows, at, funds, held, cost = rows[out], exit_bar[rows[out], k], funds[out], held[out], (value + fee)[out]
        received = price[at] * (1 - s.slippage_bps / 10_000)
        proceeds = held * (factors[at] / entry_factor[rows, k]) * received
        fee = np.maximum(s.commission * proceeds, s.min_commission)
        funds = funds + (proceeds - fee)
        exit_fee[rows, k], cash_out[rows, k], cash[rows] = fee, funds, funds
        won[rows, k] = (proceeds - fee) / cost - 1 > 0

    # Each bar's cash and position are those after the row's latest fill up to it (the start's before the
    # first): state j of a row runs from its j-th fill to the next, each state repeated over its bars.
    fill_bars = np.stack([entry_bar, exit_bar], axis=2).reshape(pairs, -1)
    spans = np.diff(fill_bars, axis=1, prepend=0, append=bars).ravel()

    def per_bar(start: float, after_entry: np.ndarray, after_exit: np.ndarray) -> np.ndarray:
        states = np.column_stack(
            [np.full(pairs, start), np.stack([after_entry, after_exit], axis=2).reshape(pairs, -1)]
        )
        return np.repeat(states.ravel(), spans).reshape(pairs, bars)

    # shares x (factor / entry factor) x close, as the engine values a position; in place, as a fund's
    # pairs x bars arrays are large.
    position = np.divide(factors, per_bar(1.0, entry_factor, entry_factor))
    position = np.multiply(per_bar(0.0, shares, np.zeros_like(shares)), position, out=position)
    position *= closes
    equity = per_bar(s.cash, cash_in, cash_out)
    equity += position
    del position
    runs = PairRuns(equity, entry_bar, exit_bar, entry_fee, exit_fee, won)
    if unaffordable.any():
        _run_in_engine(runs, np.flatnonzero(unaffordable), signals, opens, closes, factors, settings)
    return runs


def _run_in_engine(
    runs: PairRuns,
    rows: np.ndarray,
    signals: np.ndarray,
    opens: np.ndarray,
    closes: np.ndarray,
    factors: np.ndarray,
    settings: bt.BacktestSettings,
) -> None:
    """Replaces ``rows`` of ``runs`` with ``follow_signals``'s sleeves. The engine takes any ordered labels
    for days: bar numbers, so that its trades' days are the fill bars."""
    bars = signals.shape[1]
    names = {1: State.BUY, -1: State.SELL, 0: State.HOLD}
    sleeves = {}
    for row in rows.tolist():
        states = [names[x] for x in signals[row].tolist()]
        sleeves[row] = bt.follow_signals(bt.FundBars(list(range(bars)), opens, closes, factors, states), settings)
    width = max(len(sleeve.trades) for sleeve in sleeves.values())
    if width > runs.entry_bar.shape[1]:
        grow = ((0, 0), (0, width - runs.entry_bar.shape[1]))
        runs.entry_bar, runs.exit_bar = (np.pad(a, grow, constant_values=bars) for a in (runs.entry_bar, runs.exit_bar))
        runs.entry_fee, runs.exit_fee, runs.won = (np.pad(a, grow) for a in (runs.entry_fee, runs.exit_fee, runs.won))
    for row, sleeve in sleeves.items():
        runs.equity[row] = sleeve.equity
        runs.entry_bar[row], runs.exit_bar[row], runs.entry_fee[row], runs.exit_fee[row] = bars, bars, 0, 0
        runs.won[row] = False
        for k, trade in enumerate(sleeve.trades):
            runs.entry_bar[row, k], runs.entry_fee[row, k] = trade.entry_day, trade.entry_fee
            if trade.exit_day is not None:
                runs.exit_bar[row, k], runs.exit_fee[row, k] = trade.exit_day, trade.exit_fee
                runs.won[row, k] = trade.net_return() > 0


def equity_stats(equity: np.ndarray, start_value: float, points: list[int]) -> list[dict[str, np.ndarray]]:
    """``backtest.running_stats`` of each row as of each of ``points`` (a number of the row's first points):
    total return, max drawdown, annualised volatility and Sharpe ratio (the sample standard deviation in two
    passes rather than Welford's running form: the same to about 1e-15)."""
    rows = len(equity)
    previous = np.empty_like(equity)
    previous[:, 0], previous[:, 1:] = start_value, equity[:, :-1]
    returns = np.divide(equity, previous, out=previous)
    returns -= 1
    drawdown = equity / np.maximum(np.maximum.accumulate(equity, axis=1), start_value)
    annual = math.sqrt(bt.TRADING_DAYS_PER_YEAR)
    stats = []
    for n in points:
        if n > 1:
            sd = returns[:, :n].std(axis=1, ddof=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                sharpe = np.where(sd > 0, returns[:, :n].mean(axis=1) / sd * annual, np.nan)
        else:
            sd, sharpe = np.full(rows, np.nan), np.full(rows, np.nan)
        stats.append(
            {
                "total_return": equity[:, n - 1] / start_value - 1,
                "max_drawdown": np.minimum(drawdown[:, :n].min(axis=1) - 1, 0.0),
                "volatility": sd * annual,
                "sharpe": sharpe,
            }
        )
    return stats


def _growth(total_return: np.ndarray, first_day: dt.date, as_of: dt.date) -> np.ndarray:
    """The CAGR of each row, by the backtest's own function."""
    return bt.cagr_of(total_return, np.full(len(total_return), (as_of - first_day).days))


@dataclass
class TradeCounts:
    """Per pair, as of a bar: trades closed and won, trades open, bars in the market and fees paid."""

    closed: np.ndarray
    wins: np.ndarray
    open: np.ndarray
    bars: np.ndarray
    held: np.ndarray
    fees: np.ndarray

    @classmethod
    def of(cls, runs: PairRuns, bar: int) -> TradeCounts:
        entered, closed = runs.entry_bar <= bar, runs.exit_bar <= bar
        return cls(
            closed=closed.sum(axis=1),
            wins=(runs.won & closed).sum(axis=1),
            open=entered.sum(axis=1) - closed.sum(axis=1),
            bars=np.full(len(runs.equity), bar + 1),
            # A trade is in the market at the closes of its entry's bar to the one before its exit's.
            held=(np.minimum(runs.exit_bar, bar + 1) - np.minimum(runs.entry_bar, bar + 1)).sum(axis=1),
            fees=(runs.entry_fee * entered).sum(axis=1) + (runs.exit_fee * closed).sum(axis=1),
        )

    def __add__(self, other: TradeCounts) -> TradeCounts:
        return TradeCounts(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


def period_metrics(
    stats: dict[str, np.ndarray], first_day: dt.date, as_of: dt.date, counts: TradeCounts | None
) -> dict[str, np.ndarray]:
    """The figures of each row as of ``as_of`` from its equity's ``stats`` (and of its trades, when ``counts``
    is given), named as the backtest names them."""
    growth = _growth(stats["total_return"], first_day, as_of)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = {
            **stats,
            "cagr": growth,
            "calmar": np.where(stats["max_drawdown"] < 0, growth / -stats["max_drawdown"], np.nan),
        }
        if counts is not None:
            result.update(
                trades=(counts.closed + counts.open).astype(float),
                win_rate=np.where(counts.closed > 0, counts.wins / counts.closed, np.nan),
                exposure=counts.held / counts.bars,
                fees=counts.fees,
            )
    return result
