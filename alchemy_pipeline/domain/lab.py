"""The parameter lab: the backtest of every pair of average lengths on a grid, in and out of sample.

A pair's signals are the production rule's (``strategy.fund_signal``): on each bar, TA-Lib's simple
averages of the close forward-adjusted to that bar's factor, rounded to 3 decimals, a BUY where the short
average is above the long one and was not on the bar before (both defined there), a SELL the other way
round. One difference: the averages are summed over the fund's whole history, not each day's 300-day
window. The sums then differ in their last bit, which matters only for an average exactly halfway
between two thousandths (common: prices have three decimals), rounded one way here and the other there.
``tests/test_real_data.py`` checks on the real data that this is the only reason any trade of the
(11, 22) cell differs from the production backtest's; docs/lab.md lists those trades.

Each pair is traded by the backtest's model (``backtest.follow_signals``: same fills, lots, costs and
marks), three times over: the whole period; its in-sample part (the first ``in_sample`` share of its
trading days: the whole run's figures as of the part's last day, which read nothing after it); and the
out-of-sample rest, as a backtest of its own that starts on the split day with fresh cash (a regime
running then is not entered, as at the backtest's start).

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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import talib

from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.numbers import python_round
from alchemy_pipeline.domain.strategy import AVERAGE_DECIMALS
from alchemy_pipeline.domain.workers import WORKER_PROCESSES, map_in_processes

# The figures each pair gets per part of the period: the backtest's names, less the drawdown's dates.
EQUITY_METRICS = ["total_return", "cagr", "max_drawdown", "volatility", "sharpe", "calmar"]
TRADE_METRICS = ["trades", "win_rate", "exposure", "fees"]
PAIR_METRICS = [*EQUITY_METRICS, *TRADE_METRICS]
PERIODS = ("full", "in_sample", "out_of_sample")
# Robustness: the production pair's neighbours reach this far in each length, and count as alike when
# their out-of-sample Sharpe ratios are this close to its own.
NEIGHBOUR_REACH = 2
SHARPE_TOLERANCE = 0.2
DEFAULT_IN_SAMPLE = 0.7


class GridError(ValueError):
    """A grid or period that cannot be swept; raised before any work, naming the problem."""


@dataclass(frozen=True)
class Grid:
    """Every (short, long) with short in short_from..short_to, long in long_from..long_to (both by ``step``)
    and short < long."""

    short_from: int = 3
    short_to: int = 30
    long_from: int = 10
    long_to: int = 120
    step: int = 1

    def __post_init__(self):
        if self.step < 1:
            raise GridError(f"step={self.step}: the grid's step must be 1 or more")
        for name in ("short_from", "short_to", "long_from", "long_to"):
            if getattr(self, name) < 2:
                raise GridError(f"{name}={getattr(self, name)}: an average needs a length of 2 or more")
        for low, high in (("short_from", "short_to"), ("long_from", "long_to")):
            if getattr(self, low) > getattr(self, high):
                raise GridError(f"{low}={getattr(self, low)} is after {high}={getattr(self, high)}: no lengths")
        if not len(self.pairs()):
            raise GridError(
                f"no pair has short < long: the shorts run {self.short_from}..{self.short_to} and the longs "
                f"{self.long_from}..{self.long_to}"
            )

    def shorts(self) -> list[int]:
        return list(range(self.short_from, self.short_to + 1, self.step))

    def longs(self) -> list[int]:
        return list(range(self.long_from, self.long_to + 1, self.step))

    def pairs(self) -> np.ndarray:
        """The pairs, by short then long: an array of shape (pairs, 2)."""
        return np.array([(s, long) for s in self.shorts() for long in self.longs() if s < long], dtype=int).reshape(
            -1, 2
        )

    def longest(self) -> int:
        return int(self.pairs()[:, 1].max())

    def check_history(self, bars: int, end: dt.date) -> None:
        """Refuses lengths no fund can fill: ``bars`` is the longest history any fund has up to ``end``."""
        if self.longest() >= bars:
            raise GridError(
                f"long={self.longest()} is longer than the history: the fund with the most bars has {bars} up to "
                f"{end}, and a cross needs {self.longest() + 1}; lower long_to"
            )

    def as_json(self) -> dict:
        return {
            "short_from": self.short_from,
            "short_to": self.short_to,
            "long_from": self.long_from,
            "long_to": self.long_to,
            "step": self.step,
            "pairs": len(self.pairs()),
        }


def check_in_sample(in_sample: float) -> None:
    if not 0 < in_sample < 1:
        raise GridError(f"in_sample={in_sample}: the in-sample share must be between 0 and 1")


def split_index(days: int, in_sample: float) -> int:
    """The number of the period's trading days that are in sample."""
    check_in_sample(in_sample)
    k = math.floor(days * in_sample)
    if k < 2 or days - k < 2:
        raise GridError(
            f"the period has {days} trading days: an in-sample share of {in_sample} leaves {k} in sample and "
            f"{days - k} out of sample, and each part needs 2 or more"
        )
    return k


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


def pair_signals(
    closes: np.ndarray, factors: np.ndarray, pairs: np.ndarray, decimals: int | None = AVERAGE_DECIMALS
) -> np.ndarray:
    """Per pair (row) and bar (column): 1 a BUY, -1 a SELL, 0 neither, by the production rule: on bar t the
    averages of t and of the bar before, forward-adjusted to t's factor and rounded to ``decimals`` (None: not
    rounded, for comparing with tools that do not round)."""
    scaled = closes * factors
    signals = np.zeros((len(pairs), len(scaled)), dtype=np.int8)
    if len(scaled) < 2:
        return signals
    today, yesterday = {}, {}
    for n in np.unique(pairs).tolist():
        average = talib.SMA(scaled, n) if len(scaled) >= n else np.full(len(scaled), np.nan)
        # Bar t's window is adjusted to t's factor: its average, and the one of the bar before, over it.
        today[n], yesterday[n] = average / factors, np.r_[np.nan, average[:-1]] / factors
        if decimals is not None:
            today[n], yesterday[n] = np.round(today[n], decimals), np.round(yesterday[n], decimals)
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
    names = {1: bt.State.BUY, -1: bt.State.SELL, 0: bt.State.HOLD}
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


def figures(
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


@dataclass(frozen=True)
class SweepPeriod:
    """The period's trading days (any fund's bar) and where its out-of-sample part starts."""

    days: np.ndarray  # datetime64[D]
    split: int  # the first out-of-sample day's index

    @property
    def start(self) -> dt.date:
        return self.days[0].item()

    @property
    def end(self) -> dt.date:
        return self.days[-1].item()

    @property
    def split_day(self) -> dt.date:
        return self.days[self.split].item()

    @property
    def last_in_sample(self) -> dt.date:
        return self.days[self.split - 1].item()


def sweep_period(histories: list[FundHistory], start: dt.date, end: dt.date, in_sample: float) -> SweepPeriod:
    if end < start:
        raise GridError(f"the period ends on {end}, before it starts on {start}")
    first, last = np.datetime64(start, "D"), np.datetime64(end, "D")
    days = np.unique(np.concatenate([h.days[(h.days >= first) & (h.days <= last)] for h in histories] or [[]]))
    if not len(days):
        raise GridError(f"no fund has a bar from {start} to {end}")
    return SweepPeriod(days.astype("datetime64[D]"), split_index(len(days), in_sample))


@dataclass
class _Sums:
    """What a group of funds adds to the portfolio: equity on the period's days (and on its out-of-sample
    days), per pair and for buy-and-hold, and the trade counts."""

    equity: np.ndarray
    oos_equity: np.ndarray
    hold: np.ndarray
    oos_hold: np.ndarray
    counts: dict[str, TradeCounts | None] = field(default_factory=dict)

    def add_counts(self, period: str, counts: TradeCounts) -> None:
        self.counts[period] = counts if self.counts.get(period) is None else self.counts[period] + counts

    def add(self, other: _Sums) -> None:
        self.equity += other.equity
        self.oos_equity += other.oos_equity
        self.hold += other.hold
        self.oos_hold += other.oos_hold
        for period, counts in other.counts.items():
            self.add_counts(period, counts)


def _on_days(equity: np.ndarray | None, fund_days: np.ndarray, days: np.ndarray, cash: float):
    """Each row's equity on ``days``: at the fund's last bar on or before the day, its cash before its first
    (and on every day without ``equity``, a fund without bars)."""
    if equity is None:
        return cash
    if np.array_equal(fund_days, days):  # a fund with a bar on every day, as most are
        return equity
    last = np.searchsorted(fund_days, days, "right") - 1
    return np.where(last >= 0, equity[:, np.maximum(last, 0)], cash)


def _hold_equity(days: np.ndarray, opens, closes, factors, settings: bt.BacktestSettings) -> np.ndarray:
    bars = bt.FundBars(days.tolist(), opens, closes, factors, [])
    return bt.buy_and_hold(bars, settings).equity[None, :]


def sweep_funds(
    histories: list[FundHistory], pairs: np.ndarray, settings: bt.BacktestSettings, period: SweepPeriod
) -> tuple[list[dict], list[dict], _Sums]:
    """For each of ``histories``, every pair's figures (a dict of columns) and buy-and-hold's; and what the
    funds add to the portfolio."""
    days, oos_days = period.days, period.days[period.split :]
    n_pairs, cash = len(pairs), settings.cash
    sums = _Sums(np.zeros((n_pairs, len(days))), np.zeros((n_pairs, len(oos_days))), np.zeros((1, len(days))),
                 np.zeros((1, len(oos_days))))  # fmt: skip
    tables, holds = [], []
    for h in histories:
        signals = pair_signals(h.closes, h.factors, pairs)
        at = np.flatnonzero((h.days >= days[0]) & (h.days <= days[-1]) & (h.opens > 0))
        fund_days, opens, closes, factors, signals = (
            h.days[at],
            h.opens[at],
            h.closes[at],
            h.factors[at],
            signals[:, at],
        )
        split = int(np.searchsorted(fund_days, days[period.split]))
        # Per part of the period: its sleeves' stats, its trade counts and its first bar's day.
        parts, runs = {}, {}
        for run_name, first, ends in (("full", 0, {"in_sample": split, "full": len(fund_days)}),
                                      ("out_of_sample", split, {"out_of_sample": len(fund_days) - split})):  # fmt: skip
            ends = {name: n for name, n in ends.items() if n > 0}
            if not ends:
                continue
            bars = slice(first, None)
            run = simulate_pairs(signals[:, bars], opens[bars], closes[bars], factors[bars], settings)
            hold = _hold_equity(fund_days[bars], opens[bars], closes[bars], factors[bars], settings)
            runs[run_name] = (run.equity, hold)
            for (name, n), stats, hold_stats in zip(
                ends.items(),
                equity_stats(run.equity, cash, list(ends.values())),
                equity_stats(hold, cash, list(ends.values())),
                strict=True,
            ):
                # A year's rate is measured from the fund's first bar of the part to its last, as the backtest's.
                span = (fund_days[first].item(), fund_days[first + n - 1].item())
                parts[name] = (stats, hold_stats, TradeCounts.of(run, n - 1), span)
        table = {"ts_code": h.ts_code, "name": h.name, "short": pairs[:, 0], "long": pairs[:, 1]}
        hold_row = {"ts_code": h.ts_code, "name": h.name}
        for name in PERIODS:
            if name not in parts:
                table.update({f"{name}_{m}": np.full(n_pairs, np.nan) for m in PAIR_METRICS})
                hold_row.update({f"{name}_{m}": np.nan for m in EQUITY_METRICS})
                continue
            stats, hold_stats, counts, (first_day, last_day) = parts[name]
            got = figures(stats, first_day, last_day, counts)
            table.update({f"{name}_{m}": got[m] for m in PAIR_METRICS})
            held = figures(hold_stats, first_day, last_day, None)
            hold_row.update({f"{name}_{m}": float(held[m][0]) for m in EQUITY_METRICS})
            sums.add_counts(name, counts)
        tables.append(table)
        holds.append(hold_row)
        for run_name, fund_part, total, hold_total, on in (
            ("full", fund_days, sums.equity, sums.hold, days),
            ("out_of_sample", fund_days[split:], sums.oos_equity, sums.oos_hold, oos_days),
        ):
            equity, hold = runs.get(run_name, (None, None))
            total += _on_days(equity, fund_part, on, cash)
            hold_total += _on_days(hold, fund_part, on, cash)
    return tables, holds, sums


# Pair-bars (pairs x bars of the period x funds) below which worker processes cost more than they save.
MIN_CELLS_FOR_WORKERS = 20_000_000


@dataclass
class Sweep:
    """Every pair's figures for the portfolio and each fund, in and out of sample."""

    grid: Grid
    period: SweepPeriod
    settings: bt.BacktestSettings
    in_sample: float
    production: tuple[int, int]
    table: pd.DataFrame  # the portfolio's pairs (ts_code PORTFOLIO), then each fund's, in universe order
    buy_and_hold: pd.DataFrame  # one row each, in the same order

    def rows(self, ts_code: str) -> pd.DataFrame:
        return self.table[self.table["ts_code"] == ts_code]


def run_sweep(
    prices: pd.DataFrame,
    universe: pd.DataFrame,
    grid: Grid,
    settings: bt.BacktestSettings,
    end: dt.date,
    in_sample: float = DEFAULT_IN_SAMPLE,
    production: tuple[int, int] = (11, 22),
) -> Sweep:
    """The sweep of ``grid`` over ``settings.start`` to ``end``. ``prices`` holds every fund's bars (ts_code,
    trade_date, open, close, adj_factor) from its first to ``end``, or from early enough before the start
    for the longest average."""
    histories = fund_histories(prices, universe, end)
    grid.check_history(max(len(h.days) for h in histories), end)
    period = sweep_period(histories, settings.start, end, in_sample)
    pairs = grid.pairs()
    cells = len(pairs) * sum(int(((h.days >= period.days[0]) & (h.days <= period.days[-1])).sum()) for h in histories)
    if WORKER_PROCESSES > 1 and cells >= MIN_CELLS_FOR_WORKERS and len(histories) > 1:
        # Funds dealt round-robin, so each group holds long and short histories alike.
        groups = [histories[i :: 2 * WORKER_PROCESSES] for i in range(2 * WORKER_PROCESSES)]
        done = map_in_processes(sweep_funds, [g for g in groups if g], pairs, settings, period)
    else:
        done = iter([sweep_funds(histories, pairs, settings, period)])
    tables, holds, sums = next(done)
    for more_tables, more_holds, more in done:  # added as they come: each group's sums are large
        tables += more_tables
        holds += more_holds
        sums.add(more)
    tables = {t["ts_code"]: t for t in tables}
    holds = {h["ts_code"]: h for h in holds}
    start_value = settings.cash * len(histories)
    portfolio = {"ts_code": bt.PORTFOLIO, "name": bt.PORTFOLIO_NAME, "short": pairs[:, 0], "long": pairs[:, 1]}
    portfolio_hold = {"ts_code": bt.PORTFOLIO, "name": bt.PORTFOLIO_NAME}
    split = period.split
    whole, in_sample_part = equity_stats(sums.equity, start_value, [len(period.days), split])
    hold_whole, hold_in_sample = equity_stats(sums.hold, start_value, [len(period.days), split])
    parts = {
        "full": (whole, hold_whole, period.start, period.end),
        "in_sample": (in_sample_part, hold_in_sample, period.start, period.last_in_sample),
        "out_of_sample": (
            *(equity_stats(e, start_value, [e.shape[1]])[0] for e in (sums.oos_equity, sums.oos_hold)),
            period.split_day,
            period.end,
        ),
    }
    for name, (stats, hold_stats, first, as_of) in parts.items():
        got = figures(stats, first, as_of, sums.counts[name])
        portfolio.update({f"{name}_{m}": got[m] for m in PAIR_METRICS})
        held = figures(hold_stats, first, as_of, None)
        portfolio_hold.update({f"{name}_{m}": float(held[m][0]) for m in EQUITY_METRICS})
    entries = [portfolio, *(tables[h.ts_code] for h in histories)]
    table = pd.concat([pd.DataFrame(t) for t in entries], ignore_index=True)
    hold_table = pd.DataFrame([portfolio_hold, *(holds[h.ts_code] for h in histories)])
    return Sweep(grid, period, settings, in_sample, production, table, hold_table)


def _pair(row: pd.Series, *columns: str) -> dict:
    return {"short": int(row["short"]), "long": int(row["long"]), **{c: _json_number(row[c]) for c in columns}}


def standing(rows: pd.DataFrame, production: tuple[int, int]) -> dict:
    """Where the production pair ranks by Sharpe ratio in and out of sample (1 the best; pairs without a
    Sharpe ratio are not ranked), how the best pair in sample did out of sample (it held up when it ranks in
    the top half there), and the robustness figure: the share of the production pair's neighbours (each
    length within ``NEIGHBOUR_REACH``; on the grid, short < long) whose out-of-sample Sharpe ratio is within
    ``SHARPE_TOLERANCE`` of its own (a neighbour without one is not alike)."""
    in_rank = rows["in_sample_sharpe"].rank(ascending=False, method="min")
    out_rank = rows["out_of_sample_sharpe"].rank(ascending=False, method="min")
    ranked = {"in_sample": int(in_rank.notna().sum()), "out_of_sample": int(out_rank.notna().sum())}
    is_production = (rows["short"] == production[0]) & (rows["long"] == production[1])
    result: dict = {"ranked": ranked, "production": None, "best_in_sample": None, "robustness": None}
    if is_production.any():
        i = rows.index[is_production][0]
        own = rows.at[i, "out_of_sample_sharpe"]
        result["production"] = {
            **_pair(rows.loc[i], "in_sample_sharpe", "out_of_sample_sharpe", "out_of_sample_cagr"),
            "in_sample_rank": _rank(in_rank[i]),
            "out_of_sample_rank": _rank(out_rank[i]),
        }
        near = (
            ((rows["short"] - production[0]).abs() <= NEIGHBOUR_REACH)
            & ((rows["long"] - production[1]).abs() <= NEIGHBOUR_REACH)
            & ~is_production
        )
        alike = int(((rows.loc[near, "out_of_sample_sharpe"] - own).abs() <= SHARPE_TOLERANCE).sum())
        result["robustness"] = {
            "neighbours": int(near.sum()),
            "alike": alike,
            "share": _json_number(alike / near.sum()) if near.any() and not math.isnan(own) else None,
            "reach": NEIGHBOUR_REACH,
            "sharpe_tolerance": SHARPE_TOLERANCE,
        }
    if ranked["in_sample"]:
        i = rows["in_sample_sharpe"].idxmax()
        rank = _rank(out_rank[i])
        result["best_in_sample"] = {
            **_pair(rows.loc[i], "in_sample_sharpe", "out_of_sample_sharpe", "out_of_sample_cagr"),
            "out_of_sample_rank": rank,
            "held_up": rank is not None and rank <= ranked["out_of_sample"] / 2,
        }
    return result


def _rank(value: float) -> int | None:
    return None if math.isnan(value) else int(value)


# Digits kept in the published JSON, as in the backtest's documents.
_DIGITS = {"fees": bt.MONEY_DIGITS, "trades": 0}


def _json_number(value, metric: str = "") -> float | int | None:
    if value is None or not math.isfinite(value):
        return None
    if metric == "trades":
        return int(value)
    return round(float(value), _DIGITS.get(metric, bt.FRACTION_DIGITS))


def _json_column(values: np.ndarray, metric: str) -> list:
    """A column as ``_json_number`` gives each value, a whole column at a time."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if metric == "trades":
        return [int(v) if ok else None for v, ok in zip(values.tolist(), finite.tolist(), strict=True)]
    rounded = python_round(np.where(finite, values, 0.0), _DIGITS.get(metric, bt.FRACTION_DIGITS))
    return [v if ok else None for v, ok in zip(rounded.tolist(), finite.tolist(), strict=True)]


def _pairs_json(rows: pd.DataFrame) -> list[dict]:
    periods = [
        [dict(zip(PAIR_METRICS, values, strict=True))
         for values in zip(*(_json_column(rows[f"{p}_{m}"].to_numpy(), m) for m in PAIR_METRICS), strict=True)]
        for p in PERIODS
    ]  # fmt: skip
    return [
        {"short": short, "long": long, **dict(zip(PERIODS, figures, strict=True))}
        for short, long, *figures in zip(rows["short"].tolist(), rows["long"].tolist(), *periods, strict=True)
    ]


def _hold_json(row: pd.Series) -> dict:
    return {p: {m: _json_number(row[f"{p}_{m}"]) for m in EQUITY_METRICS} for p in PERIODS}


def sweep_settings(sweep: Sweep) -> dict:
    return {
        **sweep.settings.as_json(),
        "in_sample": sweep.in_sample,
        "grid": sweep.grid.as_json(),
        "production": {"short": sweep.production[0], "long": sweep.production[1]},
        "averages": "TA-Lib SMA of the forward-adjusted close, rounded to 3 decimals as production rounds them",
    }


def headline(sweep: Sweep) -> dict:
    """The sweep's summary: its period and settings, and the portfolio's standing (``standing``)."""
    p = sweep.period
    return {
        "start": p.start.isoformat(),
        "end": p.end.isoformat(),
        "split_day": p.split_day.isoformat(),
        "settings": sweep_settings(sweep),
        "portfolio": standing(sweep.rows(bt.PORTFOLIO), sweep.production),
    }


def sweep_document(sweep: Sweep) -> dict:
    """``sweep.json``: every pair's figures for the portfolio and each fund, buy-and-hold's, and the
    standings."""
    holds = {row["ts_code"]: row for _, row in sweep.buy_and_hold.iterrows()}
    entries = []
    for code, rows in sweep.table.groupby("ts_code", sort=False):
        entries.append(
            {
                "ts_code": code,
                "name": rows["name"].iloc[0],
                "standing": standing(rows, sweep.production),
                "buy_and_hold": _hold_json(holds[code]),
                "pairs": _pairs_json(rows),
            }
        )
    portfolio, funds = entries[0], entries[1:]
    return {
        **{k: v for k, v in headline(sweep).items() if k != "portfolio"},
        "portfolio": {k: v for k, v in portfolio.items() if k not in ("ts_code", "name")},
        "funds": funds,
    }
