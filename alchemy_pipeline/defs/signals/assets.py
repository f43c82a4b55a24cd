"""The four assets: etf_daily_prices -> etf_indicators -> trade_signals -> signal_report."""

import functools
import json
import os
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from alchemy_pipeline.defs.backtest.chain import REPUBLISH_KEY, missing_history
from alchemy_pipeline.defs.checks import check_result
from alchemy_pipeline.defs.io_manager import PartitionedParquetIOManager
from alchemy_pipeline.defs.partitions import (
    BACKTEST_ASSET,
    DAILY_ASSETS,
    PRICE_ASSET,
    REPORT_ASSET,
    SIGNALS_ASSET,
    backfill_command,
    by_year,
    history_mapping,
    range_days,
    to_day,
)
from alchemy_pipeline.defs.resources import (
    BacktestResource,
    PriceSourceResource,
    SiteResource,
    StrategyResource,
    UniverseResource,
)
from alchemy_pipeline.defs.trading_days import trading_days_partitions
from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.backtest import PORTFOLIO
from alchemy_pipeline.domain.backtest import ledger as bt_ledger
from alchemy_pipeline.domain.market.prices import fetch_prices
from alchemy_pipeline.domain.market.quality import (
    QUALITY_COLUMNS,
    bars_are_valid,
    held_back_days,
    no_data_under_threshold,
    universe_coverage,
)
from alchemy_pipeline.domain.market.tushare_api import VendorAuthError, VendorDataError, VendorError
from alchemy_pipeline.domain.signals.fast_path import PRICE_INPUT_COLUMNS, classify, compute_indicators
from alchemy_pipeline.domain.signals.rule import State
from alchemy_pipeline.domain.site.charts import equity_svg, markdown_image
from alchemy_pipeline.domain.site.fund_pages import fund_data_key
from alchemy_pipeline.domain.site.publish import Stretch, publish_signals, publish_stretches, published_days
from alchemy_pipeline.domain.site.report import backtest_summaries, build_report, distinct_days, render_text

GROUP = "etf_signals"
PREVIEW_ROWS = 12
# A backfill's metadata is stored with each of its partitions: the whole report of a large universe,
# thousands of times over, would swell the event log; the page has it all.
REPORT_PREVIEW_LINES = 60
# What the reports and fund pages read of the prices, and the held-back rule of the signals.
FACTOR_COLUMNS = ["ts_code", "trade_date", "adj_factor"]
HELD_BACK_SIGNAL_COLUMNS = ["ts_code", "trade_date", "state", "note"]
# The run tag that names the days a run held back, as the run list shows it.
HELD_BACK_TAG = "alchemy/held_back"


def _reasons(held_back: dict[str, str]) -> str:
    return " ".join(f"{day}: {why}." for day, why in held_back.items())


def _held_back_tag(held_back: dict[str, str], shown: int = 5) -> str:
    days = list(held_back)
    return ", ".join(days[:shown]) + (f" and {len(days) - shown} more" if len(days) > shown else "")


def _head(text: str, lines: int) -> str:
    kept = text.splitlines(keepends=True)
    if len(kept) <= lines:
        return text
    return "".join(kept[:lines]) + f"... {len(kept) - lines} more lines: see latest_page\n"


def _as_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its timestamps written as days: a preview of daily data reads 2026-12-04, not
    2026-12-04 00:00:00."""
    stamps = frame.select_dtypes("datetime").columns
    return frame.assign(**{c: frame[c].dt.strftime("%Y-%m-%d").fillna("") for c in stamps})


def _table_metadata(table: pd.DataFrame, preview: pd.DataFrame | None = None) -> dict:
    dates = table["trade_date"]
    shown = (table if preview is None else preview).head(PREVIEW_ROWS)
    return {
        "dagster/row_count": len(table),
        "funds": int(table["ts_code"].nunique()),
        "first_day": dates.min().strftime("%Y-%m-%d") if len(table) else "",
        "last_day": dates.max().strftime("%Y-%m-%d") if len(table) else "",
        "preview": dg.MetadataValue.md(_as_dates(shown).to_markdown(index=False)),
    }


def _check(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    # Not blocking: a blocking check would hold back a whole range for one bad day. signal_report holds
    # back, day by day, the days these checks fail.
    return dg.AssetCheckSpec(name, asset=asset, description=description)


# Backoff of the prices step when the vendor stays down beyond the client's own retries.
OUTAGE_RETRIES = 2
OUTAGE_RETRY_SECONDS = 300


@dg.asset(
    partitions_def=trading_days_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"tushare", "pandas", "parquet"},
    check_specs=[
        _check(
            "bars_are_valid",
            "etf_daily_prices",
            "Every bar: prices > 0 and low <= open, close <= high; an adjustment factor > 0; no fund with "
            "two bars on one day. A failure names each broken rule, with examples, and the days held back "
            "from publication for it.",
        ),
        _check(
            "universe_coverage",
            "etf_daily_prices",
            "Funds of the universe without a bar (they become NO_DATA, with the reason).",
        ),
    ],
    description=(
        "Unadjusted daily bars (Tushare fund_daily) of every fund in the universe, with that day's "
        "cumulative adjustment factor (fund_adj). Fetched in bulk, in the fewest API calls: the last day "
        "for every fund at once, then the rest per day, per fund (fund_adj: 100 funds a call) or, when the "
        "universe is most of the market, the whole market over the range, paged."
    ),
)
def etf_daily_prices(
    context: dg.AssetExecutionContext,
    prices: PriceSourceResource,
    universe: UniverseResource,
    io_manager: dg.ResourceParam[PartitionedParquetIOManager],
    strategy: StrategyResource,
    backtest: BacktestResource,
):
    days = range_days(context)
    funds = universe.load()
    codes = funds["ts_code"].tolist()
    _require_history(context, days, io_manager, funds, universe, strategy, backtest)
    client = prices.client(codes)
    try:
        table = fetch_prices(client, codes, days)
    except (VendorAuthError, VendorDataError) as exc:
        # No retry can fix a refused token or an answer without the fields asked for: fail now, saying why.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except VendorError as exc:
        # An outage or rate limit that outlasted the client's own retries: only these are tried again.
        wait = OUTAGE_RETRY_SECONDS * 2**context.retry_number
        context.log.warning(f"{exc}; retrying the step in {wait} s (at most {OUTAGE_RETRIES} times)")
        raise dg.RetryRequested(max_retries=OUTAGE_RETRIES, seconds_to_wait=wait) from exc
    present = set(pd.DatetimeIndex(table["trade_date"].unique()).date)
    absent = [d.isoformat() for d in days if d not in present]
    if absent:
        # Publishing a day without its bars would report every fund as NO_DATA: wait for the vendor.
        context.log.warning(
            f"The price source has no bar for any of the {len(codes)} funds on {', '.join(absent[:10])}"
            f"{' ...' if len(absent) > 10 else ''}: not published yet. Nothing is published or sent for it; "
            f"retrying in {prices.late_data_retry_seconds} s (at most {prices.late_data_retries} times)."
        )
        raise dg.RetryRequested(max_retries=prices.late_data_retries, seconds_to_wait=prices.late_data_retry_seconds)
    metadata = _table_metadata(table)
    metadata.update(
        api_calls=int(sum(client.calls.values())),
        api_retries=int(sum(client.retries.values())),
        funds_without_bar_on_last_day=len(codes) - int((table["trade_date"] == pd.Timestamp(days[-1])).sum()),
    )
    yield dg.Output(table, metadata=metadata)
    yield check_result("bars_are_valid", bars_are_valid(table))
    yield check_result("universe_coverage", universe_coverage(table, codes, days), dg.AssetCheckSeverity.WARN)


def _require_history(context, days, io_manager, funds, universe, strategy, backtest) -> None:
    """Fails the run once, before any vendor call, when the history its later steps read is not stored:
    naming every missing stretch and the one command that makes them all."""
    selected = {key.to_user_string() for key in (context.run.asset_selection or [])} or set(DAILY_ASSETS)
    settings = backtest.settings()
    fingerprint = bt.fingerprint(settings, strategy.rule(), funds["ts_code"].tolist(), universe.max_funds_without_data)
    missing = missing_history(io_manager, selected, days, settings, funds, fingerprint)
    if missing:
        home = os.environ.get("DAGSTER_HOME")
        command = f"{f'DAGSTER_HOME={home} ' if home else ''}scripts/backfill {days[0]} {days[-1]}"
        raise dg.Failure(
            description=(
                f"This run reads history that is not stored: {'; '.join(missing)}. Nothing was fetched. From the repo "
                f"root, one command makes it all and then runs this range: {command}"
            ),
            allow_retries=False,
        )


@dg.asset(
    partitions_def=trading_days_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"numpy", "pandas", "parquet"},
    # Only the columns the rule reads: a decade of a large universe is millions of rows.
    ins={"etf_daily_prices": dg.AssetIn(partition_mapping=history_mapping, metadata={"columns": PRICE_INPUT_COLUMNS})},
    description=(
        "Per fund and day: close, adjustment factor, the short and long simple moving averages of the "
        "forward-adjusted close (exact, rounded half up to 3 decimals), the previous day's averages and the "
        "latest golden and death crosses, computed over a fixed window of trading days ending on the day."
    ),
)
def etf_indicators(
    context: dg.AssetExecutionContext, etf_daily_prices: pd.DataFrame, strategy: StrategyResource
) -> dg.Output[pd.DataFrame]:
    days = range_days(context)
    sessions = [to_day(k) for k in context.asset_partition_keys_for_input("etf_daily_prices")]
    params = strategy.params()
    table = compute_indicators(etf_daily_prices, sessions, days, params)
    metadata = _table_metadata(table)
    metadata.update(short=params.short, long=params.long, history_days_read=len(sessions))
    return dg.Output(table, metadata=metadata)


@dg.asset(
    partitions_def=trading_days_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    check_specs=[
        _check(
            "funds_without_data_under_threshold",
            "trade_signals",
            "Funds that trade but have no usable bar stay under the threshold on every day; the days over it "
            "are held back from publication.",
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
    table = classify(etf_indicators, funds, range_days(context), params)
    last_day = table[table["trade_date"] == table["trade_date"].max()]
    metadata = _table_metadata(table, preview=last_day)
    metadata.update({f"last_day_{s.value.lower()}": int((last_day["state"] == s.value).sum()) for s in State})
    yield dg.Output(table, metadata=metadata)
    threshold = no_data_under_threshold(table, universe.max_funds_without_data)
    yield check_result("funds_without_data_under_threshold", threshold)


@dg.asset(
    partitions_def=trading_days_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"html", "json"},
    # Only the days that pass the quality rules are materialized: when some are held back, each day
    # published is recorded on its own.
    output_required=False,
    # Read in the body, a year at a time, not as inputs: Dagster holds a step's inputs until the step ends, and a
    # decade of 1,500 funds' signals, bars and states is gigabytes that a year's reports do not need at once.
    deps=[SIGNALS_ASSET, PRICE_ASSET, BACKTEST_ASSET],
    description=(
        "The published report of each day (reports/YYYY-MM-DD.json, .txt and .html), with the backtest's "
        "summary of that day; each fund's page and chart data with the run's days added (funds/<ts_code>.html "
        "and .json), and the refreshed front page, history and rules (index.html, history.html, history.json, "
        "rules.html). Shows the portfolio's equity against holding as a chart. A "
        "day with a bar that breaks the rules of bars_are_valid, or with too many funds without data, is held "
        "back: not published, not materialized, named in the run's log and tags."
    ),
)
def signal_report(
    context: dg.AssetExecutionContext,
    io_manager: dg.ResourceParam[PartitionedParquetIOManager],
    universe: UniverseResource,
    strategy: StrategyResource,
    backtest: BacktestResource,
    prices: PriceSourceResource,
    site: SiteResource,
):
    held_back = _held_back(io_manager, context.partition_keys, universe.max_funds_without_data)
    if held_back:
        context.log.warning(f"{len(held_back)} days held back, not published: {_reasons(held_back)}")
        context.instance.add_run_tags(context.run.run_id, {HELD_BACK_TAG: _held_back_tag(held_back)})
    run_days = [day for day in context.partition_keys if day not in held_back]
    if not run_days:
        raise dg.Failure(
            description=f"Nothing published: every day is held back. {_reasons(held_back)}", allow_retries=False
        )
    params = strategy.params()
    settings = backtest.settings()
    store = site.store()
    if gap := _fund_pages_gap(store, run_days[0]):
        context.log.warning(gap)
    republished = _republish(context, io_manager, store, run_days, params, prices.notice, site.subscribe_url, settings)
    unavailable: list[str] = []

    def summaries_of(days: list[str]) -> pd.DataFrame:
        # The states' columns that the reports' summaries are computed from, not the whole states.
        return bt.report_table(io_manager.read(dg.AssetKey(BACKTEST_ASSET), days, bt.REPORT_STATE_COLUMNS), settings)

    def years() -> Iterator[Stretch]:
        # Each year read as the rendering reaches it, the one before dropped: a decade of 1,500 funds is gigabytes.
        for days in by_year(run_days):
            signals = io_manager.read(dg.AssetKey(SIGNALS_ASSET), days)
            factors = io_manager.read(dg.AssetKey(PRICE_ASSET), days, FACTOR_COLUMNS)
            summaries = summaries_of(days)
            unavailable.extend(missing := _backtest_unavailable(days, summaries, settings))
            yield signals, summaries, factors, missing
            del signals, summaries, factors

    # With every stored day's equity, which etf_backtest has written (the republished days' too).
    ledger = functools.partial(_equity_ledger, context, io_manager, settings)
    written = publish_stretches(store, run_days, years(), params, prices.notice, site.subscribe_url, ledger)
    if unavailable:
        context.log.error(f"The backtest of {', '.join(unavailable)} is unavailable: published without it")
    newest = [run_days[-1]]
    newest_summary = backtest_summaries(summaries_of(newest))
    latest = build_report(io_manager.read(dg.AssetKey(SIGNALS_ASSET), newest), params, prices.notice, newest_summary)
    metadata = {
        "days_published": len(run_days),
        "first_day": run_days[0],
        "last_day": latest["trade_date"],
        "files_written": len(written),
        "days_held_back": len(held_back),
        "days_republished": len(republished),
        "backtest_unavailable": len(unavailable),
    }
    # Dagster copies a run's metadata to each of its days: what shows the newest day goes on it alone (a decade's
    # copies of the equity chart would be 190 MB of event log, and its numbers would plot at every day).
    newest_day = {
        "latest_page": dg.MetadataValue.url(site.page_url(latest["trade_date"])),
        "latest_report": dg.MetadataValue.md(f"```\n{_head(render_text(latest), REPORT_PREVIEW_LINES)}```"),
        **_day_numbers(latest),
    }
    portfolio = store.get(fund_data_key(PORTFOLIO))
    if portfolio is not None:
        series = json.loads(portfolio)["series"]
        svg = equity_svg(series["dates"], series["strategy_equity"], series["hold_equity"])
        newest_day["portfolio_equity"] = dg.MetadataValue.md(markdown_image(svg, "portfolio equity", "image/svg+xml"))
    for day in republished:
        yield dg.AssetMaterialization(
            asset_key=context.asset_key, partition=day, metadata={"republished_by_run": context.run.run_id}
        )
    if not held_back:
        # Every day of the run: one result, whose per-day records Dagster writes in batches.
        context.add_asset_metadata(newest_day, partition_key=latest["trade_date"])
        yield dg.MaterializeResult(metadata=metadata)
        return
    metadata["held_back"] = dg.MetadataValue.json(held_back)
    for day in run_days:
        shown = newest_day if day == latest["trade_date"] else {}
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=day, metadata=metadata | shown)


def _held_back(io_manager, keys: list[str], max_funds_without_data: int) -> dict[str, str]:
    """The run's days held back (``held_back_days``, the rule the backtest reads too), a year at a time and only
    the columns the rule reads."""
    held: dict[str, str] = {}
    for days in by_year(keys):
        bars = io_manager.read(dg.AssetKey(PRICE_ASSET), days, QUALITY_COLUMNS)
        signals = io_manager.read(dg.AssetKey(SIGNALS_ASSET), days, HELD_BACK_SIGNAL_COLUMNS)
        held.update(held_back_days(bars, signals, max_funds_without_data))
    return held


def _backtest_unavailable(days: list[str], summaries: pd.DataFrame, settings) -> list[str]:
    """Of ``days``, those from the backtest's start that have no backtest figures (its step failed)."""
    have, start = set(distinct_days(summaries["trade_date"])), settings.start.isoformat()
    return [day for day in days if day >= start and day not in have]


def _republish(context, io_manager, store, run_days: list[str], params, notice, subscribe_url, settings) -> list[str]:
    """Publishes again the days outside the run whose backtest changed (listed by etf_backtest), from the stored
    signals, prices and backtest states; then clears the list."""
    listed = io_manager.store().get(REPUBLISH_KEY)
    days = sorted(set(json.loads(listed) if listed else []) - set(run_days))
    if not days:
        return []
    context.log.warning(
        f"Publishing again {len(days)} days whose backtest changed ({days[0]}...{days[-1]}): their reports' "
        "backtest summary, the fund pages' equity, the history"
    )
    signals = io_manager.read(dg.AssetKey(SIGNALS_ASSET), days)
    factors = io_manager.read(dg.AssetKey(PRICE_ASSET), days, FACTOR_COLUMNS)
    states = io_manager.read(dg.AssetKey(BACKTEST_ASSET), days, bt.REPORT_STATE_COLUMNS)
    summaries = bt.report_table(states, settings)
    ledger = _equity_ledger(context, io_manager, settings)
    publish_signals(store, signals, params, notice, subscribe_url, summaries, factors, ledger=ledger)
    io_manager.store().put(REPUBLISH_KEY, b"[]")
    return days


def _equity_ledger(context, io_manager, settings) -> pd.DataFrame:
    """The equity ledger of every stored day of the backtest. Days stored before the ledger was kept (by a
    version without it) are added from their stored states first, a year at a time, once."""
    store = io_manager.store()
    ledger = bt_ledger.read(store)
    start = settings.start.isoformat()
    stored = sorted(
        key.removeprefix(f"{BACKTEST_ASSET}/").removesuffix(".parquet")
        for key in store.keys(f"{BACKTEST_ASSET}/")
        if key.endswith(".parquet")
    )
    missing = sorted({d for d in stored if d >= start} - bt_ledger.days_held(ledger))
    if not missing:
        return ledger
    context.log.info(
        f"Adding {len(missing)} days ({missing[0]}...{missing[-1]}) to the equity ledger from their stored "
        "states: they were stored before the ledger was kept"
    )
    for year in sorted({d[:4] for d in missing}):
        days = [d for d in missing if d.startswith(year)]
        bt_ledger.write(store, [io_manager.read(dg.AssetKey(BACKTEST_ASSET), days)])
    return bt_ledger.read(store)


def _fund_pages_gap(store, first_day: str) -> str | None:
    """What to run when days were published before the site had fund pages: the pages hold only the days
    published since, until those days are published again (the same bytes for every report)."""
    before = [d for d in published_days(store) if d < first_day]
    if not before or store.keys("funds/"):
        return None
    command = backfill_command(REPORT_ASSET, [(before[0], before[-1])], upstream=False)
    return (
        f"The fund pages start with this run: the {len(before)} days published before {first_day} (from a "
        f"version without fund pages) are not in them. To add them, publish those days again: {command}"
    )


def _day_numbers(report: dict) -> dict[str, float]:
    """A day's counts of BUY and SELL and the portfolio's returns, which the UI plots over days."""
    states = [entry["state"] for entry in report["signals"]]
    numbers = {"buy_count": states.count(State.BUY), "sell_count": states.count(State.SELL)}
    if report.get("backtest"):
        portfolio = report["backtest"]["portfolio"]
        numbers["portfolio_strategy_return"] = portfolio["strategy"]["total_return"]
        numbers["portfolio_buy_and_hold_return"] = portfolio["buy_and_hold"]["total_return"]
    return numbers


signal_assets = [etf_daily_prices, etf_indicators, trade_signals, signal_report]
