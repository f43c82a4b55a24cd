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
import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.defs.partitions import HISTORY_WINDOW, PLANNED_ASSETS
from alchemy_pipeline.domain import lab
from alchemy_pipeline.domain.backtest import BacktestSettings
from alchemy_pipeline.domain.site.report import render_text, report_json
from alchemy_pipeline.settings import load_settings
from tests.backtest_reference import agree, check_document, check_trades, reference, trade_return
from tests.conftest import BUNDLED_DAYS, materialize_sweep, tick_schedule
from tests.tushare_server import VALID_TOKEN, TushareTestServer

FIRST, LAST_BACKFILLED, DAILY = "2018-12-03", "2023-06-07", "2023-06-08"
BACKTEST_START = dt.date(2015, 1, 5)
# SHA-256 of every file this run publishes but the backtest's, by month (the site's front page and history
# on their own), as published before the strategy, IO and report code were restructured (issue 19): the
# same prices must keep giving subscribers the same bytes. The reports are compared without the backtest's
# summary, which came after (issue 14) and is checked against its own reference below.
PUBLISHED_DIGESTS = Path(__file__).with_name("real_data_published_digests.txt")
SHORT, LONG = 11, 22


class ExactAverages:
    """The ``length``-bar averages of a window's closes forward-adjusted to its last factor, in decimal
    arithmetic and rounded half up to thousandths (the definition in docs/strategy.md), each computed when
    first read: ``[j]`` is bar j's, NaN before the ``length``-th bar."""

    def __init__(self, closes, factors, length: int):
        self.values = [Decimal(str(float(c))) * Decimal(str(float(f))) for c, f in zip(closes, factors, strict=True)]
        self.length, self.denominator, self.cache = length, length * Decimal(str(float(factors[-1]))), {}

    def __getitem__(self, j: int) -> float:
        if j < self.length - 1:
            return math.nan
        if j not in self.cache:
            total = sum(self.values[j - self.length + 1 : j + 1])
            self.cache[j] = float((total / self.denominator).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))
        return self.cache[j]


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
        s, l_ = (ExactAverages(close, factor, length) for length in (SHORT, LONG))
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
    from tests.conftest import local_instance, real_data_dir, use_env

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
    with pytest.MonkeyPatch.context() as mp, local_instance(tmp / "dagster") as instance:
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

        # As scripts/backfill plans it: the price history, the signals the backtest reads from its start
        # (2015-01-05), then the range.
        *history, backfill = BUNDLED_DAYS.plan_runs(
            FIRST, LAST_BACKFILLED, {a: set() for a in PLANNED_ASSETS}, "backfill", BACKTEST_START
        )
        for plan in history:
            run(plan.assets, plan.start, plan.end)
        calls_before_backfill = len(server.calls)
        run(backfill.assets, backfill.start, backfill.end)
        backfill_calls = len(server.calls) - calls_before_backfill
        when = dt.datetime(2023, 6, 8, 18, tzinfo=ZoneInfo("Asia/Shanghai"))
        tick = tick_schedule(defs, instance, "daily_signals_schedule", when)
        assert len(tick.run_requests) == 1  # the history is all there: just the day
        request = tick.run_requests[0]
        run([k.to_user_string() for k in request.asset_selection], DAILY, DAILY)
        yield {
            "data": data,
            "site": tmp / "site",
            "store": tmp / "data",
            "funds": funds,
            "backfill_calls": backfill_calls,
            "history": history,
            "defs": defs,
            "instance": instance,
        }
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
    """One SHA-256 per month of reports: each day's JSON and text as rendered without the backtest's summary
    (the data and the words subscribers read; the pages are a design rendered from this JSON, checked in the
    browser tests), and one of the days the history lists."""
    files: dict[str, bytes] = {}
    for path in sorted((site / "reports").glob("*.json")):
        report = json.loads(path.read_bytes())
        report.pop("backtest", None)
        files[f"reports/{path.stem}.json"] = report_json(report)
        files[f"reports/{path.stem}.txt"] = render_text(report).encode("utf-8")
    files["history.json"] = json.dumps(json.loads((site / "history.json").read_bytes())["days"]).encode()
    groups: dict[str, list[str]] = {}
    for relative in sorted(files):
        groups.setdefault(
            relative[: len("reports/YYYY-MM")] if relative.startswith("reports/") else relative, []
        ).append(relative)
    digests = {}
    for group, names in groups.items():
        digest = hashlib.sha256()
        for name in names:
            digest.update(name.encode() + b"\0" + files[name] + b"\0")
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
            f"{PUBLISHED_DIGESTS.name} with them only if the change is meant, and say so in docs/strategy.md."
        )


def reference_inputs(run: dict) -> dict[str, list[tuple]]:
    """Each fund's usable bars (a positive open, close and factor) from the vendor's files, with the signal
    the pipeline published for the day (its stored trade_signals)."""
    data = run["data"] / "tushare"
    daily = pd.read_csv(data / "fund_daily.csv", dtype={"trade_date": str})
    adj = pd.read_csv(data / "fund_adj.csv", dtype={"trade_date": str})
    bars = daily.merge(adj, on=["ts_code", "trade_date"], how="left")
    bars["trade_date"] = pd.to_datetime(bars["trade_date"], format="%Y%m%d")
    signals = pd.read_parquet(run["store"] / "trade_signals", columns=["ts_code", "trade_date", "state"])
    bars = bars.merge(signals, on=["ts_code", "trade_date"], how="inner")
    bars = bars[(bars["open"] > 0) & (bars["close"] > 0) & (bars["adj_factor"] > 0)].sort_values("trade_date")
    return {
        code: [
            (d.date(), o, c, f, st)
            for d, o, c, f, st in rows[["trade_date", "open", "close", "adj_factor", "state"]].itertuples(index=False)
        ]
        for code, rows in bars.groupby("ts_code")
    }


def test_the_backtest_agrees_with_an_independent_reference(real_run):
    bars = reference_inputs(real_run)
    codes = real_run["funds"]["ts_code"].tolist()
    site = real_run["site"] / "backtests"
    published = sorted(p.stem for p in site.glob("*.json"))
    assert published[0] == FIRST and published[-1] == DAILY and len(published) > 1050
    settings = json.loads((site / f"{DAILY}.json").read_text("utf-8"))["settings"]
    assert settings == {"execution": "next_open", "cash": 100000.0, "commission": 0.00025, "min_commission": 5.0,
                        "slippage_bps": 0.0, "lot": 100}  # fmt: skip
    model = {**settings, "start": BACKTEST_START}
    mismatches = []
    # Every figure on the last day and on every 50th day before it.
    for day in [*published[::-50], DAILY]:
        document = json.loads((site / f"{day}.json").read_text("utf-8"))
        assert document["start"] == "2015-01-05" and document["as_of"] == day
        check_document(document, reference(bars, codes, model, dt.date.fromisoformat(day)), mismatches)
    # The equity of every fund on every day: each day's published total return.
    final = reference(bars, codes, model, dt.date.fromisoformat(DAILY))
    for day in published:
        document = json.loads((site / f"{day}.json").read_text("utf-8"))
        for fund in document["funds"]:
            expected = final["funds"][fund["ts_code"]]
            i = bisect.bisect_right(expected["days"], dt.date.fromisoformat(day)) - 1
            for sleeve in ("strategy", "buy_and_hold"):
                total = expected[f"{sleeve}_equity"][i] / 100_000 - 1
                agree(fund[sleeve]["total_return"], total, f"{day} {fund['ts_code']} {sleeve} equity", mismatches)
    # Every trade, as the newest day's trades files publish them.
    for code in codes:
        got = json.loads((site / "trades" / f"{code}.json").read_text("utf-8"))
        check_trades(code, got, final["funds"][code]["trades"], mismatches)
    assert not mismatches, mismatches[:10]
    # The figures are worth checking: trades happened, with gains and losses, and the strategy differs from holding.
    last = final["funds"]
    assert sum(len(f["trades"]) for f in last.values() if f) > 500
    assert {trade_return(t) > 0 for f in last.values() if f for t in f["trades"] if "exit_day" in t} == {True, False}


def test_a_consolidation_while_holding_is_neither_gain_nor_loss(real_run):
    # 513500.SH halved its price on 2022-03-30 (a 1:2 split, suspended the day before): a trade held across it
    # is valued by the adjusted price, so the split day's equity moves by the day's market move, not by half.
    trades = json.loads((real_run["site"] / "backtests" / "trades" / "513500.SH.json").read_text("utf-8"))
    across = [t for t in trades if t["entry_day"] < "2022-03-30" and (t["exit_day"] or "9999") > "2022-03-30"]
    for trade in across:
        assert trade["return"] > -0.3, trade


def test_the_docs_backtest_figures_are_those_published(real_run):
    root = Path(__file__).parents[1]
    readme, page = ((root / name).read_text("utf-8") for name in ("README.md", "docs/backtest.md"))
    portfolio = json.loads((real_run["site"] / "backtests" / f"{DAILY}.json").read_text("utf-8"))["portfolio"]
    for text in (readme, page):
        for label, sleeve in (("following the signals", "strategy"), ("buying and holding", "buy_and_hold")):
            row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
            shown = [cell.strip() for cell in row.strip("|").split("|")[1:]]
            figures = portfolio[sleeve]
            want = [f"{figures[k] * 100:.2f}%" for k in ("total_return", "cagr", "max_drawdown", "volatility")]
            assert shown == [*want, f"{figures['sharpe']:.2f}"], label
    strategy = portfolio["strategy"]
    sentence = (
        f"made {strategy['trades']} trades ({strategy['win_rate'] * 100:.1f}% of the closed ones gained), was in "
        f"the market {strategy['exposure'] * 100:.1f}% of the\ntime and paid {strategy['fees']:,.2f} CNY in fees"
    )
    assert sentence in page
    sheet = json.loads((real_run["site"] / "backtests" / "tearsheets" / "PORTFOLIO.json").read_text("utf-8"))
    for label, sleeve in (("following the signals", "strategy"), ("buying and holding", "buy_and_hold")):
        row = next(line for line in readme.splitlines() if line.startswith(f"| {label} |") and line.count("|") == 5)
        deepest = sheet[sleeve]["drawdowns"][0]
        want = [f"{sheet[sleeve]['sortino']:.2f}", deepest["peak"], deepest["recovery"]]
        assert [cell.strip() for cell in row.strip("|").split("|")[1:]] == want, label
    relative, trades = sheet["relative"], sheet["strategy"]
    assert (
        f"beta {relative['beta']:.2f}, alpha {relative['alpha'] * 100:.2f}% a year; {trades['closed_trades']} "
        f"closed trades, profit factor {trades['profit_factor']:.2f}"
    ) in " ".join(readme.split())


def sweep_trades(prices: pd.DataFrame, funds: pd.DataFrame, start: dt.date, end: dt.date) -> dict[str, list]:
    """The (11, 22) cell's trades per fund, as the sweep trades them: (entry day, exit day or None)."""
    settings = BacktestSettings(start=start)
    trades = {}
    for history in lab.fund_histories(prices, funds, end):
        signals = lab.pair_signals(history.closes, history.factors, np.array([[SHORT, LONG]]))
        at = np.flatnonzero((history.days >= np.datetime64(start)) & (history.opens > 0))
        runs = lab.simulate_pairs(signals[:, at], history.opens[at], history.closes[at], history.factors[at], settings)
        days = [d.isoformat() for d in history.days[at].tolist()]
        trades[history.ts_code] = [
            (days[e], days[x] if x < len(days) else None)
            for e, x in zip(runs.entry_bar[0].tolist(), runs.exit_bar[0].tolist(), strict=True)
            if e < len(days)
        ]
    return trades


def test_the_sweeps_production_cell_reproduces_the_production_backtests_trades(real_run):
    """The sweep of the one pair (11, 22), materialized from run config like an analyst's, against the trades
    the pipeline published: the same averages (the one exact definition), so the same trades, every one, and
    the same figures."""
    config = {"short_from": SHORT, "short_to": SHORT, "long_from": LONG, "long_to": LONG}
    materialize_sweep(real_run["defs"], real_run["instance"], config)
    document = json.loads((real_run["site"] / "lab" / "latest" / "sweep.json").read_text("utf-8"))
    assert (document["start"], document["end"]) == (BACKTEST_START.isoformat(), DAILY)

    prices = pd.read_parquet(real_run["store"] / "etf_daily_prices")
    swept = sweep_trades(prices, real_run["funds"], BACKTEST_START, dt.date.fromisoformat(DAILY))
    backtest = json.loads((real_run["site"] / "backtests" / f"{DAILY}.json").read_text("utf-8"))
    cells = {f["ts_code"]: f["pairs"][0]["full"] for f in document["funds"]}
    total = 0
    for fund in backtest["funds"]:
        code = fund["ts_code"]
        trades = json.loads((real_run["site"] / "backtests" / "trades" / f"{code}.json").read_text("utf-8"))
        production = [(t["entry_day"], t["exit_day"]) for t in trades]
        total += len(production)
        assert swept[code] == production, code
        for metric in ("total_return", "max_drawdown", "sharpe", "trades", "win_rate", "exposure", "fees"):
            assert cells[code][metric] == pytest.approx(fund["strategy"][metric], abs=1e-6), (code, metric)
    assert total > 800


def test_the_tearsheets_agree_with_quantstats_to_their_published_precision(real_run):
    pytest.importorskip("quantstats", reason="quantstats (the dev extra) cross-checks the tearsheets")
    from benchmarks.tearsheet import compare_site

    gaps = compare_site(real_run["store"], real_run["site"])
    # Every figure but the trades', fractions and ratios published at 6 decimals: within half their last digit.
    assert set(gaps) == {
        "sortino", "monthly_returns", "yearly_returns", "rolling_sharpe", "drawdowns.depth", "drawdowns.trough",
        "alpha", "beta",
    }  # fmt: skip
    assert all(gap <= 5.000001e-7 for gap in gaps.values()), gaps
