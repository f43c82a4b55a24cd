"""Runs the daily job for the latest trading day already closed, on this machine, as the schedule would.

``python -m alchemy_pipeline.demo [YYYY-MM-DD]``: on a fresh instance it first fetches the price
history the day needs (one single-run backfill), then publishes the day and prints where the report is.
"""

import datetime as dt
import os
import sys
from zoneinfo import ZoneInfo

import dagster as dg

from alchemy_pipeline.defs.partitions import PRICE_ASSET, TradingDays
from alchemy_pipeline.defs.resources import build_resources
from alchemy_pipeline.domain import calendar
from alchemy_pipeline.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not os.environ.get("DAGSTER_HOME"):
        print("DAGSTER_HOME is not set: point it at the directory holding dagster.yaml", file=sys.stderr)
        return 2
    settings = load_settings()
    from alchemy_pipeline.definitions import defs

    # Like the schedule: a day is published from 18:00 Shanghai time, after the close.
    now = dt.datetime.now(ZoneInfo(calendar.TIMEZONE))
    published_by_now = now.date() if now.hour >= 18 else now.date() - dt.timedelta(days=1)
    days = TradingDays(build_resources(settings)["calendar_cache"].load())
    day = days.calendar.latest_trading_day(dt.date.fromisoformat(argv[0]) if argv else published_by_now).isoformat()
    job = defs.resolve_job_def("daily_signals_job")
    with dg.DagsterInstance.get() as instance:
        materialized = instance.get_materialized_partitions(dg.AssetKey(PRICE_ASSET))
        for plan in days.plan_daily_runs(day, materialized):
            print(f"Running: {plan.purpose}", flush=True)
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey(a) for a in plan.assets],
                tags={
                    "dagster/asset_partition_range_start": plan.start,
                    "dagster/asset_partition_range_end": plan.end,
                },
                raise_on_error=False,
            )
            if not result.success:
                print(f"Run {result.run_id} failed; see `dagster dev` for its logs", file=sys.stderr)
                return 1
    reports = settings.publish_dir / "reports"
    print((reports / f"{day}.txt").read_text("utf-8"))
    print(f"Price source: {settings.price_source}")
    print(f"Report for {day}:")
    for suffix in (".txt", ".html", ".json"):
        print(f"  {reports / (day + suffix)}")
    print(f"Site front page: {settings.publish_dir / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
