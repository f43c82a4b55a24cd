"""The trading calendar past the bundled one's horizon: Tushare's trade_cal, fetched ahead and cached."""

import datetime as dt

import dagster as dg
import pandas as pd

from alchemy_pipeline.defs.automation import exchange_schedule
from alchemy_pipeline.defs.checks import check_result
from alchemy_pipeline.defs.resources import PriceSourceResource, TradingCalendarResource
from alchemy_pipeline.domain.market import calendar
from alchemy_pipeline.domain.market.quality import HORIZON_WARN_DAYS, calendar_horizon
from alchemy_pipeline.domain.market.tushare_api import VendorAuthError

CALENDAR_ASSET = "trading_calendar"


@dg.asset(
    name=CALENDAR_ASSET,
    group_name="reference_data",
    kinds={"tushare", "csv"},
    description=(
        f"SSE's open and closed days after the last day the bundled exchange-calendars {calendar.EXCHANGE} "
        "release knows, from Tushare trade_cal up to the end of next year (as far as Tushare lists them), "
        "cached with the pipeline's data. The trading-day partitions and the daily schedule use it past the "
        "bundled calendar's horizon."
    ),
    # A property of the calendar, not of any day's prices: checked here, where the refresh happens (its
    # schedule materializes this asset daily from 60 days ahead, and on its next tick if the cache is
    # unusable, replacing it), rather than once per trading day of every backfill.
    check_specs=[
        dg.AssetCheckSpec(
            "calendar_horizon",
            asset=CALENDAR_ASSET,
            description=f"Warns {HORIZON_WARN_DAYS} days before the trading calendar runs out of known holidays.",
        )
    ],
)
def trading_calendar(
    context: dg.AssetExecutionContext, prices: PriceSourceResource, calendar_cache: TradingCalendarResource
) -> dg.MaterializeResult:
    start = calendar.bundled_last_day() + dt.timedelta(days=1)
    end = dt.date(calendar.exchange_today().year + 1, 12, 31)
    client = prices.client([])
    try:
        fetched = calendar.fetch_trade_cal(client, start, end)
    except VendorAuthError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except calendar.CalendarError as exc:
        raise dg.Failure(description=f"Tushare trade_cal answered an unusable calendar: {exc}") from None
    refreshed = calendar.TradingCalendar(fetched)
    cached = calendar_cache.load()
    if refreshed.known_until < cached.known_until:
        # A shorter answer than what is cached (a vendor hiccup) must not make known days unknown again.
        context.log.warning(
            f"Tushare trade_cal now runs only to {refreshed.known_until}; the cache, to {cached.known_until}, is kept"
        )
        kept = cached
    else:
        calendar_cache.save(fetched)
        kept = refreshed
    added = kept.holidays(start)  # start is the day after the bundled calendar's last
    horizon = calendar_horizon(kept.known_until, calendar.exchange_today())
    return dg.MaterializeResult(
        check_results=[check_result("calendar_horizon", horizon, dg.AssetCheckSeverity.WARN)],
        metadata={
            "known_until": kept.known_until.isoformat(),
            "source": kept.source,
            "dagster/row_count": len(fetched),
            "api_calls": int(sum(client.calls.values())),
            "holidays_past_bundled_calendar": dg.MetadataValue.md(
                pd.DataFrame({"holiday": [d.isoformat() for d in added]}).to_markdown(index=False)
                if added
                else "none known yet"
            ),
        },
    )


trading_calendar_job = dg.define_asset_job(
    name="trading_calendar_job",
    selection=[CALENDAR_ASSET],
    description="Fetches Tushare's trade_cal past the bundled exchange calendar and caches it.",
)


def build_calendar_schedule(running: bool) -> dg.ScheduleDefinition:
    @exchange_schedule(
        "0 8 * * *",
        trading_calendar_job,
        running,
        f"08:00 Asia/Shanghai: refreshes the trading calendar once it knows fewer than {HORIZON_WARN_DAYS} "
        "days ahead (one Tushare call a day until Tushare lists the exchange's next year); otherwise skips.",
    )
    def trading_calendar_schedule(context: dg.ScheduleEvaluationContext, calendar_cache: TradingCalendarResource):
        known = calendar_cache.load()
        today = context.scheduled_execution_time.date()
        left = (known.known_until - today).days
        if left > HORIZON_WARN_DAYS:
            return dg.SkipReason(f"the trading calendar knows {left} days ahead, to {known.known_until}")
        return dg.RunRequest(run_key=f"{CALENDAR_ASSET}:{today}")

    return trading_calendar_schedule
