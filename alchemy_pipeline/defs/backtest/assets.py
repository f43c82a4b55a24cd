"""The backtest asset: every fund's published signals traded with China ETF costs, against holding it."""

import datetime as dt

import dagster as dg
import pandas as pd

from alchemy_pipeline.defs.partitions import BACKTEST_ASSET, range_days
from alchemy_pipeline.defs.resources import BacktestResource, SiteResource, StrategyResource, UniverseResource
from alchemy_pipeline.defs.trading_days import TRADING_DAYS, trading_days_partitions
from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.publish import backtest_key, publish_backtests, published_days
from alchemy_pipeline.domain.report import STRATEGY_NAME
from alchemy_pipeline.settings import SettingsError

GROUP = "etf_backtest"
PREVIEW_COLUMNS = [
    "ts_code",
    "name",
    "strategy_total_return",
    "strategy_cagr",
    "buy_and_hold_total_return",
    "buy_and_hold_cagr",
    "strategy_max_drawdown",
    "buy_and_hold_max_drawdown",
    "strategy_sharpe",
    "buy_and_hold_sharpe",
    "strategy_trades",
    "strategy_win_rate",
    "strategy_exposure",
    "strategy_fees",
]
# The portfolio's figures a single day's run records as numbers, which the UI plots over days.
PLOTTED = ["total_return", "cagr", "max_drawdown", "sharpe"]


def _figures_metadata(table: pd.DataFrame, as_of: str, one_day: bool, page: str) -> dict:
    last = table[table["trade_date"] == table["trade_date"].max()]
    portfolio = last[last["ts_code"] == bt.PORTFOLIO].iloc[0]
    metadata = {
        "dagster/row_count": len(table),
        "days": int(table["trade_date"].nunique()),
        "figures_as_of": as_of,
        "funds": dg.MetadataValue.md(last[PREVIEW_COLUMNS].to_markdown(index=False, floatfmt=".4f")),
        "latest_backtest": dg.MetadataValue.url(page),
    }
    if one_day:
        # A range run's metadata is copied to each of its days: numbers of its last day would plot wrongly.
        for sleeve in ("strategy", "buy_and_hold"):
            for metric in PLOTTED:
                value = portfolio[f"{sleeve}_{metric}"]
                if pd.notna(value):
                    metadata[f"portfolio_{sleeve}_{metric}"] = float(value)
    return metadata


def build_backtest_asset(start: dt.date) -> dg.AssetsDefinition:
    """The ``etf_backtest`` asset of a backtest starting on ``start`` (ALCHEMY_BACKTEST_START), which must be a
    trading day: the asset reads the prices and signals of every day from it."""
    if not TRADING_DAYS.calendar.is_trading_day(start):
        following = TRADING_DAYS.calendar.sessions(start, start + dt.timedelta(days=30))
        raise SettingsError(
            f"ALCHEMY_BACKTEST_START={start} is not a trading day"
            + (f": the next one is {following[0]}" if len(following) else "")
        )
    since = start.isoformat()

    @dg.asset(
        name=BACKTEST_ASSET,
        partitions_def=trading_days_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"pandas", "parquet", "json"},
        ins={
            "etf_daily_prices": dg.AssetIn(metadata={"columns": bt.PRICE_COLUMNS, "since": since}),
            "trade_signals": dg.AssetIn(metadata={"columns": bt.SIGNAL_COLUMNS, "since": since}),
        },
        description=(
            f"The backtest as of each day, from {since} (ALCHEMY_BACKTEST_START): every fund's published BUY and "
            "SELL days traded at the next bar's open (or the day's close) in whole lots with commission, "
            "against buying and holding it, and the equal-weight portfolio of both (ts_code PORTFOLIO). One "
            "row per fund and day with the figures. Publishes backtests/YYYY-MM-DD.json for each day, and each "
            "fund's trades (backtests/trades/<ts_code>.json) when the run reaches the newest published day. "
            "Reads the prices and signals of every day from the start: they must exist."
        ),
    )
    def etf_backtest(
        context: dg.AssetExecutionContext,
        etf_daily_prices: pd.DataFrame,
        trade_signals: pd.DataFrame,
        universe: UniverseResource,
        strategy: StrategyResource,
        backtest: BacktestResource,
        site: SiteResource,
    ) -> dg.Output[pd.DataFrame]:
        days = [d for d in range_days(context) if d >= start]
        settings = backtest.settings(start)
        if not days:
            context.log.info(f"Every day of the run is before the backtest's start, {since}: nothing to backtest")
            return dg.Output(bt.FigureTable().frame())
        params = strategy.params()
        result = bt.run_backtest(etf_daily_prices, trade_signals, universe.load(), settings, days[-1])
        described = {"name": STRATEGY_NAME, "short": params.short, "long": params.long}
        table = bt.FigureTable()

        def documents():
            for day in days:
                document = bt.backtest_document(result, day, described)
                table.add(document)
                yield document

        store = site.store()
        newest = published_days(store)
        # Trades only from a run that reaches the newest day: a backfill of the past leaves them as they are.
        reaches_newest = not newest or days[-1].isoformat() >= newest[-1]
        trades = {fund.ts_code: fund.trades_json() for fund in result.funds} if reaches_newest else None
        written = publish_backtests(store, documents(), trades)
        figures = table.frame()
        context.log.info(f"{len(written)} files published; trades {'rewritten' if trades else 'left as they were'}")
        last = days[-1].isoformat()
        metadata = _figures_metadata(figures, last, len(days) == 1, site.url(backtest_key(last)))
        return dg.Output(figures, metadata=metadata)

    return etf_backtest
