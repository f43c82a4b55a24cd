"""The four assets: etf_daily_prices -> etf_indicators -> trade_signals -> signal_report."""

import dagster as dg
import pandas as pd

from alchemy_pipeline.defs.partitions import history_mapping, to_day, trading_days
from alchemy_pipeline.defs.resources import (
    PriceSourceResource,
    SiteResource,
    StrategyResource,
    UniverseResource,
)
from alchemy_pipeline.domain.prices import fetch_prices
from alchemy_pipeline.domain.publish import publish_reports
from alchemy_pipeline.domain.report import build_report, render_text
from alchemy_pipeline.domain.strategy import State, classify, compute_indicators

GROUP = "etf_signals"
PREVIEW_ROWS = 12


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


@dg.asset(
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"tushare", "pandas", "parquet"},
    description=(
        "Unadjusted daily bars (Tushare fund_daily) of every fund in the universe, with that day's "
        "cumulative adjustment factor (fund_adj). Fetched in bulk: per day for all funds, or per fund "
        "for a whole range, whichever costs fewer API calls."
    ),
)
def etf_daily_prices(
    context: dg.AssetExecutionContext, prices: PriceSourceResource, universe: UniverseResource
) -> dg.Output[pd.DataFrame]:
    days = _days(context)
    codes = universe.load()["ts_code"].tolist()
    client = prices.client(codes)
    table = fetch_prices(client, codes, days)
    present = set(table["trade_date"].dt.date)
    absent = [d.isoformat() for d in days if d not in present]
    if absent:
        # Publishing a day without its bars would report every fund as NO_DATA: refuse instead.
        raise dg.Failure(
            description=(
                f"The price source has no bar for any of the {len(codes)} funds on {', '.join(absent[:10])}"
                f"{' ...' if len(absent) > 10 else ''}: the day is not published yet or the source is failing."
            )
        )
    unfactored = table[table["adj_factor"].isna()]
    metadata = _table_metadata(table)
    metadata.update(
        api_calls=int(sum(client.calls.values())),
        bars_without_adj_factor=len(unfactored),
        funds_without_bar_on_last_day=len(codes) - int((table["trade_date"].dt.date == days[-1]).sum()),
    )
    return dg.Output(table, metadata=metadata)


@dg.asset(
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"talib", "pandas", "parquet"},
    ins={"etf_daily_prices": dg.AssetIn(partition_mapping=history_mapping)},
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
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"pandas", "parquet"},
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
) -> dg.Output[pd.DataFrame]:
    funds = universe.load()
    params = strategy.params()
    table = classify(etf_indicators, funds, _days(context), params)
    last_day = table[table["trade_date"] == table["trade_date"].max()]
    metadata = _table_metadata(table, preview=last_day)
    metadata.update({f"last_day_{s.value.lower()}": int((last_day["state"] == s.value).sum()) for s in State})
    return dg.Output(table, metadata=metadata)


@dg.asset(
    partitions_def=trading_days,
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
    reports = [
        build_report(day_signals, params, notice=prices.notice)
        for _, day_signals in trade_signals.groupby("trade_date", sort=True)
    ]
    written = publish_reports(site.store(), reports, site.subscribe_url)
    latest = reports[-1]
    return dg.MaterializeResult(
        metadata={
            "days_published": len(reports),
            "first_day": reports[0]["trade_date"],
            "last_day": latest["trade_date"],
            "files_written": len(written),
            "latest_page": dg.MetadataValue.url(site.page_url(latest["trade_date"])),
            "latest_report": dg.MetadataValue.md("```\n" + render_text(latest) + "```"),
        }
    )
