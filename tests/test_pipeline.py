"""The whole chain on a real Dagster instance, with the tushare SDK talking HTTP to the test server.

Scenario: a fresh instance; the schedule fires at 18:00 on 2024-06-28, then on 2024-07-01; then an
analyst re-runs a range as a single-run backfill from the CLI; the sensor notifies subscribers.
"""

import base64
import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
import yaml

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.defs.partitions import HISTORY_WINDOW
from alchemy_pipeline.domain.control_plane import ceiling_after_late_data
from alchemy_pipeline.domain.market import calendar
from alchemy_pipeline.domain.signals.fast_path import classify, compute_indicators
from alchemy_pipeline.domain.signals.rule import RuleParams
from alchemy_pipeline.domain.site.report import build_report
from alchemy_pipeline.settings import load_settings
from tests.conftest import (
    DG,
    REPO_ROOT,
    history_keys,
    local_instance,
    materialize_sweep,
    tick_schedule,
    use_env,
    vendor_tables,
    write_universe,
)
from tests.tushare_server import VALID_TOKEN, TushareTestServer

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY, NEXT_DAY = "2024-06-28", "2024-07-01"
FUNDS = {
    "510300.SH": "沪深300ETF",
    "159915.SZ": "创业板ETF",
    "512880.SH": "证券ETF",
    "513500.SH": "标普500ETF",  # suspended on DAY
    "588000.SH": "科创50ETF",  # listed 10 trading days before DAY
}


def vendor():
    tables = vendor_tables(list(FUNDS), "2022-06-01", "2024-07-05")
    daily, adj = tables["fund_daily"], tables["fund_adj"]
    suspended = (daily["ts_code"] == "513500.SH") & (daily["trade_date"] == DAY.replace("-", ""))
    young = (daily["ts_code"] == "588000.SH") & (daily["trade_date"] < "20240617")
    young_adj = (adj["ts_code"] == "588000.SH") & (adj["trade_date"] < "20240617")
    return {"fund_daily": daily[~suspended & ~young], "fund_adj": adj[~young_adj]}


def launch(defs: dg.Definitions, instance, request: dg.RunRequest, job: str = "daily_signals_job"):
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        asset_selection=request.asset_selection,
        partition_key=request.partition_key,
        tags=dict(request.tags),
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def evaluate_schedule(defs, instance, day: str):
    when = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(18), SHANGHAI)
    return tick_schedule(defs, instance, "daily_signals_schedule", when)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    server = TushareTestServer(vendor()).start()
    env = {
        "ALCHEMY_ENV": "local",
        "ALCHEMY_DATA_DIR": str(tmp / "data"),
        "ALCHEMY_PUBLISH_DIR": str(tmp / "site"),
        "ALCHEMY_UNIVERSE": str(write_universe(tmp / "universe.csv", FUNDS)),
        "ALCHEMY_PRICE_SOURCE": "tushare",
        "ALCHEMY_BACKTEST_START": DAY,  # the first day the scenario publishes
        "ALCHEMY_SITE_URL": "https://signals.example.com",
        "TUSHARE_TOKEN": VALID_TOKEN,
        "TUSHARE_API_URL": server.url,
        # The scenario's days are in 2024; the age rule is tested on its own below.
        "ALCHEMY_NOTIFY_MAX_AGE_DAYS": "100000",
    }
    with pytest.MonkeyPatch.context() as mp, local_instance() as instance:
        use_env(mp, env)
        defs = build_definitions(load_settings())
        ticks = {}
        calls = {}
        for day in (DAY, NEXT_DAY):
            ticks[day] = evaluate_schedule(defs, instance, day)
            before = len(server.calls)
            for request in sorted(ticks[day].run_requests, key=lambda r: -int(r.tags["dagster/priority"])):
                launch(defs, instance, request)
            calls[day] = server.calls[before:]
        site = tmp / "site"
        daily_bytes = {d: (site / "reports" / f"{d}.json").read_bytes() for d in (DAY, NEXT_DAY)}
        backtest_bytes = {d: (site / "backtests" / f"{d}.json").read_bytes() for d in (DAY, NEXT_DAY)}
        yield {
            "tmp": tmp,
            "env": env,
            "server": server,
            "defs": defs,
            "instance": instance,
            "ticks": ticks,
            "calls": calls,
            "site": site,
            "daily_bytes": daily_bytes,
            "backtest_bytes": backtest_bytes,
        }
    server.stop()


def test_cold_start_fetches_the_missing_history_as_one_run_then_publishes_the_day(scenario):
    history, daily = sorted(scenario["ticks"][DAY].run_requests, key=lambda r: -int(r.tags["dagster/priority"]))
    window = history_keys(DAY)
    assert len(window) == HISTORY_WINDOW - 1
    assert [k.to_user_string() for k in history.asset_selection] == ["etf_daily_prices"]
    assert (history.tags["dagster/asset_partition_range_start"], history.tags["dagster/asset_partition_range_end"]) == (
        window[0],
        window[-1],
    )
    assert daily.tags["dagster/asset_partition_range_start"] == daily.tags["dagster/asset_partition_range_end"] == DAY
    # The history: each API's last day for every fund at once, then the rest of the window in one paged
    # range (the universe is the whole market here), far under the budget of 2 calls per fund + 4.
    # Then the day itself: one call per API.
    calls = scenario["calls"][DAY]
    history_rows = len(FUNDS) * (len(window) - 1)
    assert len(calls) == 2 * (1 + -(-history_rows // 2000)) + 2
    assert [(c["api_name"], c["params"].get("trade_date")) for c in calls[-2:]] == [
        ("fund_daily", DAY.replace("-", "")),
        ("fund_adj", DAY.replace("-", "")),
    ]
    assert (scenario["site"] / "reports" / f"{DAY}.json").exists()


def test_next_day_is_one_run_of_two_api_calls(scenario):
    requests = scenario["ticks"][NEXT_DAY].run_requests
    assert len(requests) == 1
    assert [c["api_name"] for c in scenario["calls"][NEXT_DAY]] == ["fund_daily", "fund_adj"]


def test_schedule_skips_exchange_holidays(scenario):
    result = evaluate_schedule(scenario["defs"], scenario["instance"], "2024-10-01")
    assert not result.run_requests
    assert "not a trading day" in result.skip_message


def test_schedule_refuses_days_past_the_calendars_horizon(scenario):
    # No trade_cal is cached in this scenario: the bundled calendar's horizon is the limit.
    horizon = calendar.bundled_last_day()
    weekday_after = next(
        horizon + dt.timedelta(days=n) for n in range(1, 8) if (horizon + dt.timedelta(days=n)).weekday() < 5
    )
    result = evaluate_schedule(scenario["defs"], scenario["instance"], weekday_after.isoformat())
    assert not result.run_requests
    assert f"past {horizon}" in result.skip_message and "trading_calendar" in result.skip_message


def test_report_json_contract(scenario):
    report = json.loads((scenario["site"] / "reports" / f"{DAY}.json").read_text("utf-8"))
    assert report["trade_date"] == DAY
    assert report["strategy"] == {"name": "double_ma", "short": 11, "long": 22}
    assert [s["ts_code"] for s in report["signals"]] == list(FUNDS)
    for signal in report["signals"]:
        assert {"ts_code", "name", "state", "close", "ma_short", "ma_long", "since", "days", "pct"} <= set(signal)
        if signal["state"] in ("BUY", "SELL", "HOLD", "EMPTY"):
            assert all(isinstance(signal[k], float) for k in ("close", "ma_short", "ma_long"))
        if signal["since"] is not None:
            dt.date.fromisoformat(signal["since"])
            assert isinstance(signal["days"], int) and isinstance(signal["pct"], float)
    states = {s["ts_code"]: s["state"] for s in report["signals"]}
    assert states["513500.SH"] == "NO_DATA"
    assert states["588000.SH"] == "INSUFFICIENT_HISTORY"
    assert report["notice"] is None  # real vendor data carries no demo stamp


def test_published_signals_are_the_rule_applied_to_the_vendor_data(scenario):
    tables = vendor()
    bars = tables["fund_daily"].merge(tables["fund_adj"], on=["ts_code", "trade_date"])
    bars["trade_date"] = pd.to_datetime(bars["trade_date"], format="%Y%m%d")
    keys = [*history_keys(DAY), DAY]
    sessions = [dt.date.fromisoformat(k) for k in keys]
    window = bars[bars["trade_date"].between(pd.Timestamp(keys[0]), pd.Timestamp(DAY))]
    params = RuleParams()
    universe = pd.DataFrame({"ts_code": list(FUNDS), "name": list(FUNDS.values())})
    expected = build_report(
        classify(compute_indicators(window, sessions, [sessions[-1]], params), universe, [sessions[-1]], params), params
    )
    report = json.loads(scenario["daily_bytes"][DAY])
    # The backtest starts on DAY: nothing can have filled yet under next-open execution, and no fund has traded.
    summary = report.pop("backtest")
    assert (summary["start"], summary["execution"], summary["funds"]) == (DAY, "next_open", [])
    assert summary["portfolio"]["strategy"] == {"total_return": 0.0, "cagr": None}
    assert report == expected


def test_text_report_has_the_seed_sections_and_wording(scenario):
    text = (scenario["site"] / "reports" / f"{DAY}.txt").read_text("utf-8")
    report = json.loads(scenario["daily_bytes"][DAY])
    for section in ("可买标的:", "可卖标的:", "持仓标的:", "空仓标的:", "无数据标的:"):
        assert section in text
    assert text.index("可买标的:") < text.index("可卖标的:") < text.index("持仓标的:") < text.index("空仓标的:")
    for signal in report["signals"]:
        who = f"{signal['name']}({signal['ts_code']})"
        line = next(line for line in text.splitlines() if line.startswith(who))
        if signal["state"] == "HOLD" and signal["since"]:
            assert line == f"{who}于{signal['since']}日买入, 持有{signal['days']}天, 盈利{signal['pct']:.2f}%"
        if signal["state"] == "EMPTY" and signal["since"]:
            assert line == f"{who}于{signal['since']}日卖出, 空仓{signal['days']}天, 空仓期涨幅{signal['pct']:.2f}%"
        if signal["state"] == "BUY":
            assert line.startswith(f"{who}可买, 收盘价{signal['close']:.3f}, 11日均线")


def test_site_index_and_history_list_every_published_day(scenario):
    history = json.loads((scenario["site"] / "history.json").read_text("utf-8"))
    assert history["days"] == [NEXT_DAY, DAY]
    index = (scenario["site"] / "index.html").read_text("utf-8")
    assert f'href="reports/{NEXT_DAY}.html"' in index and f'href="reports/{DAY}.html"' in index
    assert not list(scenario["site"].rglob("*.tmp"))  # atomic writes leave no temporary files


# A code location like the project's, but with Dagster's multiprocess executor: each step in a process of its own.
MULTIPROCESS_LOCATION = """
import dagster as dg
from alchemy_pipeline.definitions import defs

defs = dg.Definitions(assets=defs.assets, resources=defs.resources, executor=dg.multiprocess_executor)
"""


def test_steps_share_only_what_is_stored_so_a_process_per_step_publishes_the_same(scenario, tmp_path):
    # The steps hand each other nothing but what the IO manager stores: under the multiprocess executor a
    # range writes the same files and reports as the project's one-process runs wrote.
    data, site, home = tmp_path / "data", tmp_path / "site", tmp_path / "home"
    shutil.copytree(scenario["tmp"] / "data" / "etf_daily_prices", data / "etf_daily_prices")
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "multiprocess_location.py").write_text(MULTIPROCESS_LOCATION)
    command, env = materialize_cli(scenario, ["--partition-range", f"{DAY}...{NEXT_DAY}"])
    # The same launch, pointed at a module of its own rather than the project's code location.
    at = command.index("--target-path")
    command[at : at + 2] = ["-m", "multiprocess_location"]
    env.update(ALCHEMY_DATA_DIR=str(data), ALCHEMY_PUBLISH_DIR=str(site), DAGSTER_HOME=str(home))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])])
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Executing steps using multiprocess executor" in done.stderr
    for day in (DAY, NEXT_DAY):
        for asset in ("etf_daily_prices", "etf_indicators", "trade_signals", "etf_backtest"):
            path = Path(asset) / f"{day}.parquet"
            assert (data / path).read_bytes() == (scenario["tmp"] / "data" / path).read_bytes(), path
        for path in [Path("reports") / f"{day}{suffix}" for suffix in (".json", ".txt", ".html")] + [
            Path("backtests") / f"{day}.json"
        ]:
            assert (site / path).read_bytes() == (scenario["site"] / path).read_bytes(), path


def materialize_cli(scenario, partitions: list[str], **env) -> tuple[list[str], dict]:
    """The CLI command that materializes every asset for ``partitions``, and its environment."""
    env = {**os.environ, **scenario["env"], **env}
    env.pop("DAGSTER_HOME", None)
    command = [DG, "launch", "--target-path", str(REPO_ROOT), "--assets", "*signal_report", *partitions]
    return command, env


def test_cli_range_backfill_is_one_run_and_reproduces_the_daily_bytes(scenario):
    # The range run reads one history window for both days, and backtests both at once; each daily run read
    # its own. Same bytes: the reports and the backtest's documents.
    command, env = materialize_cli(scenario, ["--partition-range", f"{DAY}...{NEXT_DAY}"])
    done = subprocess.run(command, env=env, cwd=scenario["tmp"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("RUN_SUCCESS") == 1
    for day in (DAY, NEXT_DAY):
        assert (scenario["site"] / "reports" / f"{day}.json").read_bytes() == scenario["daily_bytes"][day]
        assert (scenario["site"] / "backtests" / f"{day}.json").read_bytes() == scenario["backtest_bytes"][day]


def test_two_concurrent_runs_of_one_day_leave_a_whole_identical_site(scenario, tmp_path):
    # Two processes publish the same day at once (a rerun racing a retry, say), into a fresh site.
    command, env = materialize_cli(scenario, ["--partition", DAY], ALCHEMY_PUBLISH_DIR=str(tmp_path / "site"))
    runs = [
        subprocess.Popen(command, env=env, cwd=scenario["tmp"], stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()[-3000:]
    site = tmp_path / "site"
    assert (site / "reports" / f"{DAY}.json").read_bytes() == scenario["daily_bytes"][DAY]
    assert json.loads((site / "history.json").read_text("utf-8"))["days"] == [DAY]
    assert not list(site.rglob("*.tmp"))


def test_a_range_without_its_history_fails_once_before_any_fetch_naming_every_stretch_and_one_command(
    scenario, tmp_path
):
    # A backtest from earlier than the range, on an instance with nothing stored: the range's indicators need
    # the window of prices before it, and the backtest the signals since its start and the prices behind them.
    start = "2024-06-03"
    command, env = materialize_cli(
        scenario,
        ["--partition-range", f"{DAY}...{NEXT_DAY}"],
        ALCHEMY_DATA_DIR=str(tmp_path / "empty"),
        ALCHEMY_BACKTEST_START=start,
    )
    calls = len(scenario["server"].calls)
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert len(scenario["server"].calls) == calls  # nothing fetched
    assert not (tmp_path / "empty" / "etf_daily_prices").exists()
    (failure,) = {line for line in done.stderr.splitlines() if "This run reads history that is not stored" in line}
    window, before = history_keys(DAY), history_keys(DAY)[-(len(history_keys(DAY)) - history_keys(DAY).index(start)) :]
    assert f"etf_daily_prices {window[0]}...{window[-1]} ({len(window)} days; for the 300-day window" in failure
    assert (
        f"trade_signals {start}...{before[-1]} ({len(before)} days; for the backtest from its start, {start}" in failure
    )
    behind = history_keys(start)
    assert f"etf_daily_prices {behind[0]}...{before[-1]} ({len(behind) + len(before)} days;" in failure
    assert failure.rstrip().endswith(
        f"one command makes it all and then runs this range: scripts/backfill {DAY} {NEXT_DAY}"
    )
    assert "STEP_UP_FOR_RETRY" not in done.stderr


def test_a_daily_report_shows_the_portfolio_chart_and_plottable_numbers_in_the_ui(scenario):
    records = (
        scenario["instance"]
        .fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("signal_report"), asset_partitions=[NEXT_DAY]),
            limit=1,
            ascending=True,  # the daily run's, before any test re-runs the day
        )
        .records
    )
    metadata = records[0].asset_materialization.metadata
    report = json.loads((scenario["site"] / "reports" / f"{NEXT_DAY}.json").read_text("utf-8"))
    states = [e["state"] for e in report["signals"]]
    assert (metadata["buy_count"].value, metadata["sell_count"].value) == (states.count("BUY"), states.count("SELL"))
    portfolio = report["backtest"]["portfolio"]
    assert metadata["portfolio_strategy_return"].value == portfolio["strategy"]["total_return"]
    assert metadata["portfolio_buy_and_hold_return"].value == portfolio["buy_and_hold"]["total_return"]
    image = re.fullmatch(
        r"!\[portfolio equity\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", metadata["portfolio_equity"].value
    )
    svg = ElementTree.fromstring(base64.b64decode(image.group(1)))
    curves = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(curves) >= 2  # the strategy and buy & hold, each split where it has no value


def test_a_scheduled_run_may_wait_through_every_late_data_retry_before_run_monitoring_ends_it(scenario):
    # deploy/dagster.yaml's run monitoring ends a run after an hour; a vendor-late day is retried for four
    # (8 tries, 30 minutes apart). Each scheduled run carries Dagster's own max-runtime tag, from the same
    # settings and the same rule as the small profile's control plane, which stays up as long.
    instance_wide = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())["run_monitoring"]
    settings = load_settings(scenario["env"])
    late_span = settings.late_data_retries * settings.late_data_retry_seconds
    ceiling = ceiling_after_late_data(settings.late_data_retries, settings.late_data_retry_seconds)
    for tick in scenario["ticks"].values():
        for request in tick.run_requests:
            allowed = int(request.tags["dagster/max_runtime"])
            assert allowed == ceiling.total_seconds() >= late_span + 3600 > instance_wide["max_runtime_seconds"]


def test_sensor_notifies_the_newest_day_once(scenario):
    defs, instance = scenario["defs"], scenario["instance"]
    sensor = defs.resolve_sensor_def("notify_subscribers_sensor")
    resources = {"notifier": defs.resources["notifier"]}
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=resources))
    assert [r.partition_key for r in first.run_requests] == [NEXT_DAY]
    assert first.cursor == NEXT_DAY
    launch(defs, instance, first.run_requests[0], job="notify_subscribers")
    outbox = scenario["site"] / "outbox"
    assert [p.name for p in outbox.iterdir()] == [f"{NEXT_DAY}.json"]
    message = json.loads((outbox / f"{NEXT_DAY}.json").read_text("utf-8"))
    assert message["subject"] == f"Double MA Strategy Trade Signal: {NEXT_DAY} - A Share"
    assert message["subject"].isascii() and len(message["subject"]) < 100
    # The published text's signals, each crossing fund's page linked, and the backtest's one line.
    published = (scenario["site"] / "reports" / f"{NEXT_DAY}.txt").read_text("utf-8")
    signals, backtest = published.rsplit("\n回测(", 1)
    report = json.loads((scenario["site"] / "reports" / f"{NEXT_DAY}.json").read_text("utf-8"))
    links = [f"  https://signals.example.com/funds/{e['ts_code']}.html" for e in report["signals"]
             if e["state"] in ("BUY", "SELL")]  # fmt: skip
    assert [line for line in signals.splitlines() if "https" not in line] == [
        line for line in message["body"].split("\n回测(")[0].splitlines() if "https" not in line
    ]
    assert [line for line in message["body"].splitlines() if line.startswith("  https")] == links
    assert f"回测({backtest.splitlines()[0]} {backtest.splitlines()[1]}" in message["body"].splitlines()
    assert f"https://signals.example.com/reports/{NEXT_DAY}.html" in message["body"]

    # A rerun of the notification job sends nothing again.
    sent_at = (outbox / f"{NEXT_DAY}.json").stat().st_mtime_ns
    launch(defs, instance, first.run_requests[0], job="notify_subscribers")
    assert (outbox / f"{NEXT_DAY}.json").stat().st_mtime_ns == sent_at

    # Re-materializing days (a backfill ending on the notified day) triggers nothing.
    launch(defs, instance, dg.RunRequest(tags={
        "dagster/asset_partition_range_start": DAY, "dagster/asset_partition_range_end": NEXT_DAY,
    }))  # fmt: skip
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=resources, cursor=first.cursor)
    again = sensor.evaluate_tick(context)
    assert not again.run_requests
    assert "not newer" in again.skip_message


SWEEP_GRID = {"short_from": 9, "short_to": 12, "long_from": 20, "long_to": 24}


def test_an_analyst_sweeps_a_grid_from_run_config_and_sees_it_in_the_ui_and_on_the_site(scenario):
    config = {**SWEEP_GRID, "start": "2024-01-02"}
    result = materialize_sweep(scenario["defs"], scenario["instance"], config)
    metadata = result.asset_materializations_for_node("ma_sweep")[0].metadata
    site = scenario["site"]
    document = json.loads((site / "lab" / "latest" / "sweep.json").read_text("utf-8"))
    # The period: the config's start to the latest published day (the default end), read from the stored prices.
    assert (document["start"], document["end"]) == ("2024-01-02", NEXT_DAY)
    assert [f["ts_code"] for f in document["funds"]] == list(FUNDS)
    assert (site / "lab" / result.run_id / "sweep.json").read_bytes() == (site / "lab/latest/sweep.json").read_bytes()
    standing = document["portfolio"]["standing"]
    assert metadata["pairs"].value == len(document["portfolio"]["pairs"]) == 4 * 5
    assert metadata["split_day"].value == document["split_day"]
    assert metadata["production_out_of_sample_rank"].value == standing["production"]["out_of_sample_rank"]
    assert metadata["robustness"].value == standing["robustness"]["share"]
    assert metadata["page"].value == f"https://signals.example.com/lab/{result.run_id}/index.html"
    image = re.fullmatch(r"!\[[^]]+\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", metadata["heatmap"].value)
    assert base64.b64decode(image.group(1)).startswith(b"\x89PNG")
    rules = (site / "rules.html").read_text("utf-8")
    assert 'href="lab/latest/index.html"' in rules and f"{document['start']} 至 {document['end']}" in rules
    assert "ma_sweep" in {key.to_user_string() for key in scenario["defs"].resolve_asset_graph().get_all_asset_keys()}
    assert "ma_sweep" not in {
        key.to_user_string()
        for key in scenario["defs"].resolve_job_def("daily_signals_job").asset_layer.selected_asset_keys
    }


def test_a_sweep_with_a_bad_grid_fails_from_the_cli_naming_the_problem_and_writes_nothing(scenario, tmp_path):
    env = {**os.environ, **scenario["env"], "ALCHEMY_PUBLISH_DIR": str(tmp_path / "site")}
    env.pop("DAGSTER_HOME", None)
    config = {"ops": {"ma_sweep": {"config": {**SWEEP_GRID, "short_from": 30, "short_to": 40}}}}
    command = [DG, "launch", "--target-path", str(REPO_ROOT), "--assets", "ma_sweep"]
    command += ["--config-json", json.dumps(config)]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "no pair has short < long: the shorts run 30..40 and the longs 20..24" in done.stderr
    assert "STEP_UP_FOR_RETRY" not in done.stderr
    assert not (tmp_path / "site").exists()
