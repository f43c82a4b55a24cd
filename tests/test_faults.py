"""Faults injected through the Tushare test server into the daily run: what is published and what is sent.

Each test starts from the same price history (built once) and a fresh instance, runs the day as the
schedule would, and compares what lands on the site with a clean run's bytes.
"""

import json
import shutil

import dagster as dg
import pytest

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.settings import load_settings
from tests.conftest import history_keys, local_instance, use_env, vendor_tables, write_universe
from tests.tushare_server import VALID_TOKEN, Fault, TushareTestServer

DAY = "2024-06-28"
FUNDS = {f"5103{i:02d}.SH": f"基金{i}" for i in range(10)}
TAGS = {"dagster/asset_partition_range_start": DAY, "dagster/asset_partition_range_end": DAY}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    tables = vendor_tables(list(FUNDS), "2023-01-02", "2024-07-05")
    universe = write_universe(root / "universe.csv", FUNDS)
    server = TushareTestServer(tables).start()
    env = base_env(root / "history", root / "unused-site", universe, server.url)
    with pytest.MonkeyPatch.context() as mp, local_instance() as instance:
        use_env(mp, env)
        window = history_keys(DAY)
        history_tags = {
            "dagster/asset_partition_range_start": window[0],
            "dagster/asset_partition_range_end": window[-1],
        }
        job = build_definitions(load_settings()).resolve_job_def("daily_signals_job")
        assert job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("etf_daily_prices")], tags=history_tags
        ).success
    server.stop()
    yield {"root": root, "tables": tables, "universe": universe, "history": root / "history"}


def base_env(data_dir, site_dir, universe, url, **extra) -> dict:
    return {
        "ALCHEMY_DATA_DIR": str(data_dir),
        "ALCHEMY_PUBLISH_DIR": str(site_dir),
        "ALCHEMY_UNIVERSE": str(universe),
        "ALCHEMY_BACKTEST_START": DAY,
        "ALCHEMY_PRICE_SOURCE": "tushare",
        "ALCHEMY_NOTIFY_MAX_AGE_DAYS": "100000",
        "ALCHEMY_LATE_DATA_RETRY_SECONDS": "0",
        "TUSHARE_TOKEN": VALID_TOKEN,
        "TUSHARE_API_URL": url,
        "TUSHARE_RETRY_BASE_SECONDS": "0.01",
        "TUSHARE_TIMEOUT": "1",
        **extra,
    }


@pytest.fixture
def run_day(world, tmp_path, monkeypatch):
    """Runs DAY against a server with the given faults; returns what happened."""

    runs = iter(range(1000))

    def run(faults=(), tables=None, **extra):
        here = tmp_path / f"run{next(runs)}"
        data = here / "data"
        shutil.copytree(world["history"], data)
        server = TushareTestServer(tables or world["tables"], faults=list(faults)).start()
        site = here / "site"
        use_env(monkeypatch, base_env(data, site, world["universe"], server.url, **extra))
        defs = build_definitions(load_settings())
        try:
            with dg.instance_for_test() as instance:
                result = defs.resolve_job_def("daily_signals_job").execute_in_process(
                    instance=instance, tags=TAGS, raise_on_error=False
                )
                # Everything the run recorded: log lines, events, check descriptions, metadata.
                events = [
                    entry.user_message + (str(entry.dagster_event.event_specific_data) if entry.dagster_event else "")
                    for entry in instance.all_logs(result.run_id)
                ]
                with dg.build_sensor_context(
                    instance=instance, definitions=defs, resources={"notifier": defs.resources["notifier"]}
                ) as context:
                    tick = defs.resolve_sensor_def("notify_subscribers_sensor").evaluate_tick(context)
        finally:
            server.stop()
        report = site / "reports" / f"{DAY}.json"
        return {
            "success": result.success,
            "report": report.read_bytes() if report.exists() else None,
            "text": (site / "reports" / f"{DAY}.txt").read_bytes() if report.exists() else None,
            "notify": [r.partition_key for r in tick.run_requests],
            "calls": server.calls,
            "events": events,
        }

    return run


@pytest.fixture
def clean(run_day):
    outcome = run_day()
    assert outcome["success"] and outcome["report"] and outcome["notify"] == [DAY]
    return outcome


def test_a_wrong_token_fails_fast_publishes_nothing_and_never_shows_the_token(run_day):
    outcome = run_day(TUSHARE_TOKEN="sk-secret-but-wrong-0123456789")
    assert not outcome["success"]
    assert len(outcome["calls"]) == 1  # no retry, no second API
    assert outcome["report"] is None and outcome["notify"] == []
    everything = "\n".join(outcome["events"])
    assert "TUSHARE_TOKEN" in everything
    assert "sk-secret-but-wrong" not in everything


@pytest.mark.parametrize(
    "faults",
    [
        [Fault(http_status=500), Fault(http_status=503), Fault(http_status=502)],
        [Fault(code=50101, msg="系统繁忙"), Fault(code=-1, msg="内部错误")],
        [Fault(code=40203, msg="抱歉，您每分钟最多访问该接口500次")] * 2,
        [Fault(delay=1.5)],
    ],
    ids=["5xx-burst", "vendor-errors", "rate-limits", "timeout"],
)
def test_recoverable_faults_end_in_the_clean_report(run_day, clean, faults):
    outcome = run_day(faults)
    assert outcome["success"]
    assert outcome["report"] == clean["report"] and outcome["text"] == clean["text"]
    assert outcome["notify"] == [DAY]


def test_a_late_day_publishes_nothing_until_its_data_is_there(run_day, clean):
    # The vendor answers "no rows" for the day twice (both APIs, first attempt), then has it.
    outcome = run_day([Fault(empty=True), Fault(empty=True)])
    assert outcome["success"]
    assert any("not published yet" in e for e in outcome["events"])
    assert outcome["report"] == clean["report"]


def test_a_day_that_never_comes_publishes_and_sends_nothing(run_day):
    outcome = run_day([Fault(empty=True)] * 20, ALCHEMY_LATE_DATA_RETRIES="2")
    assert not outcome["success"]
    assert outcome["report"] is None and outcome["notify"] == []


def test_one_missing_fund_is_no_data_with_the_reason_and_the_others_are_unchanged(world, run_day, clean):
    tables = dict(world["tables"])
    gone = "510303.SH"
    daily = tables["fund_daily"]
    tables["fund_daily"] = daily[~((daily["ts_code"] == gone) & (daily["trade_date"] == DAY.replace("-", "")))]
    outcome = run_day(tables=tables)
    assert outcome["success"]
    got = {s["ts_code"]: s for s in json.loads(outcome["report"])["signals"]}
    want = {s["ts_code"]: s for s in json.loads(clean["report"])["signals"]}
    assert got[gone]["state"] == "NO_DATA" and "suspended, or missing from the vendor" in got[gone]["note"]
    assert {c: s for c, s in got.items() if c != gone} == {c: s for c, s in want.items() if c != gone}


def test_too_many_funds_without_data_blocks_publication_and_notification(world, run_day):
    tables = dict(world["tables"])
    daily = tables["fund_daily"]
    missing = list(FUNDS)[:6]  # over the default threshold of 5
    tables["fund_daily"] = daily[~(daily["ts_code"].isin(missing) & (daily["trade_date"] == DAY.replace("-", "")))]
    outcome = run_day(tables=tables)
    assert not outcome["success"]
    assert outcome["report"] is None and outcome["notify"] == []
    assert any("more than 5 funds without data" in e for e in outcome["events"])


def test_insane_bars_block_publication(world, run_day):
    tables = dict(world["tables"])
    daily = tables["fund_daily"].copy()
    row = (daily["ts_code"] == "510300.SH") & (daily["trade_date"] == DAY.replace("-", ""))
    daily.loc[row, "high"] = daily.loc[row, "low"] - 0.1
    tables["fund_daily"] = daily
    outcome = run_day(tables=tables)
    assert not outcome["success"] and outcome["report"] is None
    assert any("not sane" in e for e in outcome["events"])


def test_rerunning_a_day_rewrites_identical_bytes(run_day, clean, tmp_path):
    again = run_day()
    assert again["report"] == clean["report"] and again["text"] == clean["text"]
