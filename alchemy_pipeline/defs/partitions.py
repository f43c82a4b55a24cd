"""Trading-day partitions and the history window each day's computation reads."""

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

import dagster as dg

from alchemy_pipeline.domain import calendar

PARTITIONS_START = "2015-01-05"
# Trading days of prices behind each day's indicators (see StrategyParams.window).
HISTORY_WINDOW = 300

_TZ = ZoneInfo(calendar.TIMEZONE)

history_mapping = dg.TimeWindowPartitionMapping(
    start_offset=-(HISTORY_WINDOW - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
)


def to_day(partition_key: str) -> dt.date:
    return dt.date.fromisoformat(partition_key)


@dataclass(frozen=True)
class RunPlan:
    """One run to launch: some assets over a range of trading days."""

    assets: tuple[str, ...]
    start: str
    end: str
    purpose: str


PRICE_ASSET = "etf_daily_prices"
REPORT_ASSET = "signal_report"
DAILY_ASSETS = (PRICE_ASSET, "etf_indicators", "trade_signals", REPORT_ASSET)


class TradingDays:
    """The trading-day partitions of one trading calendar, and the history window each day reads."""

    def __init__(self, trading_calendar: calendar.TradingCalendar):
        self.calendar = trading_calendar

    @cached_property
    def partitions_def(self) -> dg.TimeWindowPartitionsDefinition:
        # Weekdays at midnight Shanghai time, less the exchange's holidays. The partition for day D exists
        # from D 00:00 on (end_offset=1), so the 18:00 schedule can target the same day. Built on first use:
        # a schedule tick plans runs from the calendar alone.
        return dg.TimeWindowPartitionsDefinition(
            cron_schedule="0 0 * * 1-5",
            fmt="%Y-%m-%d",
            start=PARTITIONS_START,
            timezone=calendar.TIMEZONE,
            end_offset=1,
            exclusions=[
                dt.datetime(d.year, d.month, d.day, tzinfo=_TZ) for d in self.calendar.holidays(PARTITIONS_START)
            ],
        )

    def history_keys(self, day: str) -> list[str]:
        """The trading days before ``day`` that its history window covers (clipped at the partitions start)."""
        if not self.calendar.is_trading_day(to_day(day)):
            raise ValueError(f"{day} is not a trading day of the {calendar.EXCHANGE} calendar")
        keys = [d.isoformat() for d in self.calendar.sessions(PARTITIONS_START, to_day(day))]
        return keys[-HISTORY_WINDOW:-1]

    def plan_daily_runs(self, day: str, materialized_prices: set[str]) -> list[RunPlan]:
        """The runs that publish ``day``: first the missing price history as one range, then the day itself."""
        window = self.history_keys(day)
        missing = [k for k in window if k not in materialized_prices]
        plans = []
        if missing:
            start = missing[0]
            end = window[-1]
            plans.append(
                RunPlan((PRICE_ASSET,), start, end, f"fetch the price history {start}...{end} that {day} needs")
            )
        plans.append(RunPlan(DAILY_ASSETS, day, day, f"publish the signals of {day}"))
        return plans
