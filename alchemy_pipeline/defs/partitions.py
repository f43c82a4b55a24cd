"""Trading-day partitions and the history window each day's computation reads."""

import datetime as dt
import itertools
import os
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

import dagster as dg

from alchemy_pipeline.domain.market import calendar
from alchemy_pipeline.domain.signals.rule import RuleParams

FIRST_DAY = calendar.FIRST_DAY
PARTITIONS_START = FIRST_DAY.isoformat()
# Trading days of prices behind each day's indicators: the strategy's window.
HISTORY_WINDOW = RuleParams.window

_TZ = ZoneInfo(calendar.TIMEZONE)

history_mapping = dg.TimeWindowPartitionMapping(
    start_offset=-(HISTORY_WINDOW - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
)


def to_day(partition_key: str) -> dt.date:
    return dt.date.fromisoformat(partition_key)


def by_year(days: list) -> list[list]:
    """Days (dates or their keys), in order, as the calendar years they fall in: a long range's steps read and
    write a year at a time, so that a decade of a large universe is never held at once."""
    return [list(year) for _, year in itertools.groupby(days, key=lambda day: str(day)[:4])]


def range_days(context: dg.AssetExecutionContext) -> list:
    """The trading days of the run's partition range, in order."""
    keys = context.partition_keys
    if not keys:
        # The Dagster CLI checks that a range's ends are partitions, not that they are in order.
        span = context.partition_key_range
        raise dg.Failure(
            description=f"The range {span.start}...{span.end} holds no trading day: give the earlier day first",
            allow_retries=False,
        )
    return [to_day(k) for k in keys]


# What a run is for, in its tags and the run list: one day's signals, a range's, or the price history they read.
DAILY, BACKFILL, HISTORY = "daily", "backfill", "history"


@dataclass(frozen=True)
class RunPlan:
    """One run to launch: some assets over a range of trading days."""

    assets: tuple[str, ...]
    start: str
    end: str
    kind: str
    purpose: str


# Runs that write the pipeline's assets share one lane; the instance's run queue admits one at a time
# and in priority order, so a cold start's history run finishes before the day's run reads it.
LANE_TAG = "alchemy/lane"
LANE = "signals"
PRIORITY_TAG = "dagster/priority"
# What a run is for (daily, backfill, history) and who asked for it (schedule, analyst): the run list shows both.
RUN_KIND_TAG = "alchemy/run"
STARTED_BY_TAG = "alchemy/started_by"

PRICE_ASSET = "etf_daily_prices"
INDICATOR_ASSET = "etf_indicators"
SIGNALS_ASSET = "trade_signals"
BACKTEST_ASSET = "etf_backtest"
REPORT_ASSET = "signal_report"
DAILY_ASSETS = (PRICE_ASSET, INDICATOR_ASSET, SIGNALS_ASSET, BACKTEST_ASSET, REPORT_ASSET)
# What the planner needs to know exists.
PLANNED_ASSETS = (PRICE_ASSET, SIGNALS_ASSET)
# A day is published from 18:00 Shanghai time, after the close and the vendor's update.
CLOSE_HOUR = 18


def materialized_partitions(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    """The partitions of the assets a plan looks for that exist on ``instance``."""
    return {asset: instance.get_materialized_partitions(dg.AssetKey(asset)) for asset in PLANNED_ASSETS}


def plan_tags(plan: RunPlan, started_by: str) -> dict[str, str]:
    """The tags of a planned run: its range, its lane, and what it is for."""
    return {
        "dagster/asset_partition_range_start": plan.start,
        "dagster/asset_partition_range_end": plan.end,
        LANE_TAG: LANE,
        RUN_KIND_TAG: plan.kind,
        STARTED_BY_TAG: started_by,
        "alchemy/purpose": plan.purpose,
    }


def contiguous_ranges(keys: list[str], all_keys: list[str]) -> list[tuple[str, str]]:
    """Groups ``keys`` (a subset of the ordered ``all_keys``) into runs of consecutive partitions."""
    position = {k: i for i, k in enumerate(all_keys)}
    ranges: list[list[str]] = []
    for key in keys:
        if ranges and position[key] == position[ranges[-1][1]] + 1:
            ranges[-1][1] = key
        else:
            ranges.append([key, key])
    return [(a, b) for a, b in ranges]


def backfill_command(asset: str, ranges: list[tuple[str, str]], upstream: bool = True) -> str:
    """The ``dg`` commands that materialize these stretches of an asset (and, ``upstream``, the assets it is
    computed from), to paste at the repo root: with the instance of this run (DAGSTER_HOME) and the
    project's own ``dg``."""
    home = os.environ.get("DAGSTER_HOME")
    prefix = f"DAGSTER_HOME={home} " if home else ""
    select = f"'*{asset}'" if upstream else asset
    return "; ".join(f"{prefix}.venv/bin/dg launch --assets {select} --partition-range {a}...{b}" for a, b in ranges)


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

    def latest_closed_day(self, now: dt.datetime) -> dt.date:
        """The latest trading day whose evening (``CLOSE_HOUR`` in Shanghai) has passed, as far as the calendar
        knows trading days."""
        local = now.astimezone(_TZ)
        today = local.date() if local.hour >= CLOSE_HOUR else local.date() - dt.timedelta(days=1)
        return self.calendar.latest_trading_day(min(today, self.calendar.known_until))

    def check_day(self, day: dt.date, now: dt.datetime) -> None:
        """Refuses a day no run can publish, naming it and the fix (a ``DayError``)."""
        if day < FIRST_DAY:
            raise calendar.DayError(
                f"{day} is before {PARTITIONS_START}, the first day Alchemy covers: "
                f"pick a day from {PARTITIONS_START} on"
            )
        latest = self.latest_closed_day(now)
        if day > latest:
            raise calendar.DayError(
                f"{day} has not closed yet: the latest trading day published by now is {latest} (a day is "
                f"published from {CLOSE_HOUR}:00 Shanghai time)"
            )
        if not self.calendar.is_trading_day(day):
            raise calendar.DayError(self.calendar.why_closed(day))

    def check_range(self, start: dt.date, end: dt.date, now: dt.datetime) -> None:
        """Refuses a range no run can publish: ends that are not trading days closed by now, or reversed."""
        self.check_day(start, now)
        self.check_day(end, now)
        if end < start:
            raise calendar.DayError(f"the range ends on {end}, before it starts on {start}: give the earlier day first")

    def keys_between(self, first: dt.date, before: str) -> list[str]:
        """The trading days from ``first`` (on or after the partitions start) up to the day before ``before``."""
        since = max(first, FIRST_DAY)
        return [d.isoformat() for d in self.calendar.sessions(since, to_day(before)) if d.isoformat() < before]

    def plan_runs(
        self, start: str, end: str, materialized: dict[str, set[str]], kind: str, backtest_start: dt.date
    ) -> list[RunPlan]:
        """The runs that publish ``start``...``end``: first each missing stretch of the price history, then of
        the signals the backtest reads from ``backtest_start`` on, then the range itself. ``materialized`` holds
        the partitions of the prices and of the signals that exist. No day is fetched or computed twice."""
        signal_days = self.keys_between(backtest_start, start)
        # The prices behind the first of those signals (or behind ``start``), and every day after.
        first = signal_days[0] if signal_days else start
        price_days = [*self.history_keys(first), *signal_days]
        plans = [
            RunPlan((PRICE_ASSET,), a, b, HISTORY, f"fetch the price history {a}...{b} that {start} needs")
            for a, b in contiguous_ranges([k for k in price_days if k not in materialized[PRICE_ASSET]], price_days)
        ]
        missing_signals = [k for k in signal_days if k not in materialized[SIGNALS_ASSET]]
        plans += [
            RunPlan(
                (INDICATOR_ASSET, SIGNALS_ASSET), a, b, HISTORY, f"compute the signals {a}...{b} the backtest reads"
            )
            for a, b in contiguous_ranges(missing_signals, signal_days)
        ]
        span = start if start == end else f"{start}...{end}"
        plans.append(RunPlan(DAILY_ASSETS, start, end, kind, f"publish the signals of {span}"))
        return plans
