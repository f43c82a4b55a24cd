"""The trading calendar past the bundled exchange-calendars horizon, from Tushare's trade_cal (cached).

The 2027 calendar served here is invented for the tests (weekends plus a few closed weekdays); the
real one is whatever SSE announces. It goes through the real tushare SDK over HTTP to the test server.
"""

import datetime as dt
import json
import subprocess
import sys
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.defs.partitions import HISTORY_WINDOW, TradingDays
from alchemy_pipeline.domain.market import calendar
from alchemy_pipeline.domain.market.calendar import TRADE_CAL_CACHE_KEY, CalendarError, TradingCalendar
from alchemy_pipeline.settings import load_settings
from tests.conftest import tick_schedule, use_env, vendor_tables, write_universe
from tests.tushare_server import VALID_TOKEN

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLOSED_2027 = {dt.date(2027, 1, 1), *(dt.date(2027, 2, d) for d in range(8, 13)), dt.date(2027, 5, 3)}
FUNDS = {"510300.SH": "沪深300ETF", "510500.SH": "中证500ETF", "159915.SZ": "创业板ETF"}


def trade_cal(start: dt.date, end: dt.date, closed: set[dt.date] = CLOSED_2027) -> pd.DataFrame:
    """Tushare-format trade_cal rows: every calendar day, open on weekdays that are not ``closed``."""
    days = pd.date_range(start, end, freq="D")
    is_open = [int(d.weekday() < 5 and d.date() not in closed) for d in days]
    opened = [d for d, o in zip(days, is_open, strict=True) if o]
    previous = [max((o for o in opened if o < d), default=None) for d in days]
    return pd.DataFrame(
        {
            "exchange": "SSE",
            "cal_date": days.strftime("%Y%m%d"),
            "is_open": is_open,
            "pretrade_date": [p.strftime("%Y%m%d") if p is not None else None for p in previous],
        }
    )


HORIZON = calendar.bundled_last_day()
AFTER = HORIZON + dt.timedelta(days=1)


def test_trade_cal_extends_the_bundled_calendar_with_its_holidays():
    extended = TradingCalendar(trade_cal(AFTER, dt.date(2027, 12, 31)))
    assert extended.known_until == dt.date(2027, 12, 31)
    assert not extended.is_trading_day(dt.date(2027, 2, 9))  # a closed weekday of the served calendar
    assert extended.is_trading_day(dt.date(2027, 1, 4))
    assert extended.latest_trading_day(dt.date(2027, 2, 12)) == dt.date(2027, 2, 5)
    assert set(extended.holidays("2027-01-01")) >= CLOSED_2027
    # The bundled calendar stays the authority as far as it knows.
    assert extended.sessions("2024-09-27", "2024-10-09") == TradingCalendar().sessions("2024-09-27", "2024-10-09")


def test_a_gap_in_trade_cal_ends_what_is_known():
    rows = trade_cal(AFTER, dt.date(2027, 6, 30))
    gapped = rows[rows["cal_date"] != "20270315"]
    assert TradingCalendar(gapped).known_until == dt.date(2027, 3, 14)


def test_days_past_what_is_known_are_refused_not_guessed():
    bundled = TradingCalendar()
    with pytest.raises(CalendarError, match=f"past {HORIZON}.*trading_calendar"):
        bundled.is_trading_day(AFTER + dt.timedelta(days=3))
    assert bundled.sessions(HORIZON - dt.timedelta(days=10), "2027-12-31")[-1] <= HORIZON


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"is_open": 2}, "is_open values must be 0 or 1"),
        ({"cal_date": "2027-01-04"}, "not YYYYMMDD"),
        ({"exchange": "SZSE"}, "not only SSE"),
    ],
)
def test_an_unusable_trade_cal_is_named(change, message):
    rows = trade_cal(AFTER, dt.date(2027, 1, 31))
    column, value = next(iter(change.items()))
    rows.loc[3, column] = value
    with pytest.raises(CalendarError, match=message):
        TradingCalendar(rows)


def test_a_duplicated_day_is_named():
    rows = trade_cal(AFTER, dt.date(2027, 1, 31))
    with pytest.raises(CalendarError, match="twice"):
        TradingCalendar(pd.concat([rows, rows.iloc[[5]]]))


def test_the_partitions_leave_out_trade_cal_holidays():
    days = TradingDays(TradingCalendar(trade_cal(AFTER, dt.date(2027, 12, 31))))
    keys = days.partitions_def.get_partition_keys(current_time=dt.datetime(2027, 3, 1, tzinfo=SHANGHAI))
    known = [k for k in keys if k > HORIZON.isoformat()]
    assert not {d.isoformat() for d in CLOSED_2027} & set(known)
    assert known[:3] == ["2027-01-04", "2027-01-05", "2027-01-06"]
    assert days.history_keys("2027-02-15")[-1] == "2027-02-05"


@pytest.fixture
def world(tmp_path, tushare_server_factory, monkeypatch):
    """A server with real-format prices to the end of 2026 plus two 2027 days, and the 2027 calendar."""
    tables = vendor_tables(list(FUNDS), "2025-06-02", HORIZON.isoformat())
    last = tables["fund_daily"]["trade_date"].max()
    extra = {
        name: pd.concat([table[table["trade_date"] == last].assign(trade_date=day) for day in ("20270105", "20270104")])
        for name, table in tables.items()
    }
    tables = {name: pd.concat([extra[name], table], ignore_index=True) for name, table in tables.items()}
    served_cal = pd.concat(
        [trade_cal(HORIZON - dt.timedelta(days=30), HORIZON), trade_cal(AFTER, dt.date(2027, 12, 31))]
    )
    server = tushare_server_factory({**tables, "trade_cal": served_cal})
    use_env(
        monkeypatch,
        {
            "ALCHEMY_DATA_DIR": str(tmp_path / "data"),
            "ALCHEMY_PUBLISH_DIR": str(tmp_path / "site"),
            "ALCHEMY_UNIVERSE": str(write_universe(tmp_path / "universe.csv", FUNDS)),
            "ALCHEMY_PRICE_SOURCE": "tushare",
            # The last day of the bundled calendar: a 2027 day's backtest then needs a few days of signals.
            "ALCHEMY_BACKTEST_START": "2026-12-31",
            "TUSHARE_TOKEN": VALID_TOKEN,
            "TUSHARE_API_URL": server.url,
            "TUSHARE_RETRY_BASE_SECONDS": "0.01",
        },
    )
    with dg.instance_for_test() as instance:
        yield {"server": server, "instance": instance, "tmp": tmp_path}


# Scripts run in a fresh process with the test's environment: the code location partitions by the calendar
# cached when it loads, as every run's load does. Each prints one JSON object.
PARTITIONS_OF_2027 = """
import datetime as dt, json
from alchemy_pipeline.definitions import defs
keys = defs.resolve_job_def("notify_subscribers").partitions_def.get_partition_keys(
    current_time=dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)
)
print(json.dumps({day: day in keys for day in ("2027-02-09", "2027-02-15")}))
"""
# The clock is the one thing that cannot run here: Dagster's is frozen at the evening of 2027-01-05 so that
# the day is a partition already (the schedule's tick and the runs are real).
PUBLISH_2027_01_05 = """
import datetime as dt, json
from zoneinfo import ZoneInfo
import dagster as dg
from dagster._core.test_utils import freeze_time
from alchemy_pipeline.definitions import defs

evening = dt.datetime(2027, 1, 5, 18, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
with dg.instance_for_test() as instance, freeze_time(evening):
    schedule = defs.resolve_schedule_def("daily_signals_schedule")
    context = dict(instance=instance, scheduled_execution_time=evening, resources=defs.resources)
    with dg.build_schedule_context(**context) as ctx:
        requests = schedule.evaluate_tick(ctx).run_requests
    job = defs.resolve_job_def("daily_signals_job")
    for request in sorted(requests, key=lambda r: -int(r.tags["dagster/priority"])):
        result = job.execute_in_process(instance=instance, asset_selection=request.asset_selection,
                                        tags=dict(request.tags), raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
    event = instance.get_latest_materialization_event(dg.AssetKey("etf_indicators")).asset_materialization
    print(json.dumps({"history_days_read": event.metadata["history_days_read"].value}))
"""


def in_a_fresh_process(script: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def materialize_calendar(defs, instance) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def("trading_calendar_job").execute_in_process(instance=instance)
    assert result.success
    return result


def test_the_calendar_asset_caches_trade_cal_and_the_next_load_uses_it(world):
    instance, server = world["instance"], world["server"]
    defs = build_definitions(load_settings())
    # Today (2026-11-27) is within 60 days of the bundled horizon: the refresh schedule asks for a run.
    morning = dt.datetime(2026, 11, 27, 8, tzinfo=SHANGHAI)
    assert tick_schedule(defs, instance, "trading_calendar_schedule", morning).run_requests
    # Until then, the day after the horizon is refused, naming the fix.
    first_day = dt.datetime(2027, 1, 4, 18, tzinfo=SHANGHAI)
    refused = tick_schedule(defs, instance, "daily_signals_schedule", first_day)
    assert not refused.run_requests and "trading_calendar" in refused.skip_message

    result = materialize_calendar(defs, instance)
    call = server.calls_to("trade_cal")[0]["params"]
    assert call["exchange"] == "SSE" and call["start_date"] == AFTER.strftime("%Y%m%d")
    metadata = result.asset_materializations_for_node("trading_calendar")[0].metadata
    assert metadata["known_until"].value == "2027-12-31"
    assert "2027-02-09" in metadata["holidays_past_bundled_calendar"].value
    # The horizon is checked where the calendar is refreshed: over a year known ahead, no warning.
    [horizon] = result.get_asset_check_evaluations()
    assert horizon.check_name == "calendar_horizon" and horizon.passed
    assert horizon.metadata["calendar_known_until"].value == "2027-12-31"

    # The schedule reads the cache when it runs: no reload needed to publish the first day of 2027 ...
    requests = tick_schedule(defs, instance, "daily_signals_schedule", first_day).run_requests
    assert [r.tags["alchemy/purpose"] for r in requests][-1] == "publish the signals of 2027-01-04"
    # ... nor to skip the new year's holidays.
    holiday = tick_schedule(defs, instance, "daily_signals_schedule", dt.datetime(2027, 2, 9, 18, tzinfo=SHANGHAI))
    assert not holiday.run_requests and "not a trading day" in holiday.skip_message
    # The refresh schedule now has nothing to do.
    assert not tick_schedule(defs, instance, "trading_calendar_schedule", morning).run_requests
    # A fresh load of the code location (every run loads it afresh) partitions by the extended calendar.
    assert in_a_fresh_process(PARTITIONS_OF_2027) == {"2027-02-09": False, "2027-02-15": True}


def test_a_day_past_the_bundled_horizon_publishes_like_any_other(world):
    instance, server = world["instance"], world["server"]
    materialize_calendar(build_definitions(load_settings()), instance)
    # The code location that partitions by the refreshed calendar is a fresh load, as every run's is.
    assert in_a_fresh_process(PUBLISH_2027_01_05) == {"history_days_read": HISTORY_WINDOW}
    report = json.loads((world["tmp"] / "site" / "reports" / "2027-01-05.json").read_text("utf-8"))
    assert [s["ts_code"] for s in report["signals"]] == list(FUNDS)
    assert all(s["state"] in ("BUY", "SELL", "HOLD", "EMPTY") for s in report["signals"])
    # New Year's Day 2027 is closed: no call ever asked for it.
    asked = [c["params"].get("trade_date") for c in server.calls]
    assert "20270101" not in asked


def test_an_unusable_cache_stops_the_code_location_naming_it_and_the_fix(world):
    cache = world["tmp"] / "data" / TRADE_CAL_CACHE_KEY
    cache.parent.mkdir(parents=True)
    cache.write_text("cal_date,is_open\n20270104,7\n", "utf-8")
    load = subprocess.run(
        [sys.executable, "-c", "import alchemy_pipeline.definitions"], capture_output=True, text=True, timeout=300
    )
    assert load.returncode != 0
    assert f"the cached trading calendar {cache} is unusable" in load.stderr
    assert "is_open values must be 0 or 1" in load.stderr and "delete it" in load.stderr
    defs = build_definitions(load_settings())
    with pytest.raises(CalendarError, match="is_open values must be 0 or 1"):  # the schedules' tick says it too
        defs.resources["calendar_cache"].load()
    # The fix the message names: delete it, and the refresh fetches it again.
    cache.unlink()
    materialize_calendar(defs, world["instance"])
    assert defs.resources["calendar_cache"].load().known_until == dt.date(2027, 12, 31)
    assert in_a_fresh_process(PARTITIONS_OF_2027) == {"2027-02-09": False, "2027-02-15": True}
