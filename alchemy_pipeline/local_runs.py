"""The local commands: ``scripts/demo`` publishes one day, ``scripts/backfill`` a range of days.

Each runs what the schedule would, on the instance at ``DAGSTER_HOME`` (``dagster dev`` shows the runs):
first the price history the first day reads, each missing stretch once, then the days. Every input is
checked before any run: a wrong one is answered in one line on stderr, with exit status 2. The terminal
gets progress and the outcome; Dagster's own log (INFO and above) goes to the file ``dagster.yaml`` names.
"""

import datetime as dt
import os
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from alchemy_pipeline.defs.partitions import (
    BACKFILL,
    DAILY,
    FIRST_DAY,
    PRICE_ASSET,
    REPORT_ASSET,
    RunPlan,
    TradingDays,
)
from alchemy_pipeline.defs.resources import build_resources
from alchemy_pipeline.defs.signals.jobs import plan_tags
from alchemy_pipeline.domain import calendar
from alchemy_pipeline.settings import Settings, SettingsError, load_settings

# The runs' console output: warnings and errors only; the rest is in the instance and its log file.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
STARTED_BY = "analyst"


class CommandError(Exception):
    """Wrong usage or input: the message is the whole answer."""


def run_command(name: str, command, argv: list[str]) -> int:
    """Runs ``command(argv, settings, days)``; a wrong input or setting ends it with one line on stderr."""
    try:
        if not os.environ.get("DAGSTER_HOME"):
            raise CommandError("DAGSTER_HOME is not set: point it at the directory holding dagster.yaml")
        settings = load_settings()
        days = TradingDays(build_resources(settings)["calendar_cache"].load())
        return command(argv, settings, days)
    except (CommandError, SettingsError, calendar.DayError, calendar.CalendarError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2


def now() -> dt.datetime:
    return dt.datetime.now(ZoneInfo(calendar.TIMEZONE))


def log_file(instance: dg.DagsterInstance) -> Path | None:
    """The file the instance's python_logs handlers write Dagster's log to, if any."""
    handlers = (instance.get_settings("python_logs") or {}).get("dagster_handler_config", {}).get("handlers", {})
    names = [h["filename"] for h in handlers.values() if "filename" in h]
    return Path(names[0]).resolve() if names else None


def execute(plans: list[RunPlan], instance: dg.DagsterInstance) -> list[dg.ExecuteInProcessResult]:
    """Runs the plans in order, each as one run of the daily job; stops at the first that fails."""
    from alchemy_pipeline.definitions import defs

    job = defs.resolve_job_def("daily_signals_job")
    results = []
    for plan in plans:
        print(f"Running: {plan.purpose}", flush=True)
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(a) for a in plan.assets],
            tags=plan_tags(plan, STARTED_BY),
            run_config=QUIET,
            raise_on_error=False,
        )
        results.append(result)
        if not result.success:
            break
    return results


def failure_line(result: dg.ExecuteInProcessResult) -> str:
    """Why a run failed, in a line: the first step failure's message."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            message = (error.message if error else "").strip().splitlines()
            return f"{event.step_key} failed: {message[0] if message else 'see the run in dagster dev'}"
    return "see the run in dagster dev"


def run_plans(plans: list[RunPlan]) -> tuple[dg.ExecuteInProcessResult | None, str]:
    """Runs the plans on the instance at DAGSTER_HOME: the last run's result (None if a run failed, after
    saying why on stderr), and where Dagster's log is."""
    with dg.DagsterInstance.get() as instance:
        results = execute(plans, instance)
        log = log_file(instance)
    where = f"Dagster's log: {log}" if log else "Dagster's log: the runs in dagster dev"
    if not results[-1].success:
        print(f"Run {results[-1].run_id} failed: {failure_line(results[-1])}. {where}", file=sys.stderr)
        return None, where
    return results[-1], where


def materialized_prices() -> set[str]:
    with dg.DagsterInstance.get() as instance:
        return instance.get_materialized_partitions(dg.AssetKey(PRICE_ASSET))


def demo(argv: list[str], settings: Settings, days: TradingDays) -> int:
    """``scripts/demo [YYYY-MM-DD]``: publishes the latest trading day on or before the given day (by default
    the latest whose evening has passed) and prints its report."""
    if len(argv) > 1:
        raise CommandError(f"takes at most one date (YYYY-MM-DD), got {' '.join(argv)}")
    latest = days.latest_closed_day(now())
    asked = calendar.parse_day(argv[0]) if argv else latest
    if not FIRST_DAY <= asked <= latest:
        days.check_day(asked, now())  # says why
    day = days.calendar.latest_trading_day(asked)
    days.check_day(day, now())
    if day != asked:
        print(f"{asked} is not a trading day: publishing {day}, the trading day before it")
    result, where = run_plans(days.plan_runs(day.isoformat(), day.isoformat(), materialized_prices(), DAILY))
    if result is None:
        return 1
    reports = settings.publish_dir / "reports"
    print((reports / f"{day}.txt").read_text("utf-8"))
    print(f"Price source: {settings.price_source}")
    print(f"Report for {day}:")
    for suffix in (".txt", ".html", ".json"):
        print(f"  {reports / f'{day}{suffix}'}")
    print(f"Site front page: {settings.publish_dir / 'index.html'}")
    print(where)
    return 0


def backfill(argv: list[str], settings: Settings, days: TradingDays) -> int:
    """``scripts/backfill START END``: publishes every trading day from START to END, fetching first the price
    history START reads, and ends with one summary line."""
    if len(argv) != 2:
        raise CommandError(
            f"takes two trading days, START END (YYYY-MM-DD), got {' '.join(argv) or 'none'}: for example "
            "scripts/backfill 2024-01-02 2024-06-28"
        )
    start, end = (calendar.parse_day(arg) for arg in argv)
    days.check_range(start, end, now())
    result, where = run_plans(days.plan_runs(start.isoformat(), end.isoformat(), materialized_prices(), BACKFILL))
    if result is None:
        return 1
    print(f"{summary(result, len(days.calendar.sessions(start, end)), settings)}. {where}")
    return 0


def summary(result: dg.ExecuteInProcessResult, trading_days: int, settings: Settings) -> str:
    """One line: the days published, the days held back and why, and where the reports are."""
    published = sorted(
        event.partition for event in result.asset_materializations_for_node(REPORT_ASSET) if event.partition
    )
    held_back: dict[str, str] = {}
    for event in result.asset_materializations_for_node(REPORT_ASSET):
        if "held_back" in event.metadata:
            held_back = event.metadata["held_back"].value
    line = f"Published {len(published)} of {trading_days} trading days ({published[0]}...{published[-1]})"
    if held_back:
        line += f"; held back {len(held_back)}: " + "; ".join(f"{day} ({why})" for day, why in held_back.items())
    return f"{line}; reports in {settings.publish_dir / 'reports'}, front page {settings.publish_dir / 'index.html'}"


def main_demo() -> int:
    return run_command("scripts/demo", demo, sys.argv[1:])


def main_backfill() -> int:
    return run_command("scripts/backfill", backfill, sys.argv[1:])
