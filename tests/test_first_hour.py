"""A new user's first hour, through the commands the README gives: scripts/demo, scripts/backfill and the
Dagster CLI, run as processes against the Tushare test server.

Scenario: five funds; on a fresh instance one `scripts/backfill` publishes a month whose one day has a
broken bar; wrong inputs are answered in one line before any vendor call.
"""

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from tests.conftest import BUNDLED_DAYS, DG, REPO_ROOT, history_keys, vendor_tables, write_universe
from tests.tushare_server import VALID_TOKEN, TushareTestServer

FUNDS = {
    "510300.SH": "沪深300ETF",
    "159915.SZ": "创业板ETF",
    "512880.SH": "证券ETF",
    "513500.SH": "标普500ETF",
    "588000.SH": "科创50ETF",
}
START, END = "2024-06-03", "2024-06-28"
BAD_DAY = "2024-06-19"  # one fund's high is below its low


def vendor():
    tables = vendor_tables(list(FUNDS), "2023-01-02", "2024-07-05")
    daily = tables["fund_daily"].copy()
    row = (daily["ts_code"] == "512880.SH") & (daily["trade_date"] == BAD_DAY.replace("-", ""))
    daily.loc[row, "high"] = daily.loc[row, "low"] - 0.01
    return {**tables, "fund_daily": daily}


def command_env(root, server_url: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALCHEMY_", "TUSHARE_", "DAGSTER_"))}
    return {
        **env,
        "DAGSTER_HOME": str(root),
        "ALCHEMY_DATA_DIR": str(root / "data"),
        "ALCHEMY_PUBLISH_DIR": str(root / "site"),
        "ALCHEMY_UNIVERSE": str(write_universe(root / "universe.csv", FUNDS)),
        "ALCHEMY_BACKTEST_START": START,  # the backtest starts with the range the tests publish
        "TUSHARE_TOKEN": VALID_TOKEN,
        "TUSHARE_API_URL": server_url,
        **extra,
    }


def fresh_home(root):
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", root / "dagster.yaml")
    return root


@pytest.fixture(scope="module")
def server():
    with TushareTestServer(vendor()) as running:
        yield running


@pytest.fixture(scope="module")
def backfilled(server, tmp_path_factory):
    root = fresh_home(tmp_path_factory.mktemp("backfill"))
    done = subprocess.run(
        [REPO_ROOT / "scripts" / "backfill", START, END],
        env=command_env(root, server.url),
        cwd=root,  # the instance's relative paths (dagster.yaml) resolve here
        capture_output=True,
        text=True,
        timeout=600,
    )
    calls = list(server.calls)
    server.calls.clear()
    return {"root": root, "done": done, "calls": calls}


def test_one_command_backfills_a_range_on_a_fresh_instance_and_sums_it_up(backfilled):
    done, site = backfilled["done"], backfilled["root"] / "site"
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""  # Dagster's own log is in the file the summary names
    lines = done.stdout.splitlines()
    history = history_keys(START)
    assert lines[:2] == [
        f"Running: fetch the price history {history[0]}...{history[-1]} that {START} needs",
        f"Running: publish the signals of {START}...{END}",
    ]
    assert len(lines) == 3
    days = len(BUNDLED_DAYS.calendar.sessions(START, END))
    assert lines[2].startswith(
        f"Published {days - 1} of {days} trading days ({START}...{END}); held back 1: {BAD_DAY} (1 bars not sane"
    )
    assert f"reports in {site / 'reports'}" in lines[2]
    assert f"Dagster's log: {backfilled['root'] / '.alchemy' / 'dagster' / 'dagster.log'}" in lines[2]
    published = json.loads((site / "history.json").read_text("utf-8"))["days"]
    assert len(published) == days - 1 and BAD_DAY not in published and published[0] == END  # newest first


def test_the_backfill_fetches_no_day_twice(backfilled):
    # Per API: the history run asks for its last day, then the rest of its range in one paged call; the
    # range run, likewise. Five funds are the whole market here, so each rest is one whole-market call.
    calls = backfilled["calls"]
    assert len(calls) == 8
    seen = set()
    for call in calls:
        params = call["params"]
        span = (
            (params.get("trade_date"),) * 2 if params.get("trade_date") else (params["start_date"], params["end_date"])
        )
        for earlier in seen:
            assert call["api_name"] != earlier[0] or span[1] < earlier[1] or span[0] > earlier[2], (call, earlier)
        seen.add((call["api_name"], *span))


def test_the_bad_day_is_held_back_and_named_in_checks_tags_and_metadata(backfilled, monkeypatch):
    root = backfilled["root"]
    assert not (root / "site" / "reports" / f"{BAD_DAY}.json").exists()
    monkeypatch.chdir(root)  # dagster.yaml's storage paths are relative
    with dg.DagsterInstance.from_config(str(root)) as instance:
        runs = instance.get_runs()
        assert [(r.tags["alchemy/run"], r.tags["alchemy/started_by"]) for r in reversed(runs)] == [
            ("history", "analyst"),
            ("backfill", "analyst"),
        ]
        assert runs[0].job_name == "daily_signals_job" and runs[0].tags["alchemy/held_back"] == BAD_DAY
        published = instance.get_materialized_partitions(dg.AssetKey("signal_report"))
        assert len(published) == len(BUNDLED_DAYS.calendar.sessions(START, END)) - 1 and BAD_DAY not in published
        checks = [
            entry.dagster_event.event_specific_data
            for entry in instance.all_logs(runs[0].run_id)
            if entry.dagster_event and entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        bars = next(c for c in checks if c.check_name == "bars_are_valid")
        assert not bars.passed and bars.description.endswith(f"Held back from publication: {BAD_DAY}")
        newest = instance.get_latest_materialization_event(dg.AssetKey("signal_report")).asset_materialization
        assert newest.partition == END
        assert list(newest.metadata["held_back"].value) == [BAD_DAY]


def test_the_held_back_day_leaves_no_trace_in_any_backtest_file(backfilled):
    root = backfilled["root"]
    site, states = root / "site", root / "data" / "etf_backtest"
    assert not (site / "backtests" / f"{BAD_DAY}.json").exists()
    for trades in (site / "backtests" / "trades").glob("*.json"):
        for trade in json.loads(trades.read_text("utf-8")):
            assert BAD_DAY not in (trade["entry_day"], trade["exit_day"], trade["signal_day"], trade["exit_signal_day"])
    for data in (site / "funds").glob("*.json"):
        assert BAD_DAY not in json.loads(data.read_text("utf-8"))["series"]["dates"], data.name
    sheets = list((site / "backtests" / "tearsheets").glob("*.json"))
    downloads = list((site / "backtests" / "csv").glob("*.csv"))
    assert len(sheets) > 1 and len(downloads) == 2 * len(sheets)
    for published in sheets + downloads:
        assert BAD_DAY not in published.read_text("utf-8-sig"), published.name
    # Stored for the day after to go on from: the day before's state, unchanged.
    before = BUNDLED_DAYS.calendar.sessions(START, BAD_DAY)[-2].isoformat()
    held, previous = (
        pd.read_parquet(states / f"{day}.parquet").drop(columns="trade_date") for day in (BAD_DAY, before)
    )
    pd.testing.assert_frame_equal(held, previous)


def latest_closed_day() -> dt.date:
    return BUNDLED_DAYS.latest_closed_day(dt.datetime.now(ZoneInfo("Asia/Shanghai")))


WRONG_INPUTS = [
    (["scripts/demo", "2014-06-03"], {}, "scripts/demo: 2014-06-03 is before 2015-01-05"),
    (["scripts/demo", "NOT_CLOSED"], {}, "has not closed yet: the latest trading day published by now is"),
    (["scripts/demo", "2024-13-01"], {}, "scripts/demo: '2024-13-01' is not a date: write it as YYYY-MM-DD"),
    (["scripts/demo"], {"ALCHEMY_PRICE_SOURCE": "bogus"}, "ALCHEMY_PRICE_SOURCE='bogus' is not supported"),
    (
        ["scripts/backfill", START, END],
        {"DAGSTER_EVENT_BATCH_SIZE": "x"},
        "DAGSTER_EVENT_BATCH_SIZE='x' is not a whole",
    ),
    (["scripts/backfill", "2024-06-08", END], {}, "2024-06-08 is a Saturday, not a trading day: the nearest"),
    (["scripts/backfill", "2024-06-10", END], {}, "2024-06-10 is a holiday of the Shanghai exchange (a Monday)"),
    (["scripts/backfill", "2014-06-03", END], {}, "2014-06-03 is before 2015-01-05"),
    (["scripts/backfill", END, START], {}, f"the range ends on {START}, before it starts on {END}"),
    (["scripts/backfill", START], {}, "takes two trading days, START END (YYYY-MM-DD)"),
]


@pytest.mark.parametrize(("command", "extra", "message"), WRONG_INPUTS, ids=[" ".join(c) for c, _, _ in WRONG_INPUTS])
def test_a_wrong_input_is_answered_in_one_line_before_any_work(command, extra, message, server, tmp_path):
    home = fresh_home(tmp_path / "home")
    args = [str(latest_closed_day() + dt.timedelta(days=14)) if a == "NOT_CLOSED" else a for a in command[1:]]
    done = subprocess.run(
        [REPO_ROOT / command[0], *args],
        env=command_env(home, server.url, **extra),
        capture_output=True,
        text=True,
        timeout=10,  # the bound: an answer, not a wait
    )
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr and done.stdout == ""
    assert server.calls == [] and not (home / "data").exists() and not (home / ".alchemy").exists()


def dg_launch(home, server_url: str, partition_range: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DG, "launch", "--target-path", str(REPO_ROOT), "--assets", "*signal_report", "--partition-range",
         partition_range],
        env=command_env(home, server_url),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip


def test_dg_launch_refuses_a_range_ending_on_a_holiday_before_any_fetch(server, tmp_path):
    # Dagster checks that a range's ends are partitions before the project's code runs: its own message.
    done = dg_launch(fresh_home(tmp_path), server.url, f"2024-06-10...{END}")
    assert done.returncode != 0 and "`2024-06-10`" in done.stderr
    assert server.calls == []


def test_dg_launch_refuses_a_reversed_range_once_without_retrying(server, tmp_path):
    done = dg_launch(fresh_home(tmp_path), server.url, f"{END}...{START}")
    assert done.returncode != 0
    assert f"The range {END}...{START} holds no trading day: give the earlier day first" in done.stderr
    assert "STEP_UP_FOR_RETRY" not in done.stderr and server.calls == []
    assert "SupersessionWarning" not in done.stderr  # dg's command, not the superseded `dagster asset materialize`


def test_a_run_that_fails_ends_the_command_with_one_line_naming_why(server, tmp_path):
    # A refused token: the run fails once, without retries, and the command says why in one line.
    home = fresh_home(tmp_path / "home")
    done = subprocess.run(
        [REPO_ROOT / "scripts" / "demo", END],
        env=command_env(home, server.url, TUSHARE_TOKEN="not-a-valid-token"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith("Running: fetch the price history")
    [line] = done.stderr.splitlines()
    assert "failed: etf_daily_prices failed:" in line and "TUSHARE_TOKEN" in line and "Dagster's log:" in line
    assert "not-a-valid-token" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not (home / "site").exists()


def test_the_benchmark_runs_the_documented_range_command_with_its_settings():
    from benchmarks.scenario import RANGE_COMMAND_EXPORTS, USER_COMMANDS

    page = (REPO_ROOT / "docs" / "backfills.md").read_text("utf-8")
    block = next(b for b in page.split("```bash\n")[1:] if "--partition-range" in b.split("```")[0]).split("```")[0]
    exports = dict(re.findall(r"^export (DAGSTER_(?!HOME)\w+)=(\S+)", block, re.MULTILINE))
    assert exports == RANGE_COMMAND_EXPORTS
    command = " ".join(block.replace("\\\n", " ").split())
    benchmark = USER_COMMANDS["readme_cli_4_5y"]("START", "END")
    assert benchmark[0].endswith("/.venv/bin/dg") and ".venv/bin/dg launch" in command
    assert " ".join(benchmark[1:-1]).replace("*signal_report", "'*signal_report'") in command
