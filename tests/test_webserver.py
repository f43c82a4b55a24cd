"""The Dagster UI's server, started as a user starts it, answers GraphQL with the assets' lineage."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.aws import free_port
from tests.conftest import REPO_ROOT

QUERY = "{ assetNodes { assetKey { path } groupName dependencyKeys { path } description } }"


def test_webserver_serves_the_asset_lineage(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALCHEMY_", "TUSHARE_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(tmp_path), ALCHEMY_DATA_DIR=str(tmp_path / "data"))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", str(REPO_ROOT / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "dagster-webserver did not start within 180 s"
                time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql",
            data=json.dumps({"query": QUERY}).encode(),
            headers={"Content-Type": "application/json"},
        )
        # The code location loads in the background after the server answers: ask until it is there.
        while True:
            answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
            nodes = (answer.get("data") or {}).get("assetNodes") or []
            if nodes or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lineage = {n["assetKey"]["path"][0]: sorted(d["path"][0] for d in n["dependencyKeys"]) for n in nodes}
    assert lineage == {
        "etf_daily_prices": [],
        "etf_indicators": ["etf_daily_prices"],
        "trade_signals": ["etf_indicators"],
        # Each day's backtest goes on from the day before's state.
        "etf_backtest": ["etf_backtest", "etf_daily_prices", "trade_signals"],
        # Publication reads the day's bars too: a day whose bars break the rules is held back.
        "signal_report": ["etf_backtest", "etf_daily_prices", "trade_signals"],
        "trading_calendar": [],
        # The parameter lab reads the stored prices only, and is not in the daily job.
        "ma_sweep": ["etf_daily_prices"],
    }
    groups = {n["assetKey"]["path"][0]: n["groupName"] for n in nodes}
    assert groups.pop("trading_calendar") == "reference_data"
    assert groups.pop("etf_backtest") == groups.pop("ma_sweep") == "etf_backtest"
    assert set(groups.values()) == {"etf_signals"} and all(n["description"] for n in nodes)
