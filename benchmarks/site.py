"""Publishing the site at the default universe's size: how long a day's publication takes once ten years
are published, how long the ten years take as one run, and how much a reader downloads."""

from __future__ import annotations

import datetime as dt
import gzip
import tempfile
import time
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
from alchemy_pipeline.domain.market.universe import load_universe
from alchemy_pipeline.domain.signals.fast_path import classify, compute_indicators
from alchemy_pipeline.domain.signals.rule import RuleParams
from alchemy_pipeline.domain.site.pages import CHARTS_LIBRARY
from alchemy_pipeline.domain.site.publish import publish_backtests, publish_signals
from alchemy_pipeline.infrastructure.storage import LocalBlobStore
from tests.site_fixture import demo_prices

START, END = "2015-01-05", "2024-12-31"
DAY_TARGET_S, FUND_PAGE_KB, INDEX_KB = 2.0, 150, 100


class CountingStore(LocalBlobStore):
    """Counts the writes of each key: a run renders each page once."""

    def __init__(self, root):
        super().__init__(root)
        self.writes: dict[str, int] = {}

    def put(self, key, data, **kwargs):
        self.writes[key] = self.writes.get(key, 0) + 1
        return super().put(key, data, **kwargs)


def _gz_kb(*paths: Path) -> float:
    return round(sum(len(gzip.compress(p.read_bytes(), 9)) for p in paths) / 1024, 1)


def site_publishing() -> tuple[list[str], list[tuple[str, str, bool]]]:
    """The section's lines, and its targets' rows."""
    universe = load_universe()
    params = RuleParams()
    prices = demo_prices(universe["ts_code"])
    sessions = sorted(d.date() for d in prices["trade_date"].unique() if str(d.date()) <= END)
    days = [d for d in sessions if d >= dt.date.fromisoformat(START)]
    signals = classify(compute_indicators(prices, sessions, days, params), universe, days, params)
    settings = BacktestSettings(start=days[0])
    backtest = run_backtest(prices, signals, universe, settings, days)
    summaries = summary_table(backtest.frame, settings)
    last = pd.Timestamp(days[-1])
    with tempfile.TemporaryDirectory(prefix="bench-site-") as root, tempfile.TemporaryDirectory() as data:
        store, data_store = CountingStore(root), LocalBlobStore(data)
        publish_backtests(store, document_files(backtest, params.described()), trade_lists(backtest, {}))
        ledger.write(data_store, [backtest.frame])
        store.writes.clear()
        started = time.perf_counter()
        before = signals[signals["trade_date"] < last]
        publish_signals(store, before, params, None, None, summaries, prices, ledger=ledger.read(data_store))
        backfill = time.perf_counter() - started
        most_writes = max(n for key, n in store.writes.items() if key.startswith("funds/"))
        started = time.perf_counter()
        # As signal_report does: the equity ledger read whole for the tearsheets.
        day = signals[signals["trade_date"] == last]
        publish_signals(store, day, params, None, None, summaries, prices, ledger=ledger.read(data_store))
        daily = time.perf_counter() - started
        site = Path(root)
        scripts = [site / "static" / CHARTS_LIBRARY, site / "static" / "site.js"]
        biggest = max((site / "funds").glob("*.html"), key=lambda p: p.stat().st_size)
        page_kb = _gz_kb(biggest, *scripts)
        data_kb = _gz_kb(biggest.with_suffix(".json"))
        index_kb = _gz_kb(site / "index.html", *scripts)
    lines = [
        "",
        "## Publishing the site",
        "",
        f"In one process, the reports and pages alone (no Dagster), on local files: the default {len(universe)} "
        f"funds' demo prices, {len(days):,} trading days from {START} to {END}, signals and backtest computed "
        "first (not timed). The days but the last published as one run, then the last day as the daily run "
        "publishes it (its report, the pages either side of it, every fund page with its data, the equity "
        "ledger read for every fund's tearsheet and downloads, the history, the rules and the front page).",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| publishing the last day, {len(days) - 1:,} days already published (s) | {daily:.2f} |",
        f"| publishing the {len(days) - 1:,} days as one run (s) | {backfill:.2f} |",
        f"| writes of any fund page or fund data in that run | {most_writes} |",
        f"| largest fund page with its scripts, gzip (KB) | {page_kb} |",
        f"| its data file (`funds/<ts_code>.json`), gzip (KB) | {data_kb} |",
        f"| front page with its scripts, gzip (KB) | {index_kb} |",
    ]
    rows = [
        (f"publishing a day, {len(universe)} funds x 10 years: at most {DAY_TARGET_S:g} s", f"{daily:.2f} s",
         daily <= DAY_TARGET_S),
        ("a 10-year run renders each fund page once", f"{most_writes} writes", most_writes == 1),
        (f"largest fund page with its scripts at most {FUND_PAGE_KB} KB gzipped", f"{page_kb} KB",
         page_kb <= FUND_PAGE_KB),
        (f"front page under {INDEX_KB} KB gzipped", f"{index_kb} KB", index_kb < INDEX_KB),
    ]  # fmt: skip
    return lines, rows


if __name__ == "__main__":
    lines, rows = site_publishing()
    print("\n".join(lines))
    for row in rows:
        print(row)
