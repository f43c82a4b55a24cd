"""A small published site made the way the pipeline makes it, from the demo's synthetic prices: the signals
(fast_path), the backtest, its documents and equity ledger, then the reports and pages with the tearsheets, in
two runs (a range, then the next day) as the daily schedule would publish them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from alchemy_pipeline.domain.backtest import (
    BacktestSettings,
    document_files,
    ledger,
    run_backtest,
    summary_table,
    trade_lists,
)
from alchemy_pipeline.domain.market.demo_prices import fund_series
from alchemy_pipeline.domain.signals.fast_path import classify, compute_indicators
from alchemy_pipeline.domain.signals.rule import RuleParams
from alchemy_pipeline.domain.site.publish import publish_backtests, publish_signals, publish_stretches, published_days
from alchemy_pipeline.infrastructure.storage import LocalBlobStore

FUNDS = pd.DataFrame(
    {"ts_code": ["510300.SH", "159915.SZ", "512880.SH"], "name": ["沪深300ETF", "创业板ETF", "证券ETF"]}
)
PARAMS = RuleParams()


def demo_prices(codes) -> pd.DataFrame:
    prices = pd.concat([fund_series(code) for code in codes], ignore_index=True)
    prices["trade_date"] = pd.to_datetime(prices["trade_date"])
    return prices


def publish_run(
    store, prices, universe, days: list[dt.date], start: dt.date, subscribe_url=None, stretch_days: int | None = None
) -> pd.DataFrame:
    """One run of the pipeline's steps over ``days`` (the backtest from ``start``): what signal_report and
    etf_backtest publish; its reports ``stretch_days`` at a time when given, as signal_report publishes a year at a
    time. Returns the run's signals."""
    sessions = sorted(d.date() for d in prices["trade_date"].unique() if d.date() <= days[-1])
    everything = [d for d in sessions if d >= start]
    indicators = compute_indicators(prices, sessions, everything, PARAMS)
    history = classify(indicators, universe, everything, PARAMS)
    settings = BacktestSettings(start=start)
    backtest = run_backtest(prices, history, universe, settings, everything)
    # As etf_backtest does: the documents of the run's days, the trades only from a run that reaches the newest
    # published day.
    newest = published_days(store)
    reaches_newest = not newest or days[-1].isoformat() >= newest[-1]
    trades = trade_lists(backtest, {}) if reaches_newest else None
    publish_backtests(store, document_files(backtest, PARAMS.described(), only=set(days)), trades)
    signals = history[history["trade_date"].dt.date.isin(days)].reset_index(drop=True)
    summaries = summary_table(backtest.frame[backtest.frame["trade_date"].dt.date.isin(days)], settings)
    # As the chain and signal_report do: the equity ledger kept beside the pipeline's data, read whole.
    data = LocalBlobStore(Path(f"{store.root}.data"))
    ledger.write(data, [backtest.frame])
    if stretch_days is None:
        publish_signals(store, signals, PARAMS, None, subscribe_url, summaries, prices, ledger=ledger.read(data))
        return signals
    run_days = [d.isoformat() for d in days]

    def stretches():
        for i in range(0, len(days), stretch_days):
            stretch = pd.to_datetime(run_days[i : i + stretch_days])
            yield *(t[t["trade_date"].isin(stretch)] for t in (signals, summaries, prices)), ()

    publish_stretches(store, run_days, stretches(), PARAMS, None, subscribe_url, lambda: ledger.read(data))
    return signals


def publish_demo_site(
    root: Path, days: int = 300, subscribe_url: str | None = None, day_by_day: bool = True, stretch_days=None
) -> pd.DataFrame:
    """``days`` trading days of 3 funds to 2024-06-28, the backtest from the first; published as a range then
    the last day (or, not ``day_by_day``, as one range, ``stretch_days`` at a time when given). Returns every
    published signal."""
    prices = demo_prices(FUNDS["ts_code"])
    sessions = sorted(d.date() for d in prices["trade_date"].unique())
    last = sessions.index(dt.date(2024, 6, 28))
    run = sessions[last - days + 1 : last + 1]
    store = LocalBlobStore(root)
    if not day_by_day:
        return publish_run(store, prices, FUNDS, run, run[0], subscribe_url, stretch_days)
    first = publish_run(store, prices, FUNDS, run[:-1], run[0], subscribe_url)
    second = publish_run(store, prices, FUNDS, run[-1:], run[0], subscribe_url)
    return pd.concat([first, second], ignore_index=True)
