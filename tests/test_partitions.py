"""Trading-day partitions of the Shanghai exchange."""

import datetime as dt
from zoneinfo import ZoneInfo

import exchange_calendars as xcals

from alchemy_pipeline.defs.partitions import HISTORY_WINDOW
from tests.conftest import BUNDLED_DAYS, history_keys

NOW = dt.datetime(2024, 12, 31, 20, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_holidays_and_weekends_are_not_partitions():
    keys = set(BUNDLED_DAYS.partitions_def.get_partition_keys(current_time=NOW))
    assert "2023-01-23" not in keys  # Spring Festival
    assert "2024-10-01" not in keys  # National Day
    assert "2024-10-05" not in keys  # a Saturday
    assert {"2023-01-30", "2024-10-08", "2015-01-05"} <= keys


def test_partitions_are_exactly_the_exchange_sessions():
    keys = BUNDLED_DAYS.partitions_def.get_partition_keys(current_time=NOW)
    sessions = xcals.get_calendar("XSHG").sessions_in_range("2015-01-05", "2024-12-31")
    assert keys == [s.strftime("%Y-%m-%d") for s in sessions]


def test_the_day_is_a_partition_by_its_evening_schedule():
    evening = dt.datetime(2024, 6, 28, 18, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert BUNDLED_DAYS.partitions_def.get_partition_keys(current_time=evening)[-1] == "2024-06-28"


def test_history_window_counts_trading_days_and_clips_at_the_start():
    window = history_keys("2024-10-08")
    assert len(window) == HISTORY_WINDOW - 1
    assert window[-1] == "2024-09-30"  # the National Day week is skipped
    assert history_keys("2015-01-07") == ["2015-01-05", "2015-01-06"]


def test_plan_asks_only_for_the_missing_history():
    window = history_keys("2024-06-28")
    full = BUNDLED_DAYS.plan_daily_runs("2024-06-28", set(window))
    assert [(p.assets[0], p.start, p.end) for p in full] == [("etf_daily_prices", "2024-06-28", "2024-06-28")]
    partial = BUNDLED_DAYS.plan_daily_runs("2024-06-28", set(window[:100]) | set(window[150:]))
    assert (partial[0].start, partial[0].end) == (window[100], window[-1])
