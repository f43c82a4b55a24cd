"""The four assets: etf_daily_prices -> etf_indicators -> trade_signals -> signal_report."""

import dagster as dg
import pandas as pd

from alchemy_pipeline.defs.checks import check_result
from alchemy_pipeline.defs.partitions import TradingDays, history_mapping, to_day
from alchemy_pipeline.defs.resources import (
    PriceSourceResource,
    SiteResource,
    StrategyResource,
    UniverseResource,
)
from alchemy_pipeline.domain.prices import fetch_prices
from alchemy_pipeline.domain.publish import publish_signals
from alchemy_pipeline.domain.quality import (
    bars_are_valid,
    no_data_under_threshold,
    universe_coverage,
)
from alchemy_pipeline.domain.report import build_report, render_text
from alchemy_pipeline.domain.strategy import PRICE_INPUT_COLUMNS, State, classify, compute_indicators
from alchemy_pipeline.domain.tushare_api import VendorAuthError
from alchemy_pipeline.domain.workers import start_workers, worth_workers

GROUP = "etf_signals"
PREVIEW_ROWS = 12
# A backfill's metadata is stored with each of its partitions: the whole report of a large universe,
# thousands of times over, would swell the event log; the page has it all.
REPORT_PREVIEW_LINES = 60


def _head(text: str, lines: int) -> str:
    kept = text.splitlines(keepends=True)
    if len(kept) <= lines:
        return text
    return "".join(kept[:lines]) + f"... {len(kept) - lines} more lines: see latest_page\n"


def _days(context: dg.AssetExecutionContext) -> list:
    return [to_day(k) for k in context.partition_keys]


def _table_metadata(table: pd.DataFrame, preview: pd.DataFrame | None = None) -> dict:
    dates = table["trade_date"]
    shown = (table if preview is None else preview).head(PREVIEW_ROWS)
    return {
        "dagster/row_count": len(table),
        "funds": int(table["ts_code"].nunique()),
        "first_day": dates.min().strftime("%Y-%m-%d") if len(table) else "",
        "last_day": dates.max().strftime("%Y-%m-%d") if len(table) else "",
        "preview": dg.MetadataValue.md(shown.to_markdown(index=False)),
    }


def _check(name: str, asset: str, description: str, blocking: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking)


def build_signal_assets(trading_days: TradingDays) -> list[dg.AssetsDefinition]:
    """The four assets, partitioned by the trading days of ``trading_days``' calendar."""

    @dg.asset(
        partitions_def=trading_days.partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"tushare", "pandas", "parquet"},
        check_specs=[
            _check(
                "bars_are_valid",
                "etf_daily_prices",
                "Every bar: prices > 0 and low <= open, close <= high; an adjustment factor > 0; no fund with "
                "two bars on one day. A failure names each broken rule, with examples.",
            ),
            _check(
                "universe_coverage",
                "etf_daily_prices",
                "Funds of the universe without a bar (they become NO_DATA, with the reason).",
                blocking=False,
            ),
        ],
        # A vendor outage that outlasts the client's own retries: try the step again later.
        retry_policy=dg.RetryPolicy(max_retries=2, delay=300, backoff=dg.Backoff.EXPONENTIAL),
        description=(
            "Unadjusted daily bars (Tushare fund_daily) of every fund in the universe, with that day's "
            "cumulative adjustment factor (fund_adj). Fetched in bulk, in the fewest API calls: the last day "
            "for every fund at once, then the rest per day, per fund (fund_adj: 100 funds a call) or, when the "
            "universe is most of the market, the whole market over the range, paged."
        ),
    )
    def etf_daily_prices(context: dg.AssetExecutionContext, prices: PriceSourceResource, universe: UniverseResource):
        days = _days(context)
        codes = universe.load()["ts_code"].tolist()
        client = prices.client(codes)
        try:
            table = fetch_prices(client, codes, days)
        except VendorAuthError as exc:
            # No retry can fix a refused token: fail now, and say which setting to fix.
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        present = set(pd.DatetimeIndex(table["trade_date"].unique()).date)
        absent = [d.isoformat() for d in days if d not in present]
        if absent:
            # Publishing a day without its bars would report every fund as NO_DATA: wait for the vendor.
            context.log.warning(
                f"The price source has no bar for any of the {len(codes)} funds on {', '.join(absent[:10])}"
                f"{' ...' if len(absent) > 10 else ''}: not published yet. Nothing is published or sent for it; "
                f"retrying in {prices.late_data_retry_seconds} s (at most {prices.late_data_retries} times)."
            )
            raise dg.RetryRequested(
                max_retries=prices.late_data_retries, seconds_to_wait=prices.late_data_retry_seconds
            )
        metadata = _table_metadata(table)
        metadata.update(
            api_calls=int(sum(client.calls.values())),
            api_retries=int(sum(client.retries.values())),
            funds_without_bar_on_last_day=len(codes) - int((table["trade_date"] == pd.Timestamp(days[-1])).sum()),
        )
        selection = context.run.asset_selection
        if (selection is None or dg.AssetKey("etf_indicators") in selection) and worth_workers(len(table)):
            # This run's indicators are computed in worker processes: they start now, while the prices are
            # written and checked, rather than when the indicators need them. Not earlier: building the
            # table from the pages is the fetch's memory peak.
            start_workers(compute_indicators.__module__)
        yield dg.Output(table, metadata=metadata)
        yield check_result("bars_are_valid", bars_are_valid(table))
        yield check_result("universe_coverage", universe_coverage(table, codes, days), dg.AssetCheckSeverity.WARN)

    @dg.asset(
        partitions_def=trading_days.partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"talib", "pandas", "parquet"},
        # Only the columns the rule reads: a decade of a large universe is millions of rows.
        ins={
            "etf_daily_prices": dg.AssetIn(partition_mapping=history_mapping, metadata={"columns": PRICE_INPUT_COLUMNS})
        },
        description=(
            "Per fund and day: close, adjustment factor, the short and long simple moving averages of the "
            "forward-adjusted close (TA-Lib, rounded to 3 decimals), the previous day's averages and the "
            "latest golden and death crosses, computed over a fixed window of trading days ending on the day."
        ),
    )
    def etf_indicators(
        context: dg.AssetExecutionContext, etf_daily_prices: pd.DataFrame, strategy: StrategyResource
    ) -> dg.Output[pd.DataFrame]:
        days = _days(context)
        sessions = [to_day(k) for k in context.asset_partition_keys_for_input("etf_daily_prices")]
        params = strategy.params()
        table = compute_indicators(etf_daily_prices, sessions, days, params)
        metadata = _table_metadata(table)
        metadata.update(short=params.short, long=params.long, history_days_read=len(sessions))
        return dg.Output(table, metadata=metadata)

    @dg.asset(
        partitions_def=trading_days.partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"pandas", "parquet"},
        check_specs=[
            _check(
                "funds_without_data_under_threshold",
                "trade_signals",
                "Funds that trade but have no usable bar stay under the threshold on every day.",
            )
        ],
        description=(
            "One row per fund of the universe and day: BUY, SELL, HOLD, EMPTY, NO_DATA or "
            "INSUFFICIENT_HISTORY, with close, ma_short, ma_long, the day the current signal fired (since), "
            "the calendar days since then and the % change of the adjusted close."
        ),
    )
    def trade_signals(
        context: dg.AssetExecutionContext,
        etf_indicators: pd.DataFrame,
        universe: UniverseResource,
        strategy: StrategyResource,
    ):
        funds = universe.load()
        params = strategy.params()
        table = classify(etf_indicators, funds, _days(context), params)
        last_day = table[table["trade_date"] == table["trade_date"].max()]
        metadata = _table_metadata(table, preview=last_day)
        metadata.update({f"last_day_{s.value.lower()}": int((last_day["state"] == s.value).sum()) for s in State})
        yield dg.Output(table, metadata=metadata)
        threshold = no_data_under_threshold(table, universe.max_funds_without_data)
        yield check_result("funds_without_data_under_threshold", threshold)

    @dg.asset(
        partitions_def=trading_days.partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"html", "json"},
        description=(
            "The published report of each day (reports/YYYY-MM-DD.json, .txt and .html) and the refreshed "
            "site front page (index.html) and history (history.json)."
        ),
    )
    def signal_report(
        context: dg.AssetExecutionContext,
        trade_signals: pd.DataFrame,
        strategy: StrategyResource,
        prices: PriceSourceResource,
        site: SiteResource,
    ) -> dg.MaterializeResult:
        params = strategy.params()
        written = publish_signals(site.store(), trade_signals, params, prices.notice, site.subscribe_url)
        dates = trade_signals["trade_date"]
        latest = build_report(trade_signals[dates == dates.max()], params, notice=prices.notice)
        return dg.MaterializeResult(
            metadata={
                "days_published": int(dates.nunique()),
                "first_day": dates.min().strftime("%Y-%m-%d"),
                "last_day": latest["trade_date"],
                "files_written": len(written),
                "latest_page": dg.MetadataValue.url(site.page_url(latest["trade_date"])),
                "latest_report": dg.MetadataValue.md(f"```\n{_head(render_text(latest), REPORT_PREVIEW_LINES)}```"),
            }
        )

    return [etf_daily_prices, etf_indicators, trade_signals, signal_report]
