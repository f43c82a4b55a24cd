"""Trading-day partitions of the Shanghai exchange."""

import datetime as dt
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pytest

from alchemy_pipeline.defs.partitions import DAILY_ASSETS, HISTORY_WINDOW
from alchemy_pipeline.domain.market.calendar import DayError, parse_day
from tests.conftest import BUNDLED_DAYS, history_keys

PRICES, SIGNALS = "etf_daily_prices", "trade_signals"

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


def test_plan_asks_only_for_the_missing_history_each_stretch_once():
    window = history_keys("2024-06-28")
    day = dt.date(2024, 6, 28)
    full = BUNDLED_DAYS.plan_runs("2024-06-28", "2024-06-28", {PRICES: set(window), SIGNALS: set()}, "daily", day)
    assert [(p.assets[0], p.start, p.end, p.kind) for p in full] == [
        ("etf_daily_prices", "2024-06-28", "2024-06-28", "daily")
    ]
    history = history_keys("2024-06-03")
    present = set(history) - set(history[10:20]) - set(history[200:205])
    plans = BUNDLED_DAYS.plan_runs(
        "2024-06-03", "2024-06-28", {PRICES: present, SIGNALS: set()}, "backfill", dt.date(2024, 6, 3)
    )
    assert [(p.assets, p.start, p.end, p.kind) for p in plans] == [
        (("etf_daily_prices",), history[10], history[19], "history"),
        (("etf_daily_prices",), history[200], history[204], "history"),
        (DAILY_ASSETS, "2024-06-03", "2024-06-28", "backfill"),
    ]


def test_plan_computes_the_signals_the_backtest_reads_from_its_start():
    # A backtest from 2024-01-02 publishing 2024-06-28 reads every signal from 2024-01-02: on a fresh instance
    # the prices behind the first of them come first, then those signals, then the day.
    start = dt.date(2024, 1, 2)
    plans = BUNDLED_DAYS.plan_runs("2024-06-28", "2024-06-28", {PRICES: set(), SIGNALS: set()}, "daily", start)
    window = history_keys("2024-01-02")
    assert [(p.assets, p.start, p.end, p.kind) for p in plans] == [
        (("etf_daily_prices",), window[0], "2024-06-27", "history"),
        (("etf_indicators", "trade_signals"), "2024-01-02", "2024-06-27", "history"),
        (DAILY_ASSETS, "2024-06-28", "2024-06-28", "daily"),
    ]
    # Only what is missing: the signals of one week in March.
    present = {k for k in history_keys("2024-06-28") if not "2024-03-11" <= k <= "2024-03-15"}
    prices = {*window, *history_keys("2024-06-28")}
    plans = BUNDLED_DAYS.plan_runs("2024-06-28", "2024-06-28", {PRICES: prices, SIGNALS: present}, "daily", start)
    assert [(p.assets, p.start, p.end) for p in plans] == [
        (("etf_indicators", "trade_signals"), "2024-03-11", "2024-03-15"),
        (DAILY_ASSETS, "2024-06-28", "2024-06-28"),
    ]


NOON = dt.datetime(2024, 7, 1, 12, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_days_no_run_can_publish_are_refused_with_the_reason_and_the_fix():
    def refusal(start, end=None):
        with pytest.raises(DayError) as refused:
            if end is None:
                BUNDLED_DAYS.check_day(dt.date.fromisoformat(start), NOON)
            else:
                BUNDLED_DAYS.check_range(dt.date.fromisoformat(start), dt.date.fromisoformat(end), NOON)
        return str(refused.value)

    assert "before 2015-01-05" in refusal("2014-06-03")
    # At noon on Monday 2024-07-01 the latest closed day is Friday 2024-06-28.
    assert refusal("2024-07-01") == (
        "2024-07-01 has not closed yet: the latest trading day published by now is 2024-06-28 (a day is published "
        "from 18:00 Shanghai time)"
    )
    assert refusal("2024-06-08") == (
        "2024-06-08 is a Saturday, not a trading day: the nearest trading days are 2024-06-07 and 2024-06-11"
    )
    assert refusal("2024-06-10").startswith("2024-06-10 is a holiday of the Shanghai exchange (a Monday)")
    assert "before it starts on 2024-06-28" in refusal("2024-06-28", "2024-06-20")
    BUNDLED_DAYS.check_range(dt.date(2024, 6, 3), dt.date(2024, 6, 28), NOON)
    with pytest.raises(DayError, match="'2024-13-01' is not a date: write it as YYYY-MM-DD"):
        parse_day("2024-13-01")
