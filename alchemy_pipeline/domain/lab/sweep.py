"""The parameter lab: the backtest of every pair of average lengths on a grid, in and out of sample.

A pair's signals are the production rule's (``rule.fund_signal``): on each bar, the simple averages of
the close forward-adjusted to that bar's factor, computed exactly and rounded to thousandths by the one
function the rule uses (``signals.averages``), a BUY where the short average is above the long one and was
not on the bar before (both defined there), a SELL the other way round. The averages are summed over the
fund's whole history rather than each day's 300-day window, which being exact changes nothing:
``tests/test_real_data.py`` checks on the real data that the (11, 22) cell makes the production backtest's
trades, every one.

Each pair is traded by the backtest's model (``backtest.follow_signals``: same fills, lots, costs and
marks), three times over: the whole period; its in-sample part (the first ``in_sample`` share of its
trading days: the whole run's figures as of the part's last day, which read nothing after it); and the
out-of-sample rest, as a backtest of its own that starts on the split day with fresh cash (a regime
running then is not entered, as at the backtest's start). The whole period's run also gives the anchored
walk-forward over K folds (``walk_forward``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.lab.grid import DEFAULT_IN_SAMPLE, Grid, GridError, split_index
from alchemy_pipeline.domain.lab.simulation import (
    EQUITY_METRICS,
    PAIR_METRICS,
    FundHistory,
    TradeCounts,
    equity_stats,
    fund_histories,
    pair_signals,
    period_metrics,
    simulate_pairs,
)
from alchemy_pipeline.domain.lab.walk_forward import DEFAULT_FOLDS, fold_bounds, walk_forward
from alchemy_pipeline.infrastructure.workers import WORKER_PROCESSES, map_in_processes

PERIODS = ("full", "in_sample", "out_of_sample")


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
    histories: list[FundHistory],
    pairs: np.ndarray,
    settings: bt.BacktestSettings,
    period: SweepPeriod,
    bounds: list[int],
    production: int | None,
) -> tuple[list[dict], list[dict], dict[str, dict], _Sums]:
    """For each of ``histories``, every pair's figures (a dict of columns), buy-and-hold's and the walk-forward
    over the folds ``bounds``; and what the funds add to the portfolio."""
    days, oos_days = period.days, period.days[period.split :]
    n_pairs, cash = len(pairs), settings.cash
    sums = _Sums(np.zeros((n_pairs, len(days))), np.zeros((n_pairs, len(oos_days))), np.zeros((1, len(days))),
                 np.zeros((1, len(oos_days))))  # fmt: skip
    tables, holds, walks = [], [], {}
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
            got = period_metrics(stats, first_day, last_day, counts)
            table.update({f"{name}_{m}": got[m] for m in PAIR_METRICS})
            held = period_metrics(hold_stats, first_day, last_day, None)
            hold_row.update({f"{name}_{m}": float(held[m][0]) for m in EQUITY_METRICS})
            sums.add_counts(name, counts)
        tables.append(table)
        holds.append(hold_row)
        full = runs.get("full", (np.empty((n_pairs, 0)), None))[0]
        walks[h.ts_code] = walk_forward(full, cash, fund_days, days, bounds, pairs, production)
        for run_name, fund_part, total, hold_total, on in (
            ("full", fund_days, sums.equity, sums.hold, days),
            ("out_of_sample", fund_days[split:], sums.oos_equity, sums.oos_hold, oos_days),
        ):
            equity, hold = runs.get(run_name, (None, None))
            total += _on_days(equity, fund_part, on, cash)
            hold_total += _on_days(hold, fund_part, on, cash)
    return tables, holds, walks, sums


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
    folds: int = DEFAULT_FOLDS
    walk_forward: dict[str, dict] = field(default_factory=dict)  # by ts_code, the portfolio's first

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
    folds: int = DEFAULT_FOLDS,
) -> Sweep:
    """The sweep of ``grid`` over ``settings.start`` to ``end``, with its anchored walk-forward over
    ``folds``. ``prices`` holds every fund's bars (ts_code, trade_date, open, close, adj_factor) from its first
    to ``end``, or from early enough before the start for the longest average."""
    histories = fund_histories(prices, universe, end)
    grid.check_history(max(len(h.days) for h in histories), end)
    period = sweep_period(histories, settings.start, end, in_sample)
    bounds = fold_bounds(len(period.days), folds)
    pairs = grid.pairs()
    found = np.flatnonzero((pairs[:, 0] == production[0]) & (pairs[:, 1] == production[1]))
    production_row = int(found[0]) if len(found) else None
    cells = len(pairs) * sum(int(((h.days >= period.days[0]) & (h.days <= period.days[-1])).sum()) for h in histories)
    if WORKER_PROCESSES > 1 and cells >= MIN_CELLS_FOR_WORKERS and len(histories) > 1:
        # Funds dealt round-robin, so each group holds long and short histories alike.
        groups = [histories[i :: 2 * WORKER_PROCESSES] for i in range(2 * WORKER_PROCESSES)]
        done = map_in_processes(sweep_funds, [g for g in groups if g], pairs, settings, period, bounds, production_row)
    else:
        done = iter([sweep_funds(histories, pairs, settings, period, bounds, production_row)])
    tables, holds, walks, sums = next(done)
    for more_tables, more_holds, more_walks, more in done:  # added as they come: each group's sums are large
        tables += more_tables
        holds += more_holds
        walks.update(more_walks)
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
        got = period_metrics(stats, first, as_of, sums.counts[name])
        portfolio.update({f"{name}_{m}": got[m] for m in PAIR_METRICS})
        held = period_metrics(hold_stats, first, as_of, None)
        portfolio_hold.update({f"{name}_{m}": float(held[m][0]) for m in EQUITY_METRICS})
    entries = [portfolio, *(tables[h.ts_code] for h in histories)]
    table = pd.concat([pd.DataFrame(t) for t in entries], ignore_index=True)
    hold_table = pd.DataFrame([portfolio_hold, *(holds[h.ts_code] for h in histories)])
    walks = {
        bt.PORTFOLIO: walk_forward(sums.equity, start_value, period.days, period.days, bounds, pairs, production_row),
        **{h.ts_code: walks[h.ts_code] for h in histories},
    }
    return Sweep(grid, period, settings, in_sample, production, table, hold_table, folds, walks)
