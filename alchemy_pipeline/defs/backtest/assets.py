"""The backtest asset: every fund's published signals traded with China ETF costs, against holding it, carried
from each trading day to the next."""

import datetime as dt
import traceback

import dagster as dg
import pandas as pd

from alchemy_pipeline.defs.backtest.chain import BacktestChain
from alchemy_pipeline.defs.io_manager import DAY_BEFORE_ONLY, PartitionedParquetIOManager
from alchemy_pipeline.defs.partitions import BACKTEST_ASSET, PRICE_ASSET, SIGNALS_ASSET, range_days
from alchemy_pipeline.defs.resources import BacktestResource, SiteResource, StrategyResource, UniverseResource
from alchemy_pipeline.defs.trading_days import TRADING_DAYS, trading_days_partitions
from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.backtest import PORTFOLIO
from alchemy_pipeline.domain.backtest import ledger as bt_ledger
from alchemy_pipeline.domain.backtest.tearsheet import headline_ratios
from alchemy_pipeline.domain.site.publish import backtest_key
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
# The portfolio's figures a run's last day records as numbers, which the UI plots over days.
PLOTTED = ["total_return", "cagr", "max_drawdown", "sharpe"]
# Each day's state follows from the day before's: Dagster's lineage shows it, and a run reads only the state
# before its first day (the IO manager is told to read no other).
PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True)
COMPUTED_CHECK = "backtest_computed"


def _last_day_metadata(last: pd.DataFrame, page: str) -> dict:
    """What the UI shows of a run's last day (``last``, its summary table): every fund's figures, the link to its
    document, and the portfolio's figures as numbers, which the UI plots over days."""
    portfolio = last[last["ts_code"] == bt.PORTFOLIO].iloc[0]
    metadata = {
        "funds": dg.MetadataValue.md(last[PREVIEW_COLUMNS].to_markdown(index=False, floatfmt=".4f")),
        "latest_backtest": dg.MetadataValue.url(page),
    }
    for sleeve in ("strategy", "buy_and_hold"):
        for metric in PLOTTED:
            value = portfolio[f"{sleeve}_{metric}"]
            if pd.notna(value):
                metadata[f"portfolio_{sleeve}_{metric}"] = float(value)
    return metadata


def build_backtest_asset(start: dt.date) -> dg.AssetsDefinition:
    """The ``etf_backtest`` asset of a backtest starting on ``start`` (ALCHEMY_BACKTEST_START), which must be a
    trading day."""
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
        # The run's prices and signals are read in the body a year at a time, as carried: as inputs, Dagster would
        # hold a decade of them until the step ends.
        deps=[PRICE_ASSET, SIGNALS_ASSET],
        ins={
            "previous_state": dg.AssetIn(
                key=BACKTEST_ASSET, partition_mapping=PREVIOUS_DAY, metadata={DAY_BEFORE_ONLY: True}
            ),
        },
        check_specs=[
            dg.AssetCheckSpec(
                COMPUTED_CHECK,
                asset=BACKTEST_ASSET,
                description=(
                    "The backtest of every day of the run was computed. When it was not, the reports still go out, "
                    "without their backtest block, and the next run recomputes the backtest from its start."
                ),
            )
        ],
        description=(
            f"The backtest's state after each day, from {since} (ALCHEMY_BACKTEST_START), carried from the day "
            "before: every fund's published BUY and SELL days traded at the next bar's open (or the day's close) "
            "in whole lots with commission, against buying and holding it, and the equal-weight portfolio of both "
            "(ts_code PORTFOLIO). One row per fund and day with what its figures need to go on (cash, position, "
            "pending order, running peak and drawdown, the sums of the daily returns) and the fingerprint of the "
            "settings, rule and universe they were made with. A day held back from publication is not traded. "
            "Publishes backtests/YYYY-MM-DD.json for each day traded, and each fund's trades "
            "(backtests/trades/<ts_code>.json) when the run reaches the newest published day. A stored state of "
            "other settings is recomputed from the start; a run that changes a day's state carries it on through "
            "the later stored days."
        ),
    )
    def etf_backtest(
        context: dg.AssetExecutionContext,
        previous_state: pd.DataFrame,
        io_manager: dg.ResourceParam[PartitionedParquetIOManager],
        universe: UniverseResource,
        strategy: StrategyResource,
        backtest: BacktestResource,
        site: SiteResource,
    ):
        days = [d for d in range_days(context) if d >= start]
        if not days:
            context.log.info(f"Every day of the run is before the backtest's start, {since}: nothing to backtest")
            yield dg.Output(bt.state_frame_empty())
            yield dg.AssetCheckResult(check_name=COMPUTED_CHECK, passed=True, description="nothing to backtest")
            return
        chain = BacktestChain(
            io_manager=io_manager,
            store=site.store(),
            settings=backtest.settings(),
            universe=universe.load(),
            rule=strategy.rule(),
            max_funds_without_data=universe.max_funds_without_data,
            log=context.log,
        )
        try:
            result = chain.run(days, previous_state)
        except Exception as exc:
            context.log.error(f"The backtest failed; the reports go out without it:\n{traceback.format_exc()}")
            yield dg.Output(bt.state_frame_empty(), metadata={"backtest": "unavailable", "error": str(exc)[:500]})
            yield dg.AssetCheckResult(
                check_name=COMPUTED_CHECK, passed=False, description=f"The backtest failed: {str(exc)[:300]}"
            )
            return
        for day in result.other_days:
            # States the run rewrote outside its own days (recomputed or carried on): Dagster records them too.
            yield dg.AssetMaterialization(
                asset_key=context.asset_key, partition=day, metadata={"rewritten_by_run": context.run.run_id}
            )
        last = days[-1].isoformat()
        # The UI shows the last day: its rows alone (a decade of a large universe is millions of rows).
        summaries = bt.summary_table(result.frame[result.frame["trade_date"] == pd.Timestamp(last)], chain.settings)
        newest = _last_day_metadata(summaries, site.url(backtest_key(last)))
        # The portfolio's ratios of its tearsheet, over every stored day's equity (the ledger's one fund).
        equity = bt_ledger.bars(bt_ledger.read(io_manager.store(), PORTFOLIO))
        ratios = headline_ratios(equity[equity["day"] <= last], chain.settings.cash * len(chain.codes))
        newest.update(portfolio_sortino=ratios["sortino"], portfolio_beta=ratios["beta"])
        # Dagster copies a run's metadata to each of its days: what describes the last day goes on it alone (a
        # decade's copies of 1,500 funds' table would be half a gigabyte of event log, and its numbers would plot
        # at every day).
        context.add_asset_metadata(newest, partition_key=last)
        metadata = {
            "dagster/row_count": result.rows,
            "days": len(days),
            "figures_as_of": last,
            "fingerprint": chain.fingerprint,
            "documents_published": result.documents,
            "trades_rewritten": result.trades_rewritten,
            "started_from": result.started_from,
            "days_held_back": len(result.held_back),
            "other_days_rewritten": len(result.other_days),
        }
        # The chain stored the run's states a year at a time as it carried them: nothing left to store.
        yield dg.Output(None, metadata=metadata)
        yield dg.AssetCheckResult(check_name=COMPUTED_CHECK, passed=True, description=result.started_from)

    return etf_backtest
