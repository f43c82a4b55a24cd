"""Publishing a range of days: worker processes render exactly what this process would."""

import datetime as dt
import json
import os

import feedparser
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alchemy_pipeline.domain.signals.rule import RuleParams, State
from alchemy_pipeline.domain.site import publish
from alchemy_pipeline.domain.site.fund_pages import crosses, merge_series
from alchemy_pipeline.domain.site.pages import cell, escaped_cell, number_cell, percent_cell
from alchemy_pipeline.domain.site.report import distinct_days, render_text
from alchemy_pipeline.infrastructure import workers
from alchemy_pipeline.infrastructure.frames import slices_by_code
from alchemy_pipeline.infrastructure.storage import LocalBlobStore
from tests.site_fixture import FUNDS as DEMO_FUNDS
from tests.site_fixture import demo_prices, publish_demo_site, publish_run

FUNDS_OF_DEMO = list(DEMO_FUNDS["ts_code"])

FUNDS = {"510300.SH": "沪深300ETF", "159915.SZ": "创业板ETF", "512880.SH": 'A&B "证券" <ETF>'}


def signals(n_days: int) -> pd.DataFrame:
    """Every state, with the fields each one carries, on ``n_days`` weekdays."""
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2024-01-02", periods=n_days)
    rows = []
    for day in days:
        for code, name in FUNDS.items():
            state = rng.choice([s.value for s in (State.BUY, State.SELL, State.HOLD, State.EMPTY, State.NO_DATA)])
            traded = state != State.NO_DATA.value
            since = day - pd.Timedelta(days=int(rng.integers(0, 40))) if traded else pd.NaT
            rows.append({
                "ts_code": code, "name": name, "trade_date": day, "state": state,
                "close": rng.uniform(1, 5) if traded else np.nan,
                "ma_short": rng.uniform(1, 5) if traded else np.nan,
                "ma_long": rng.uniform(1, 5) if traded else np.nan,
                "since": since, "days": (day - since).days if traded else pd.NA,
                "pct": rng.uniform(-20, 20) if traded else np.nan, "note": None if traded else "suspended",
            })  # fmt: skip
    return pd.DataFrame(rows).astype({"days": "Int64"})


def published(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_range_published_a_stretch_at_a_time_in_worker_processes_is_the_same_bytes(tmp_path, monkeypatch):
    # signal_report publishes a long range a year at a time, rendered in worker processes: its reports, fund pages,
    # tearsheets and history must be those of the whole range published at once, here.
    pools = []
    in_processes = publish.map_in_processes
    monkeypatch.setattr(publish, "map_in_processes", lambda work, *a: pools.append(work) or in_processes(work, *a))
    monkeypatch.setattr(workers, "MIN_ROWS_FOR_WORKERS", 100)
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 2)
    publish_demo_site(tmp_path / "stretches", day_by_day=False, stretch_days=70)
    # The days' files are rendered by one set of workers for every stretch; then the fund pages.
    assert pools == [publish.render_batch, publish.render_fund]
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 1)
    signals = publish_demo_site(tmp_path / "whole", day_by_day=False)
    in_stretches, whole = published(tmp_path / "stretches"), published(tmp_path / "whole")
    reports = [k for k in whole if k.startswith("reports/")]
    assert len(reports) == 3 * signals["trade_date"].nunique() == 900  # three files a day
    assert {f"funds/{code}.json" for code in [*FUNDS_OF_DEMO, "PORTFOLIO"]} <= whole.keys()
    assert "backtests/tearsheets/PORTFOLIO.json" in whole and "history.html" in whole
    assert in_stretches == whole


def test_a_range_is_made_durable_once_at_the_end_and_an_index_file_at_once(tmp_path, monkeypatch):
    # A crash cannot be staged here, so the calls that make data durable are counted instead (os.fsync
    # and os.sync, wrapped, still run): a range's files are synced together once they are all written, then
    # the fund pages together, then the history, rules and static files together; the front page, last, at once.
    calls = []
    for name in ("fsync", "sync"):
        real = getattr(os, name)
        monkeypatch.setattr(f"os.{name}", lambda *a, real=real, name=name: calls.append(name) or real(*a))
    table = signals(12)
    written = publish.publish_signals(LocalBlobStore(tmp_path), table, RuleParams())
    assert len(written) == 3 * 12 + 2 * len(FUNDS) + 8  # 3 static files, the history (2), feed, rules, front page
    assert calls == ["sync", "sync", "sync", "fsync"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_page_escapes_every_name_even_one_with_a_line_break(tmp_path):
    from alchemy_pipeline.domain.site.pages import render_day_page
    from alchemy_pipeline.domain.site.report import build_report

    table = signals(1)
    page = render_day_page(build_report(table, RuleParams()), [])
    assert "A&amp;B &quot;证券&quot; &lt;ETF&gt;" in page and "<ETF>" not in page
    table["name"] = table["name"].str.replace("证券", "证\n<券>")
    page = render_day_page(build_report(table, RuleParams()), [])
    assert "证\n&lt;券&gt;" in page and "<券>" not in page
    assert page.count('<span class="state ') == len(FUNDS)  # one row per fund, its state in its class


def test_fund_data_holds_every_published_day_as_its_report_and_backtest_published_it(tmp_path):
    publish_demo_site(tmp_path, 120)
    reports = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "reports").glob("*.json")}
    for code in FUNDS_OF_DEMO:
        series = json.loads((tmp_path / "funds" / f"{code}.json").read_text())["series"]
        assert series["dates"] == sorted(reports)
        for i, day in enumerate(series["dates"]):
            entry = next(e for e in reports[day]["signals"] if e["ts_code"] == code)
            got = {k: series[k][i] for k in ("close", "ma_short", "ma_long", "state", "pct")}
            assert got == {k: entry[k] for k in got}, (code, day)
            backtest = json.loads((tmp_path / "backtests" / f"{day}.json").read_text())
            figures = next(f for f in backtest["funds"] if f["ts_code"] == code)
            assert series["strategy_equity"][i] == round(1 + figures["strategy"]["total_return"], 6)
            assert series["hold_equity"][i] == round(1 + figures["buy_and_hold"]["total_return"], 6)
    portfolio = json.loads((tmp_path / "funds" / "PORTFOLIO.json").read_text())
    assert portfolio["series"]["dates"] == sorted(reports) and portfolio["figures"] == backtest["portfolio"]


def test_a_site_published_day_by_day_is_the_site_published_at_once(tmp_path):
    # The day's run merges into the fund data and relinks the previous day's page: the same bytes as one range.
    publish_demo_site(tmp_path / "daily", 60)
    publish_demo_site(tmp_path / "range", 60, day_by_day=False)
    daily, at_once = published(tmp_path / "daily"), published(tmp_path / "range")
    assert daily.keys() == at_once.keys()
    assert [k for k in daily if daily[k] != at_once[k]] == []
    # Re-publishing past days (an analyst's backfill) rewrites every file as it was.
    signals = publish_demo_site(tmp_path / "again", 60)
    before = published(tmp_path / "again")
    days = sorted(d.date() for d in signals["trade_date"].unique())
    prices = demo_prices(DEMO_FUNDS["ts_code"])
    publish_run(LocalBlobStore(tmp_path / "again"), prices, DEMO_FUNDS, days[10:20], days[0])
    after = published(tmp_path / "again")
    assert [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)] == []


def test_the_history_of_a_site_published_before_it_kept_crosses_is_rebuilt_from_its_reports(tmp_path):
    publish_demo_site(tmp_path, 40)
    store = LocalBlobStore(tmp_path)
    whole = store.get("history.json")
    store.put("history.json", json.dumps({"days": json.loads(whole)["days"]}).encode())
    publish.refresh_site(store)
    assert store.get("history.json") == whole


def test_a_cross_reports_its_regime_to_its_last_report(tmp_path):
    series = {
        "dates": ["d1", "d2", "d3", "d4", "d5", "d6"],
        "state": ["EMPTY", "BUY", "HOLD", "NO_DATA", "HOLD", "SELL"],
        "close": [1.0, 1.1, 1.2, None, 1.3, 1.25],
        "pct": [-3.0, 0.0, 9.09, None, 18.18, 0.0],
    }
    assert crosses(series) == [
        {"day": "d6", "state": "SELL", "close": 1.25, "last_day": "d6", "days": 1, "pct": 0.0},
        {"day": "d2", "state": "BUY", "close": 1.1, "last_day": "d5", "days": 4, "pct": 18.18},
    ]
    # A regime whose last days have no data ends at its last report; one with no report at all, on its first day.
    series["state"] = ["BUY", "HOLD", "NO_DATA", "NO_DATA", "SELL", "NO_DATA"]
    assert [(r["day"], r["last_day"], r["days"], r["pct"]) for r in crosses(series)] == [
        ("d5", "d5", 1, 0.0),
        ("d1", "d2", 2, 0.0),
    ]


def test_the_email_links_each_crossing_fund_to_its_page_and_gives_the_portfolio_one_line(tmp_path):
    publish_demo_site(tmp_path, 60)
    day = max(p.stem for p in (tmp_path / "reports").glob("*.json"))
    busiest = max(
        (json.loads(p.read_text()) for p in (tmp_path / "reports").glob("*.json")),
        key=lambda r: sum(e["state"] in ("BUY", "SELL") for e in r["signals"]),
    )
    text = render_text(busiest, fund_url=lambda code: f"https://x.example/funds/{code}.html")
    crossed = [e for e in busiest["signals"] if e["state"] in ("BUY", "SELL")]
    assert crossed and all(f"({e['ts_code']})" in text for e in crossed)
    for entry in crossed:
        line = next(line for line in text.splitlines() if f"({entry['ts_code']})" in line)
        following = text.splitlines()[text.splitlines().index(line) + 1]
        assert following == f"  https://x.example/funds/{entry['ts_code']}.html"
    assert text.count("等权组合") == 1 and text.count("x.example") == len(crossed)
    assert (tmp_path / "reports" / f"{day}.txt").read_text().count("等权组合") == 1


def test_the_front_page_says_how_to_enable_the_subscribe_form_when_there_is_no_endpoint(tmp_path):
    publish_demo_site(tmp_path, 30)
    page = (tmp_path / "index.html").read_text()
    assert 'id="subscribe-form"' not in page and "ALCHEMY_SUBSCRIBE_URL" in page


@settings(max_examples=80, deadline=None)
@given(stored=st.sets(st.integers(0, 40)), new=st.sets(st.integers(0, 40), min_size=1))
def test_merging_a_runs_days_keeps_every_day_once_the_runs_values_winning(stored, new):
    # Held to the plain merge: every stored day, then the run's days over them, in date order.
    def series(days: set[int], source: str) -> dict:
        return {"dates": [f"d{d:02d}" for d in sorted(days)], "close": [f"{source}{d}" for d in sorted(days)]}

    old, run = series(stored, "stored"), series(new, "run")
    plain = dict(zip(old["dates"], old["close"], strict=True)) | dict(zip(run["dates"], run["close"], strict=True))
    merged = merge_series(old if stored else None, run)
    assert merged == {"dates": sorted(plain), "close": [plain[d] for d in sorted(plain)]}


def test_a_site_published_before_it_had_fund_pages_is_told_how_to_fill_them(tmp_path):
    from alchemy_pipeline.defs.signals.assets import _fund_pages_gap

    store = LocalBlobStore(tmp_path)
    for day in ("2024-06-26", "2024-06-27"):
        store.put(f"reports/{day}.json", b"{}")
    message = _fund_pages_gap(store, "2024-06-28")
    assert "2 days published before 2024-06-28" in message
    assert "dg launch --assets signal_report --partition-range 2024-06-26...2024-06-27" in message
    assert _fund_pages_gap(store, "2024-06-26") is None  # nothing published before the run
    store.put("funds/510300.SH.json", b"{}")
    assert _fund_pages_gap(store, "2024-06-28") is None  # the pages exist: they hold every day since


def test_the_feed_lists_the_newest_60_days_newest_first_with_their_crosses_linked(tmp_path):
    publish_demo_site(tmp_path, 80)
    feed = feedparser.parse((tmp_path / "feed.xml").read_bytes())
    assert not feed.bozo and feed.version == "atom10"
    history = json.loads((tmp_path / "history.json").read_text("utf-8"))
    days = history["days"][:60]
    # The ids are the days', not the site address's: a site moved or re-published keeps its readers' state.
    assert [e.id for e in feed.entries] == [f"tag:alchemy,2026:reports/{day}" for day in days]
    assert feed.feed.updated == f"{days[0]}T18:00:00+08:00"
    crossed = 0
    for entry, day in zip(feed.entries, history["crosses"][:60], strict=True):
        assert entry.link == f"reports/{day['trade_date']}.html"
        assert entry.updated == f"{day['trade_date']}T18:00:00+08:00"
        assert entry.title == f"{day['trade_date']}: 可买 {len(day['buy'])}, 可卖 {len(day['sell'])}"
        content = entry.content[0].value
        for fund in day["buy"] + day["sell"]:
            assert f'<a href="funds/{fund["ts_code"]}.html">{fund["name"]}({fund["ts_code"]})</a>' in content
        crossed += bool(day["buy"] or day["sell"])
        assert ("今日无买卖信号" in content) == (not day["buy"] and not day["sell"])
    assert crossed > 0


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-(10**6), 10**6)),
    st.integers(0, 3),
    st.sampled_from(["", "%"]),
    st.sampled_from(["", "wide", "up"]),
)
def test_the_day_pages_numbers_are_written_unescaped_as_cell_would_write_them(value, digits, suffix, css):
    """The day page's table skips escaping its numbers (15,000 cells a day for 1,500 funds): they are the cells
    ``cell`` writes, escaping and all."""
    assert escaped_cell(*number_cell(value, digits, suffix), css) == cell(*number_cell(value, digits, suffix), css)
    fraction = None if value is None else float(value)
    assert escaped_cell(*percent_cell(fraction), css) == cell(*percent_cell(fraction), css)


@given(st.lists(st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2030, 12, 31)), max_size=60))
def test_a_columns_days_are_formatted_once_each_as_formatting_every_row_would_give_them(stamps):
    """distinct_days formats each day once (a decade of 1,500 funds is millions of rows): the same days as
    formatting every row, in order."""
    dates = pd.Series(pd.to_datetime(stamps), dtype="datetime64[ns]")
    assert distinct_days(dates) == sorted(set(dates.dt.strftime("%Y-%m-%d")))


def test_fund_pages_rendered_in_worker_processes_are_the_same_whatever_day_each_page_ends_on(tmp_path, monkeypatch):
    # A fund that left the universe and came back, with past days republished: its page ends on the last day it
    # was published, neither the run's last day nor the newest; the workers leave it to the publishing process.
    prices = demo_prices(FUNDS_OF_DEMO)
    sessions = sorted(d.date() for d in prices["trade_date"].unique())
    days = sessions[sessions.index(dt.date(2024, 1, 2)) :][:90]
    left = []

    def publish_history(root):
        store = LocalBlobStore(root)
        publish_run(store, prices, DEMO_FUNDS, days[:60], days[0])
        publish_run(store, prices, DEMO_FUNDS.iloc[:2], days[60:], days[0])
        publish_run(store, prices, DEMO_FUNDS, days[10:30], days[0])
        return published(root)

    def recorded(work, *args):
        for result in in_processes(work, *args):
            left.append(work is publish.render_fund and result is None)
            yield result

    in_processes = publish.map_in_processes
    monkeypatch.setattr(publish, "map_in_processes", recorded)
    monkeypatch.setattr(workers, "MIN_ROWS_FOR_WORKERS", 10)
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 2)
    in_workers = publish_history(tmp_path / "workers")
    assert sum(left) == 1  # the fund that came back
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 1)
    assert publish_history(tmp_path / "here") == in_workers
    as_of = {code: json.loads(in_workers[f"funds/{code}.json"])["as_of"] for code in FUNDS_OF_DEMO}
    assert as_of == {**dict.fromkeys(FUNDS_OF_DEMO[:2], days[-1].isoformat()), FUNDS_OF_DEMO[2]: days[59].isoformat()}


def test_a_funds_rows_are_one_slice_and_a_table_not_ordered_by_code_is_refused():
    codes = pd.Series(["A", "A", "B", "C", "C", "C"])
    assert slices_by_code(codes) == {"A": slice(0, 2), "B": slice(2, 3), "C": slice(3, 6)}
    with pytest.raises(ValueError, match="not ordered by code"):
        slices_by_code(pd.Series(["A", "B", "A"]))
