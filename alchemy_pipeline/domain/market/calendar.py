"""The Shanghai exchange's trading days.

exchange-calendars' XSHG calendar is the authority as far as it knows holidays (a release covers about
the current year). Past that, Tushare's ``trade_cal`` for SSE, fetched and cached by the pipeline, extends
it for as long as it runs without a gap. Past what either knows, no day is called a trading day: a
holiday would look like one.
"""

from __future__ import annotations

import datetime as dt
import io
from functools import cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from alchemy_pipeline.domain.market.tushare_api import TushareClient

EXCHANGE = "XSHG"
TUSHARE_EXCHANGE = "SSE"
TIMEZONE = "Asia/Shanghai"
# The daily run's hour (Shanghai), after the close and the vendor's publication of the day.
PUBLISH_HOUR = 18
# By this hour (Shanghai) a trading day is published, or the operator is told: after the late-data retries'
# last try (the defaults: 8 tries 30 minutes apart from about 18:00) and its run.
DEADLINE_HOUR = 23
# The calendar is built from a little before the partitions start so that look-ups near the start work.
CALENDAR_START = "2014-01-02"
# The first trading day Alchemy covers: its partitions start here.
FIRST_DAY = dt.date(2015, 1, 5)
TRADE_CAL_FIELDS = ["exchange", "cal_date", "is_open", "pretrade_date"]
# Tushare's trade_cal past the bundled calendar's horizon, kept with the pipeline's data.
TRADE_CAL_CACHE_KEY = "reference/trade_cal_SSE.csv"


class CalendarError(ValueError):
    """A trading-calendar question the known calendar cannot answer, or a calendar table that is unusable."""


class DayError(ValueError):
    """A day or a range of days given by a person that cannot be run; the message names it and the fix."""


def parse_day(text: str) -> dt.date:
    """A YYYY-MM-DD date, or a DayError naming the text."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise DayError(f"{text!r} is not a date: write it as YYYY-MM-DD, for example 2024-06-28") from None


@cache
def _bundled() -> xcals.ExchangeCalendar:
    return xcals.get_calendar(EXCHANGE, start=CALENDAR_START)


def bundled_last_day() -> dt.date:
    """The last day the installed exchange-calendars release knows holidays for."""
    return _bundled().last_session.date()


def parse_trade_cal(table: pd.DataFrame) -> pd.Series:
    """Tushare ``trade_cal`` rows as an open/closed flag per calendar day, sorted; names what is wrong."""
    missing = [c for c in ("cal_date", "is_open") if c not in table.columns]
    if missing:
        raise CalendarError(f"trade_cal table lacks columns {missing}")
    if "exchange" in table.columns:
        others = sorted(set(table["exchange"].dropna().astype(str)) - {TUSHARE_EXCHANGE})
        if others:
            raise CalendarError(f"trade_cal table holds exchanges {others}, not only {TUSHARE_EXCHANGE}")
    days = pd.to_datetime(table["cal_date"].astype(str), format="%Y%m%d", errors="coerce")
    if days.isna().any():
        bad = table.loc[days.isna(), "cal_date"].astype(str).tolist()[:5]
        raise CalendarError(f"trade_cal cal_date values are not YYYYMMDD dates: {bad}")
    flags = pd.to_numeric(table["is_open"], errors="coerce")
    if not flags.isin([0, 1]).all():
        bad = table.loc[~flags.isin([0, 1]), "is_open"].tolist()[:5]
        raise CalendarError(f"trade_cal is_open values must be 0 or 1, got {bad}")
    if days.duplicated().any():
        raise CalendarError(f"trade_cal lists {days[days.duplicated()].iloc[0].date()} twice")
    return pd.Series(flags.astype(bool).to_numpy(), index=pd.DatetimeIndex(days)).sort_index()


def fetch_trade_cal(client: TushareClient, start: dt.date, end: dt.date) -> pd.DataFrame:
    """SSE's calendar days from start to end as Tushare knows them (it lists a year once the exchange
    announces its holidays), oldest first and checked."""
    table = client.query_all(
        "trade_cal",
        TRADE_CAL_FIELDS,
        exchange=TUSHARE_EXCHANGE,
        start_date=start.strftime("%Y%m%d"),
        end_date=end.strftime("%Y%m%d"),
    )
    table = table.assign(cal_date=table["cal_date"].astype(str)).sort_values("cal_date", ignore_index=True)
    parse_trade_cal(table)
    return table


class TradingCalendar:
    """Trading days: the bundled calendar up to its last day, then ``trade_cal`` rows for the days after it
    for as long as they run day by day without a gap."""

    def __init__(self, trade_cal: pd.DataFrame | None = None):
        bundled = _bundled()
        sessions = bundled.sessions
        known_until = bundled.last_session
        if trade_cal is not None and len(trade_cal):
            flags = parse_trade_cal(trade_cal)
            later = flags[flags.index > known_until]
            expected = pd.date_range(known_until + pd.Timedelta(days=1), periods=len(later), freq="D")
            gaps = np.flatnonzero(later.index != expected)
            later = later.iloc[: gaps[0] if len(gaps) else len(later)]
            if len(later):
                sessions = sessions.append(later.index[later.to_numpy()])
                known_until = later.index[-1]
        self._sessions = pd.DatetimeIndex(sessions)
        self.known_until: dt.date = known_until.date()
        self.bundled_until: dt.date = bundled.last_session.date()

    @property
    def source(self) -> str:
        if self.known_until > self.bundled_until:
            return f"exchange-calendars {EXCHANGE} to {self.bundled_until}, Tushare trade_cal to {self.known_until}"
        return f"exchange-calendars {EXCHANGE}"

    def knows(self, day: dt.date) -> bool:
        return day <= self.known_until

    def _require_known(self, day: dt.date) -> None:
        if not self.knows(day):
            raise CalendarError(
                f"{day} is past {self.known_until}, the last day the trading calendar knows ({self.source}); "
                "refresh it by materializing the trading_calendar asset (Tushare trade_cal) or upgrade "
                "exchange-calendars"
            )

    def sessions(self, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
        """Trading days from start to end, both included (clipped to what the calendar knows)."""
        lo = max(pd.Timestamp(start), self._sessions[0])
        hi = min(pd.Timestamp(end), pd.Timestamp(self.known_until))
        chosen = self._sessions[(self._sessions >= lo) & (self._sessions <= hi)]
        return [ts.date() for ts in chosen]

    def holidays(self, start: dt.date | str) -> list[dt.date]:
        """Weekdays from start to the last known day on which the exchange is closed."""
        weekdays = pd.bdate_range(pd.Timestamp(start), pd.Timestamp(self.known_until))
        return [ts.date() for ts in weekdays.difference(self._sessions)]

    def is_trading_day(self, day: dt.date) -> bool:
        self._require_known(day)
        return pd.Timestamp(day) in self._sessions

    def next_trading_day(self, after: dt.date) -> dt.date | None:
        """The first trading day after the given day, if the calendar knows it."""
        i = self._sessions.searchsorted(pd.Timestamp(after), side="right")
        return self._sessions[i].date() if i < len(self._sessions) else None

    def why_closed(self, day: dt.date) -> str:
        """Why a known day that is not a trading day is closed, with the trading days around it."""
        before = self._sessions.searchsorted(pd.Timestamp(day), side="left")
        around = [self._sessions[before - 1].date() if before else None, self.next_trading_day(day)]
        nearest = " and ".join(str(d) for d in around if d is not None)
        closed = f"a {day:%A}" if day.weekday() >= 5 else f"a holiday of the Shanghai exchange (a {day:%A})"
        return f"{day} is {closed}, not a trading day: the nearest trading days are {nearest}"

    def latest_trading_day(self, on_or_before: dt.date) -> dt.date:
        """The last trading day on or before the given day."""
        self._require_known(on_or_before)
        i = self._sessions.searchsorted(pd.Timestamp(on_or_before), side="right")
        if i == 0:
            raise CalendarError(f"no trading day on or before {on_or_before} in the calendar")
        return self._sessions[i - 1].date()


def cached_calendar(raw: bytes | None, where: str) -> TradingCalendar:
    """The bundled calendar extended by a cached trade_cal (``raw``; None: nothing cached yet). A cache that
    cannot be read is a CalendarError naming ``where`` and the fix, never a silent fallback."""
    if raw is None:
        return TradingCalendar()
    try:
        return TradingCalendar(pd.read_csv(io.BytesIO(raw), dtype=str))
    except ValueError as exc:  # pandas' parse errors and CalendarError are ValueErrors
        raise CalendarError(
            f"the cached trading calendar {where} is unusable ({exc}): delete it (the bundled calendar then "
            f"serves, to {bundled_last_day()}) and materialize the trading_calendar asset to fetch it again"
        ) from None


def exchange_today() -> dt.date:
    """Today's date in Shanghai."""
    return dt.datetime.now(ZoneInfo(TIMEZONE)).date()
