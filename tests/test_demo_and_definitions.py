"""The README's demo command and the code location, as a user runs them."""

import json
import os
import shutil
import subprocess
import sys

from tests.conftest import REPO_ROOT


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALCHEMY_", "TUSHARE_", "DAGSTER_"))}
    return {**env, **extra}


def test_demo_publishes_a_stamped_report_with_no_token_and_no_network(tmp_path):
    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "alchemy_pipeline.demo", "2024-06-30"],  # a Sunday: the Friday is published
        env=clean_env(DAGSTER_HOME=str(tmp_path)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reports = tmp_path / ".alchemy" / "site" / "reports"
    # Progress, the report and where things are; Dagster's own log goes to the file named last.
    lines = done.stdout.splitlines()
    assert lines[0] == "2024-06-30 is not a trading day: publishing 2024-06-28, the trading day before it"
    # A fresh instance: the prices, then the signals the backtest reads from its start, then the year to the
    # day (2023-06-29 is the first trading day of it), so the fund pages have a year to chart.
    assert lines[1] == "Running: fetch the price history 2015-01-05...2023-06-28 that 2023-06-29 needs"
    assert lines[2] == "Running: compute the signals 2015-01-05...2023-06-28 the backtest reads"
    assert lines[3] == "Running: publish the signals of 2023-06-29...2024-06-28"
    assert lines[4] == (reports / "2024-06-28.txt").read_text("utf-8").splitlines()[0]
    assert f"  {reports / '2024-06-28.txt'}" in lines
    log = tmp_path / ".alchemy" / "dagster" / "dagster.log"
    assert lines[-1] == f"Dagster's log: {log}"
    assert "INFO" in log.read_text("utf-8")
    assert done.stderr == "" and "DEBUG" not in done.stdout
    report = json.loads((reports / "2024-06-28.json").read_text("utf-8"))
    assert report["notice"] == "DEMO DATA - not market prices"
    assert len(report["signals"]) >= 35
    assert "DEMO DATA - not market prices" in (reports / "2024-06-28.txt").read_text("utf-8")
    # The backtest from 2015-01-05: its summary in the report, its figures and every fund's trades on the site.
    assert report["backtest"]["start"] == "2015-01-05" and len(report["backtest"]["funds"]) >= 35
    backtests = tmp_path / ".alchemy" / "site" / "backtests"
    assert json.loads((backtests / "2024-06-28.json").read_text("utf-8"))["as_of"] == "2024-06-28"
    assert len(list((backtests / "trades").glob("*.json"))) == len(report["signals"])
    assert "DEMO DATA - not market prices" in (reports / "2024-06-28.html").read_text("utf-8")
    fund = json.loads((tmp_path / ".alchemy" / "site" / "funds" / "510300.SH.json").read_text("utf-8"))
    assert fund["series"]["dates"][0] == "2023-06-29" and fund["series"]["dates"][-1] == "2024-06-28"
    # Run again for the same day: the year is there, the day alone is published again.
    again = subprocess.run([sys.executable, "-m", "alchemy_pipeline.demo", "2024-06-28"],
                           env=clean_env(DAGSTER_HOME=str(tmp_path)), cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert again.returncode == 0 and again.stdout.splitlines()[0] == "Running: publish the signals of 2024-06-28"
    # The runs are in the instance's SQLite storage, as `dg dev` will show them.
    assert list((tmp_path / ".alchemy" / "dagster" / "storage").rglob("runs.db"))


def test_dagster_validates_the_code_location(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "alchemy_pipeline.definitions"],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Validation successful" in done.stdout + done.stderr


def test_a_bad_setting_stops_the_code_location_naming_it(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "alchemy_pipeline.definitions"],
        env=clean_env(ALCHEMY_PRICE_SOURCE="tushare"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "TUSHARE_TOKEN" in done.stdout + done.stderr
