"""4.5 years of real prices of 20 ETFs, with their real splits, consolidations, dividends and suspensions.

The data is read in place from ``$ALCHEMY_REAL_DATA`` or ``../shared/data/etf``; without it these tests
are skipped. The pipeline runs as in production: the price history, one single-run backfill of every
asset, then the scheduled daily run of the next day. Every published signal is checked against a
reference written here, independently, straight from the rule and the vendor's CSV files.
"""

import bisect
import datetime as dt
import hashlib
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import talib

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.defs.partitions import HISTORY_WINDOW
from alchemy_pipeline.settings import load_settings
from tests.conftest import BUNDLED_DAYS, history_keys, tick_schedule
from tests.tushare_server import VALID_TOKEN, TushareTestServer

FIRST, LAST_BACKFILLED, DAILY = "2018-12-03", "2023-06-07", "2023-06-08"
# SHA-256 of every file this run publishes, by month (the site's front page and history on their own),
# as published before the strategy, IO and report code were restructured (issue 19): the same prices
# must keep giving subscribers the same bytes.
PUBLISHED_DIGESTS = Path(__file__).with_name("real_data_published_digests.txt")
SHORT, LONG = 11, 22


def reference_signals(bars_by_fund: dict[str, pd.DataFrame], sessions: list[str], day: str) -> dict[str, dict]:
    """The rule, as plainly as it can be written, for every fund on one day."""
    i = sessions.index(day)
    start = sessions[max(0, i - HISTORY_WINDOW + 1)]
    out = {}
    for code, fund in bars_by_fund.items():
        dates = fund["trade_date"].tolist()
        lo, hi = bisect.bisect_left(dates, start), bisect.bisect_right(dates, day)
        dates = dates[lo:hi]
        if not dates or dates[-1] != day:
            out[code] = {"state": "NO_DATA"}
            continue
        if len(dates) < LONG + 1:
            out[code] = {"state": "INSUFFICIENT_HISTORY"}
            continue
        close = fund["close"].to_numpy()[lo:hi]
        factor = fund["adj_factor"].to_numpy()[lo:hi]
        adjusted = close * factor / factor[-1]
        s = np.round(talib.SMA(adjusted, SHORT), 3)
        l_ = np.round(talib.SMA(adjusted, LONG), 3)
        n = len(adjusted) - 1
        signal = {"close": adjusted[n], "ma_short": s[n], "ma_long": l_[n]}
        if s[n] > l_[n] and s[n - 1] <= l_[n - 1]:
            state, k = "BUY", n
        elif s[n] < l_[n] and s[n - 1] >= l_[n - 1]:
            state, k = "SELL", n
        else:
            j = n
            while j >= LONG - 1 and s[j] == l_[j]:
                j -= 1
            up = j >= LONG - 1 and s[j] > l_[j]
            state = "HOLD" if up else "EMPTY"
            k = None
            for m in range(n, LONG - 1, -1):
                if up and s[m] > l_[m] and s[m - 1] <= l_[m - 1]:
                    k = m
                    break
                if not up and s[m] < l_[m] and s[m - 1] >= l_[m - 1]:
                    k = m
                    break
        signal["state"] = state
        if k is not None:
            since = dt.date.fromisoformat(dates[k])
            signal.update(
                since=dates[k],
                days=(dt.date.fromisoformat(day) - since).days,
                pct=round((adjusted[n] / adjusted[k] - 1) * 100, 2),
            )
        else:
            signal.update(since=None, days=None, pct=None)
        out[code] = signal
    return out


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from tests.conftest import real_data_dir, use_env

    data = real_data_dir()
    if data is None:
        pytest.skip("real ETF data not found: set ALCHEMY_REAL_DATA or place it at ../shared/data/etf")
    tmp = tmp_path_factory.mktemp("real")
    funds = pd.read_csv(data / "tushare" / "fund_basic.csv", dtype=str)[["ts_code", "name"]]
    funds.to_csv(tmp / "universe.csv", index=False)
    server = TushareTestServer.from_directory(data / "tushare").start()
    env = {
        "ALCHEMY_ENV": "local",
        "ALCHEMY_DATA_DIR": str(tmp / "data"),
        "ALCHEMY_PUBLISH_DIR": str(tmp / "site"),
        "ALCHEMY_UNIVERSE": str(tmp / "universe.csv"),
        "ALCHEMY_PRICE_SOURCE": "tushare",
        "TUSHARE_TOKEN": VALID_TOKEN,
        "TUSHARE_API_URL": server.url,
    }
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        use_env(mp, env)
        defs = build_definitions(load_settings())
        job = defs.resolve_job_def("daily_signals_job")

        def run(assets, start, end):
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey(a) for a in assets],
                tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
                raise_on_error=False,
            )
            assert result.success, [e.message for e in result.all_events if e.is_failure]

        window = history_keys(FIRST)
        run(["etf_daily_prices"], window[0], window[-1])
        calls_before_backfill = len(server.calls)
        run(["etf_daily_prices", "etf_indicators", "trade_signals", "signal_report"], FIRST, LAST_BACKFILLED)
        backfill_calls = len(server.calls) - calls_before_backfill
        when = dt.datetime(2023, 6, 8, 18, tzinfo=ZoneInfo("Asia/Shanghai"))
        tick = tick_schedule(defs, instance, "daily_signals_schedule", when)
        assert len(tick.run_requests) == 1  # the history is all there: just the day
        request = tick.run_requests[0]
        run([k.to_user_string() for k in request.asset_selection], DAILY, DAILY)
        yield {"data": data, "site": tmp / "site", "funds": funds, "backfill_calls": backfill_calls}
    server.stop()


def test_every_published_signal_follows_the_rule(real_run):
    data = real_run["data"] / "tushare"
    daily = pd.read_csv(data / "fund_daily.csv", dtype={"trade_date": str})
    adj = pd.read_csv(data / "fund_adj.csv", dtype={"trade_date": str})
    for table in (daily, adj):
        table["trade_date"] = pd.to_datetime(table["trade_date"], format="%Y%m%d").dt.strftime("%Y-%m-%d")
    bars = daily.merge(adj, on=["ts_code", "trade_date"], how="left").sort_values(["ts_code", "trade_date"])
    bars_by_fund = {code: bars[bars["ts_code"] == code] for code in real_run["funds"]["ts_code"]}
    now = dt.datetime(2023, 6, 9, tzinfo=ZoneInfo("Asia/Shanghai"))
    sessions = BUNDLED_DAYS.partitions_def.get_partition_keys(current_time=now)
    sessions = sessions[: sessions.index(DAILY) + 1]
    days = sessions[sessions.index(FIRST) :]
    assert days[-1] == DAILY and len(days) > 1050  # 4.5 years of reports
    mismatches = []
    for day in days:
        report = json.loads((real_run["site"] / "reports" / f"{day}.json").read_text("utf-8"))
        expected = reference_signals(bars_by_fund, sessions, day)
        for signal in report["signals"]:
            want = expected[signal["ts_code"]]
            got = {k: signal[k] for k in want}
            if "close" in want:
                for k in ("close", "ma_short", "ma_long"):
                    got[k] = pytest.approx(want[k], abs=5e-4) if got[k] is not None else None
            if got != want:
                mismatches.append((day, signal["ts_code"], signal, want))
    assert not mismatches, mismatches[:5]


def test_splits_and_suspensions_are_handled(real_run):
    def signal(day, code):
        report = json.loads((real_run["site"] / "reports" / f"{day}.json").read_text("utf-8"))
        return next(s for s in report["signals"] if s["ts_code"] == code)

    assert signal("2022-03-29", "513500.SH")["state"] == "NO_DATA"  # suspended the day before its split
    assert signal("2022-09-02", "512100.SH")["state"] == "NO_DATA"
    # 513500 halved its price on 2022-03-30; the adjusted averages stay continuous across it.
    before, on = signal("2022-03-28", "513500.SH"), signal("2022-03-30", "513500.SH")
    assert on["ma_long"] == pytest.approx(before["ma_long"] / 1.98, rel=0.03)
    assert on["state"] not in ("BUY", "SELL") or on["state"] == before["state"]


def test_the_backfill_fetched_per_fund_not_per_day(real_run):
    # 20 funds, two APIs, a single page each: nothing like two calls per fund per day.
    assert real_run["backfill_calls"] <= 2 * 20


def published_digests(site: Path) -> dict[str, str]:
    """One SHA-256 per month of reports (each file's name and bytes, in name order), and one per other file."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(p for p in site.rglob("*") if p.is_file() and "outbox" not in p.parts):
        relative = path.relative_to(site).as_posix()
        groups.setdefault(
            relative[: len("reports/YYYY-MM")] if relative.startswith("reports/") else relative, []
        ).append(path)
    digests = {}
    for group, paths in groups.items():
        digest = hashlib.sha256()
        for path in paths:
            digest.update(path.relative_to(site).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        digests[group] = digest.hexdigest()
    return digests


def test_published_bytes_are_those_published_before(real_run, tmp_path):
    got = published_digests(real_run["site"])
    want = dict(line.split() for line in PUBLISHED_DIGESTS.read_text().splitlines())
    differ = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    if differ:
        actual = tmp_path / PUBLISHED_DIGESTS.name
        actual.write_text("".join(f"{k} {v}\n" for k, v in sorted(got.items())))
        pytest.fail(
            f"{len(differ)} of {len(want)} groups of published files differ ({', '.join(differ[:8])}): a subscriber "
            f"would read other bytes for the same prices. This run's digests are in {actual}; replace "
            f"{PUBLISHED_DIGESTS.name} with them only if the change is meant, and say so in the README."
        )
