"""The backtest's chain of days on real Dagster instances, with the tushare SDK talking HTTP to the test
server: an instance whose backtest setting changes, or whose earlier day is corrected and run again, ends
with the very site a fresh instance publishes; a backtest that fails does not hold the day's report back.

Scenario: three funds; the backtest from 2024-04-15; an analyst publishes 2024-04-15...2024-06-27 with the
commands' plans (as scripts/backfill runs them), then the daily runs of 2024-06-28 and 2024-07-01.
"""

import contextlib
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.defs.partitions import materialized_partitions, plan_tags
from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.signals.rule import RULE_VERSION
from alchemy_pipeline.domain.site.report import BACKTEST_UNAVAILABLE
from alchemy_pipeline.settings import load_settings
from tests.conftest import BUNDLED_DAYS, local_instance, use_env, vendor_tables, write_universe
from tests.tushare_server import VALID_TOKEN, TushareTestServer

FUNDS = {"510300.SH": "沪深300ETF", "159915.SZ": "创业板ETF", "512880.SH": "证券ETF"}
START, RANGE_END, DAILY, NEXT = "2024-04-15", "2024-06-27", "2024-06-28", "2024-07-01"


def vendor(correct_open: tuple[str, str] | None = None):
    tables = vendor_tables(list(FUNDS), "2022-06-01", "2024-07-05")
    if correct_open:
        code, day = correct_open
        daily = tables["fund_daily"].copy()
        row = (daily["ts_code"] == code) & (daily["trade_date"] == day.replace("-", ""))
        # The vendor's correction: another open within the day's range.
        high, low, open_ = (daily.loc[row, c] for c in ("high", "low", "open"))
        daily.loc[row, "open"] = low.where(open_ != low, high)
        tables = {**tables, "fund_daily": daily}
    return tables


class World:
    """An instance, its data and site directories, and the environment its runs see."""

    def __init__(self, root: Path, server: TushareTestServer, monkeypatch, instance, **env):
        self.root, self.server, self.monkeypatch, self.instance = root, server, monkeypatch, instance
        root.mkdir(parents=True)
        self.env = {
            "ALCHEMY_ENV": "local",
            "ALCHEMY_DATA_DIR": str(root / "data"),
            "ALCHEMY_PUBLISH_DIR": str(root / "site"),
            "ALCHEMY_UNIVERSE": str(write_universe(root / "universe.csv", FUNDS)),
            "ALCHEMY_PRICE_SOURCE": "tushare",
            "ALCHEMY_BACKTEST_START": START,
            "TUSHARE_TOKEN": VALID_TOKEN,
            "TUSHARE_API_URL": server.url,
            **env,
        }

    def publish(self, start: str, end: str, **env) -> list[dg.ExecuteInProcessResult]:
        """The runs scripts/backfill plans for ``start``...``end``, with the environment changed by ``env``."""
        self.env.update(env)
        use_env(self.monkeypatch, self.env)
        settings = load_settings()
        defs = build_definitions(settings)
        plans = BUNDLED_DAYS.plan_runs(
            start, end, materialized_partitions(self.instance), "backfill", settings.backtest_start
        )
        results = []
        for plan in plans:
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=self.instance,
                asset_selection=[dg.AssetKey(a) for a in plan.assets],
                tags=plan_tags(plan, "analyst"),
                raise_on_error=False,
            )
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            results.append(result)
        return results

    def site(self) -> dict[str, bytes]:
        site = self.root / "site"
        return {str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}


@pytest.fixture
def world(tmp_path, monkeypatch):
    # Closed in reverse order; no instance sets DAGSTER_HOME, which would outlive it if closed out of order.
    with contextlib.ExitStack() as stack:

        def make(name: str, tables=None, **env) -> World:
            server = TushareTestServer(tables or vendor()).start()
            stack.callback(server.stop)
            instance = stack.enter_context(local_instance(tmp_path / f"{name}-dagster", set_dagster_home=False))
            return World(tmp_path / name, server, monkeypatch, instance, **env)

        yield make


def materializations(result: dg.ExecuteInProcessResult, asset: str) -> list:
    return [m for m in result.asset_materializations_for_node(asset)]


def assert_the_newest_day_alone_carries_its_table_chart_and_plotted_numbers(run, site: Path):
    """Dagster copies a run's metadata to each of its days: a decade of 1,500 funds' table and the equity chart
    would be written 2,431 times into the event log, and the newest day's numbers would plot at every day."""
    states = {m.partition: m.metadata for m in materializations(run, "etf_backtest")}
    newest = states.pop(RANGE_END)
    document = json.loads((site / "backtests" / f"{RANGE_END}.json").read_text("utf-8"))
    # Every fund's row, with the portfolio's, below the header and its rule.
    assert newest["funds"].value.count("\n") == len(FUNDS) + 2
    assert all(f"| {code} " in newest["funds"].value for code in FUNDS)
    total = document["portfolio"]["strategy"]["total_return"]
    assert newest["portfolio_strategy_total_return"].value == pytest.approx(total, abs=1e-6)
    assert newest["portfolio_sortino"].value is not None
    assert len(states) > 20
    assert all(m["days"].value == len(states) + 1 for m in states.values())
    assert not any(k in m for m in states.values() for k in ("funds", "portfolio_strategy_total_return"))
    reports = {m.partition: m.metadata for m in materializations(run, "signal_report")}
    newest = reports.pop(RANGE_END)
    report = json.loads((site / "reports" / f"{RANGE_END}.json").read_text("utf-8"))
    signals = [e["state"] for e in report["signals"]]
    assert (newest["buy_count"].value, newest["sell_count"].value) == (signals.count("BUY"), signals.count("SELL"))
    assert newest["portfolio_equity"].value.startswith("![portfolio equity](data:image/svg+xml;base64,")
    assert RANGE_END in newest["latest_report"].value
    assert set(reports) == set(states)
    shown = ("portfolio_equity", "latest_report", "latest_page", "buy_count", "portfolio_strategy_return")
    assert all(m["days_published"].value == len(reports) + 1 and not set(shown) & set(m) for m in reports.values())


def test_a_changed_setting_recomputes_the_backtest_and_publishes_what_a_fresh_instance_publishes(world):
    changed = {"ALCHEMY_BACKTEST_COMMISSION": "0.001"}
    old = world("old")
    old.publish(START, RANGE_END)
    old.publish(DAILY, DAILY)
    before = old.site()
    (*_, last) = old.publish(NEXT, NEXT, **changed)
    fresh = world("fresh", **changed)
    fresh.publish(START, RANGE_END)
    fresh.publish(DAILY, DAILY)
    fresh.publish(NEXT, NEXT)
    assert old.site() == fresh.site()
    # Every day's backtest and report changed (the fees), and the run says where it started from and why.
    published = [k for k in before if k.startswith(("backtests/2", "reports/2")) and k.endswith(".json")]
    assert len(published) > 90 and all(before[k] != fresh.site()[k] for k in published)
    (state,) = [m for m in materializations(last, "etf_backtest") if m.partition == NEXT]
    assert state.metadata["started_from"].value.startswith("the backtest's start, 2024-04-15: the state before")
    assert "other settings" in state.metadata["started_from"].value
    assert state.metadata["other_days_rewritten"].value == len(BUNDLED_DAYS.calendar.sessions(START, DAILY))
    republished = [m.partition for m in materializations(last, "signal_report") if m.partition != NEXT]
    assert sorted(republished) == [d.isoformat() for d in BUNDLED_DAYS.calendar.sessions(START, DAILY)]


def test_an_earlier_day_run_again_with_corrected_prices_is_carried_on_through_the_later_days(world):
    first = world("first")
    first.publish(START, RANGE_END)
    first.publish(DAILY, DAILY)
    first.publish(NEXT, NEXT)
    # A day on which a trade filled at the open, well before the newest day: the vendor corrects that open.
    code, day = next(
        (code, t["entry_day"])
        for code in FUNDS
        for t in json.loads((first.root / "site" / "backtests" / "trades" / f"{code}.json").read_text("utf-8"))
        if "2024-04-22" < t["entry_day"] < "2024-06-20"
    )
    corrected = TushareTestServer(vendor((code, day))).start()
    try:
        (run,) = first.publish(day, day, TUSHARE_API_URL=corrected.url)
    finally:
        corrected.stop()
    later = [d.isoformat() for d in BUNDLED_DAYS.calendar.sessions(day, NEXT)][1:]
    rewritten = [m.partition for m in materializations(run, "etf_backtest") if m.partition != day]
    assert sorted(rewritten) == later
    fresh = world("fresh", tables=vendor((code, day)))
    fresh.publish(START, RANGE_END)
    fresh.publish(DAILY, DAILY)
    fresh.publish(NEXT, NEXT)
    assert first.site() == fresh.site()


def test_a_backtest_that_fails_leaves_the_days_report_out_without_it_and_the_next_run_mends_it(world):
    one = world("one")
    one.publish(START, RANGE_END)
    site = one.root / "site"
    # An old day's stored signals, damaged on disk; then a setting changes: the backtest is recomputed from
    # its start, reads that file, and fails. The day's own signals are fine.
    damaged = one.root / "data" / "trade_signals" / f"{START}.parquet"
    kept = damaged.read_bytes()
    damaged.write_bytes(kept[: len(kept) // 2])
    (run,) = one.publish(DAILY, DAILY, ALCHEMY_BACKTEST_COMMISSION="0.001")
    report = json.loads((site / "reports" / f"{DAILY}.json").read_text("utf-8"))
    assert report["backtest"] is None and len(report["signals"]) == 3
    assert (site / "reports" / f"{DAILY}.txt").read_text("utf-8").rstrip().endswith(BACKTEST_UNAVAILABLE)
    assert not (site / "backtests" / f"{DAILY}.json").exists()
    (check,) = [c for c in run.get_asset_check_evaluations() if c.check_name == "backtest_computed"]
    assert not check.passed
    assert check.description.startswith("The backtest failed:")
    # Repaired, the next day's run recomputes the backtest from its start (no state stored for the day before).
    damaged.write_bytes(kept)
    one.publish(NEXT, NEXT)
    report = json.loads((site / "reports" / f"{NEXT}.json").read_text("utf-8"))
    assert report["backtest"]["portfolio"]["strategy"]["total_return"] is not None
    assert json.loads((site / "backtests" / f"{NEXT}.json").read_text("utf-8"))["as_of"] == NEXT


def test_the_newest_days_tearsheets_downloads_and_metadata_follow_the_backtest_and_are_rebuilt_without_a_ledger(world):
    one = world("one")
    *_, ranged = one.publish(START, RANGE_END)
    # The range run's UI: what shows its newest day is on that day alone (checked here, on this test's range run).
    assert_the_newest_day_alone_carries_its_table_chart_and_plotted_numbers(ranged, one.root / "site")
    (run,) = one.publish(DAILY, DAILY)
    site = one.root / "site"
    document = json.loads((site / "backtests" / f"{DAILY}.json").read_text("utf-8"))
    cash = document["settings"]["cash"]
    # The UI's etf_backtest shows the portfolio's Sortino ratio and beta as its tearsheet publishes them.
    (state,) = materializations(run, "etf_backtest")
    portfolio = json.loads((site / "backtests" / "tearsheets" / "PORTFOLIO.json").read_text("utf-8"))
    assert state.metadata["portfolio_sortino"].value == portfolio["strategy"]["sortino"] is not None
    assert state.metadata["portfolio_beta"].value == portfolio["relative"]["beta"] is not None
    figures = {f["ts_code"]: f for f in document["funds"]} | {"PORTFOLIO": document["portfolio"]}
    episodes = 0
    for code, fund in figures.items():
        sheet = json.loads((site / "backtests" / "tearsheets" / f"{code}.json").read_text("utf-8"))
        assert sheet["as_of"] == DAILY and sheet["ts_code"] == code
        strategy = fund["strategy"]
        episodes += len(sheet["strategy"]["drawdowns"])
        deepest = (sheet["strategy"]["drawdowns"] or [{"depth": 0.0, "trough": None}])[0]
        assert (deepest["depth"], deepest["trough"]) == (strategy["max_drawdown"], strategy["max_drawdown_trough"])
        growth = 1.0
        for value in sheet["strategy"]["yearly_returns"].values():
            growth *= 1 + value
        assert growth - 1 == pytest.approx(strategy["total_return"], abs=2e-6)
        equity = (site / "backtests" / "csv" / f"{code}.equity.csv").read_bytes()
        assert equity.startswith(b"\xef\xbb\xbfday,strategy,buy_and_hold\r\n")
        rows = [line.split(",") for line in equity.decode("utf-8-sig").splitlines()[1:]]
        start = cash * (len(FUNDS) if code == "PORTFOLIO" else 1)
        assert float(rows[-1][1]) == pytest.approx(start * (1 + strategy["total_return"]), abs=start * 1e-6)
        assert rows[-1][0] == DAILY and all(len(value.split(".")[1]) == 2 for row in rows for value in row[1:])
        page = (site / "funds" / f"{code}.html").read_text("utf-8")
        assert f'href="../backtests/csv/{code}.equity.csv"' in page and "rolling-sharpe-chart" in page
        if code == "PORTFOLIO":
            continue
        series = json.loads((site / "funds" / f"{code}.json").read_text("utf-8"))["series"]
        bars = [d for d, close in zip(series["dates"], series["close"], strict=True) if close is not None]
        assert [row[0] for row in rows] == [d for d in bars if d >= START]
        trades = json.loads((site / "backtests" / "trades" / f"{code}.json").read_text("utf-8"))
        listed = (site / "backtests" / "csv" / f"{code}.trades.csv").read_text("utf-8-sig").splitlines()[1:]
        assert [line.split(",")[:4] for line in listed] == [
            [code, FUNDS[code], t["signal_day"], t["entry_day"]] for t in trades
        ]
        assert sheet["strategy"]["closed_trades"] == sum(t["exit_day"] is not None for t in trades)
    assert episodes >= 5
    # An instance from before the equity ledger: its next run adds the stored days from their states.
    before = one.site()
    shutil.rmtree(one.root / "data" / "backtest_equity")
    one.publish(DAILY, DAILY)
    assert one.site() == before


def test_a_backtest_stored_by_the_rules_previous_version_names_the_commands_that_compute_its_signals_again(
    world, monkeypatch
):
    one = world("one")
    current = bt.fingerprint
    # The range as the rule's previous definition stored it (its version is in every state's fingerprint).
    monkeypatch.setattr(bt, "fingerprint", lambda *args: current(*args, RULE_VERSION - 1))
    one.publish(START, RANGE_END)
    monkeypatch.setattr(bt, "fingerprint", current)
    (run,) = one.publish(DAILY, DAILY)
    site = one.root / "site"
    assert json.loads((site / "reports" / f"{DAILY}.json").read_text("utf-8"))["backtest"] is None
    assert not (site / "backtests" / f"{DAILY}.json").exists(), "nothing traded on the old rule's signals"
    (state,) = materializations(run, "etf_backtest")
    error = state.metadata["error"].value
    assert error.startswith(f"The stored backtest and signals were made by version {RULE_VERSION - 1} of the rule")
    for asset in ("etf_indicators", "trade_signals"):
        assert f"dg launch --assets {asset} --partition-range {START}...{DAILY}" in error
