"""Run monitoring and a day the vendor publishes late, under a real ``dagster-daemon`` with the production
instance's settings on PostgreSQL (its own file, so that the suite's workers share the daemon tests)."""

import datetime as dt
import json
import os
import subprocess
import sys
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT, tick_schedule, use_env, vendor_tables, write_universe
from tests.test_control_plane import FUNDS, production_instance, wait_for
from tests.tushare_server import VALID_TOKEN, Fault, TushareTestServer


def test_a_day_the_vendor_publishes_late_outlasts_the_instances_max_runtime_and_is_not_ended(postgres, tmp_path):
    # deploy/dagster.yaml's run monitoring with its hour scaled down to 3 s, a vendor-late day retried for
    # longer than that: the scheduled run, which carries the late-data span plus an hour, finishes; the same
    # run launched without that tag is ended by run monitoring, as production's would be after an hour.
    start, day, next_day = "2024-06-27", "2024-06-28", "2024-07-01"
    server = TushareTestServer(vendor_tables(list(FUNDS), "2023-01-03", next_day)).start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ALCHEMY_", "TUSHARE_", "DAGSTER_"))},
        "DAGSTER_HOME": str(tmp_path / "home"),
        "ALCHEMY_ENV": "local",
        "ALCHEMY_DATA_DIR": str(tmp_path / "data"),
        "ALCHEMY_PUBLISH_DIR": str(tmp_path / "site"),
        "ALCHEMY_UNIVERSE": str(write_universe(tmp_path / "universe.csv", FUNDS)),
        "ALCHEMY_BACKTEST_START": start,
        "ALCHEMY_LATE_DATA_RETRIES": "3",
        "ALCHEMY_LATE_DATA_RETRY_SECONDS": "2",
        "TUSHARE_TOKEN": VALID_TOKEN,
        "TUSHARE_API_URL": server.url,
        "PYTHONPATH": str(REPO_ROOT),  # the daemon imports tests.detached_launcher
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}",
    }
    with (
        production_instance(postgres, tmp_path / "home", max_runtime_seconds=3, poll_interval_seconds=1) as instance,
        pytest.MonkeyPatch.context() as mp,
    ):
        use_env(mp, env)
        from alchemy_pipeline.definitions import build_definitions
        from alchemy_pipeline.settings import load_settings

        defs = build_definitions(load_settings())
        shanghai = ZoneInfo("Asia/Shanghai")
        # The history the day reads, in this process: then the day's own run, as the schedule asks for it.
        tick = tick_schedule(defs, instance, "daily_signals_schedule", dt.datetime(2024, 6, 28, 18, tzinfo=shanghai))
        *history, today = sorted(tick.run_requests, key=lambda r: -int(r.tags["dagster/priority"]))
        job = defs.resolve_job_def("daily_signals_job")
        assert set(today.asset_selection) == set(job.asset_layer.selected_asset_keys)  # what the CLI launches
        for request in history:
            result = job.execute_in_process(
                instance=instance, asset_selection=request.asset_selection, tags=dict(request.tags),
                raise_on_error=False,
            )  # fmt: skip
            assert result.success
        daemon = subprocess.Popen(["dagster-daemon", "run", "-w", str(REPO_ROOT / "workspace.yaml")], cwd=REPO_ROOT,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:

            def launch(tags: dict) -> str:
                before = {r.dagster_run.run_id for r in instance.get_run_records()}
                server.faults[:] = [Fault(empty=True)] * 4  # the vendor has not published the day: two tries
                subprocess.run(["dagster", "job", "launch", "-j", "daily_signals_job", "-w", "workspace.yaml",
                                "--tags", json.dumps(tags)], cwd=REPO_ROOT, env=env, check=True,
                               capture_output=True)  # fmt: skip
                (run_id,) = {r.dagster_run.run_id for r in instance.get_run_records()} - before
                wait_for(lambda: instance.get_run_by_id(run_id).is_finished, 180, f"run {run_id} finishing")
                return run_id

            scheduled = launch(dict(today.tags))
            record = instance.get_run_record_by_id(scheduled)
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            assert record.end_time - record.start_time > 3  # past the instance's max runtime
            said = " ".join(e.message or "" for e in instance.all_logs(scheduled))
            assert f"has no bar for any of the 2 funds on {day}" in said  # retried for the late vendor
            assert day in instance.get_materialized_partitions(dg.AssetKey("signal_report"))

            untagged = {k: v for k, v in today.tags.items() if k != "dagster/max_runtime"}
            untagged.update(
                {"dagster/asset_partition_range_start": next_day, "dagster/asset_partition_range_end": next_day}
            )
            ended = launch(untagged)
            assert instance.get_run_by_id(ended).status == dg.DagsterRunStatus.FAILURE
            said = " ".join(e.message or "" for e in instance.all_logs(ended))
            assert "maximum runtime of 3 seconds" in said, said[-2000:]
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
            server.stop()
