"""The Shanghai exchange's trading days, from exchange-calendars' XSHG calendar."""

from __future__ import annotations

import datetime as dt
from functools import cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

EXCHANGE = "XSHG"
TIMEZONE = "Asia/Shanghai"
# The calendar is built from a little before the partitions start so that look-ups near the start work.
CALENDAR_START = "2014-01-02"


@cache
def _calendar() -> xcals.ExchangeCalendar:
    return xcals.get_calendar(EXCHANGE, start=CALENDAR_START)


def last_known_day() -> dt.date:
    """The last day the bundled calendar knows holidays for."""
    return _calendar().last_session.date()


def sessions(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Trading days from start to end, both included (clipped to what the calendar knows)."""
    cal = _calendar()
    lo = max(pd.Timestamp(start), cal.first_session)
    hi = min(pd.Timestamp(end), cal.last_session)
    if lo > hi:
        return []
    return [ts.date() for ts in cal.sessions_in_range(lo, hi)]


def holidays(start: dt.date | str) -> list[dt.date]:
    """Weekdays from start to the calendar's end on which the exchange is closed."""
    cal = _calendar()
    weekdays = pd.bdate_range(pd.Timestamp(start), cal.last_session)
    return [ts.date() for ts in weekdays.difference(cal.sessions)]


def is_trading_day(day: dt.date) -> bool:
    return _calendar().is_session(pd.Timestamp(day))


def latest_trading_day(on_or_before: dt.date) -> dt.date:
    """The last trading day on or before the given day."""
    return _calendar().date_to_session(pd.Timestamp(on_or_before), direction="previous").date()


def exchange_today() -> dt.date:
    """Today's date in Shanghai."""
    return dt.datetime.now(ZoneInfo(TIMEZONE)).date()
