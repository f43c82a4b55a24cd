"""Trading-day partitions and the history window each day's computation reads."""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import dagster as dg

from alchemy_pipeline.domain import calendar

PARTITIONS_START = "2015-01-05"
# Trading days of prices behind each day's indicators (see StrategyParams.window).
HISTORY_WINDOW = 300

_TZ = ZoneInfo(calendar.TIMEZONE)

# Weekdays at midnight Shanghai time, less the exchange's holidays. The partition for day D exists from
# D 00:00 on (end_offset=1), so the 18:00 schedule can target the same day.
trading_days = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    fmt="%Y-%m-%d",
    start=PARTITIONS_START,
    timezone=calendar.TIMEZONE,
    end_offset=1,
    exclusions=[dt.datetime(d.year, d.month, d.day, tzinfo=_TZ) for d in calendar.holidays(PARTITIONS_START)],
)

history_mapping = dg.TimeWindowPartitionMapping(
    start_offset=-(HISTORY_WINDOW - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
)


def to_day(partition_key: str) -> dt.date:
    return dt.date.fromisoformat(partition_key)


def history_keys(day: str) -> list[str]:
    """The partitions before ``day`` that its history window covers (clipped at the partitions start)."""
    end = dt.datetime.combine(to_day(day) + dt.timedelta(days=1), dt.time(), _TZ)
    keys = trading_days.get_partition_keys(current_time=end)
    if day not in keys:
        raise ValueError(f"{day} is not a trading day of the {calendar.EXCHANGE} calendar")
    i = keys.index(day)
    return keys[max(0, i - HISTORY_WINDOW + 1) : i]


@dataclass(frozen=True)
class RunPlan:
    """One run to launch: some assets over a range of trading days."""

    assets: tuple[str, ...]
    start: str
    end: str
    purpose: str


PRICE_ASSET = "etf_daily_prices"
DAILY_ASSETS = ("etf_daily_prices", "etf_indicators", "trade_signals", "signal_report")


def plan_daily_runs(day: str, materialized_prices: set[str]) -> list[RunPlan]:
    """The runs that publish ``day``: first the missing price history as one range, then the day itself."""
    window = history_keys(day)
    missing = [k for k in window if k not in materialized_prices]
    plans = []
    if missing:
        start = missing[0]
        end = window[-1]
        plans.append(RunPlan((PRICE_ASSET,), start, end, f"fetch the price history {start}...{end} that {day} needs"))
    plans.append(RunPlan(DAILY_ASSETS, day, day, f"publish the signals of {day}"))
    return plans
