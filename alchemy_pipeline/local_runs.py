"""The local commands: ``scripts/demo`` publishes one day, ``scripts/backfill`` a range of days.

Each runs what the schedule would, on the instance at ``DAGSTER_HOME`` (``dg dev`` shows the runs):
first the price history the first day reads, each missing stretch once, then the days. Every input is
checked before any run: a wrong one is answered in one line on stderr, with exit status 2. The terminal
gets progress and the outcome; Dagster's own log (INFO and above) goes to the file ``dagster.yaml`` names.
"""

import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from alchemy_pipeline.defs.partitions import (
    BACKFILL,
    DAILY,
    FIRST_DAY,
    REPORT_ASSET,
    RunPlan,
    TradingDays,
    materialized_partitions,
    plan_tags,
)
from alchemy_pipeline.defs.resources import build_resources
from alchemy_pipeline.domain.market import calendar
from alchemy_pipeline.domain.site.publish import published_days
from alchemy_pipeline.infrastructure.storage import LocalBlobStore
from alchemy_pipeline.settings import Settings, SettingsError, load_settings

# Dagster's console logger stays quiet (its messages and stack traces are in the instance and the log file):
# the command prints what runs and how it ended, a failure in one line.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
STARTED_BY = "analyst"


class CommandError(Exception):
    """Wrong usage or input: the message is the whole answer."""


def run_command(name: str, command, argv: list[str]) -> int:
    """Runs ``command(argv, settings, days)``; a wrong input or setting ends it with one line on stderr."""
    try:
        if not os.environ.get("DAGSTER_HOME"):
            raise CommandError("DAGSTER_HOME is not set: point it at the directory holding dagster.yaml")
        # Dagster reads this itself, in the middle of a run: a value it cannot parse would fail the run there.
        batch = os.environ.get("DAGSTER_EVENT_BATCH_SIZE", "0")
        if not batch.isdigit():
            raise CommandError(f"DAGSTER_EVENT_BATCH_SIZE={batch!r} is not a whole number: unset it or use 1000")
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


def signals_job() -> dg.JobDefinition:
    """The daily job as the code location builds it (reconstructable: a run executes as a launched one)."""
    from alchemy_pipeline.definitions import defs

    return defs.resolve_job_def("daily_signals_job")


@dataclass(frozen=True)
class Outcome:
    """What the runs of a command did: the days published by the last and the days it held back, or why a
    run failed; and where Dagster's log is."""

    published: list[str]
    held_back: dict[str, str]
    failure: str | None
    log: str


def failure_line(result: dg.JobExecutionResult) -> str:
    """Why a run failed, in a line: the first step failure's message."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            message = (error.message if error else "").strip().splitlines()
            return f"{event.step_key} failed: {message[0] if message else 'see the run in dg dev'}"
    return "see the run in dg dev"


def run_plans(plans: list[RunPlan]) -> Outcome:
    """Runs the plans in order on the instance at DAGSTER_HOME, as launched runs of the daily job execute
    (``execute_job``), each as one run; stops at the first that fails."""
    with dg.DagsterInstance.get() as instance:
        log = log_file(instance)
        where = f"Dagster's log: {log}" if log else "Dagster's log: the runs in dg dev"
        for plan in plans:
            print(f"Running: {plan.purpose}", flush=True)
            with dg.execute_job(
                dg.reconstructable(signals_job),
                instance=instance,
                asset_selection=[dg.AssetKey(a) for a in plan.assets],
                tags=plan_tags(plan, STARTED_BY),
                run_config=QUIET,
            ) as result:
                if not result.success:
                    return Outcome([], {}, f"Run {result.run_id} failed: {failure_line(result)}", where)
                reports = [
                    event.step_materialization_data.materialization
                    for event in result.get_asset_materialization_events()
                    if event.asset_key == dg.AssetKey(REPORT_ASSET)
                ]
        held_back = next((dict(r.metadata["held_back"].value) for r in reports if "held_back" in r.metadata), {})
        return Outcome(sorted(r.partition for r in reports), held_back, None, where)


def materialized() -> dict[str, set[str]]:
    with dg.DagsterInstance.get() as instance:
        return materialized_partitions(instance)


# The demo publishes a year on a fresh site: the history and the fund pages' charts then have one to show.
DEMO_SPAN = dt.timedelta(days=365)


def demo_start(day: dt.date, days: TradingDays, settings: Settings) -> dt.date:
    """The first day the demo publishes, ending on ``day``: the days after the newest one published, or
    the year before ``day`` when nothing was published in it."""
    year = days.calendar.sessions(max(FIRST_DAY, day - DEMO_SPAN), day)[0]
    published = [d for d in published_days(LocalBlobStore(settings.publish_dir)) if d <= day.isoformat()]
    if not published or published[-1] < year.isoformat():
        return year
    if published[-1] >= day.isoformat():
        return day  # published already: run it again
    return days.calendar.next_trading_day(dt.date.fromisoformat(published[-1]))


def demo(argv: list[str], settings: Settings, days: TradingDays) -> int:
    """``scripts/demo [YYYY-MM-DD]``: publishes the latest trading day on or before the given day (by default
    the latest whose evening has passed), with the year before it on a fresh site, and prints its report."""
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
    start = demo_start(day, days, settings)
    kind = DAILY if start == day else BACKFILL
    outcome = run_plans(
        days.plan_runs(start.isoformat(), day.isoformat(), materialized(), kind, settings.backtest_start)
    )
    if outcome.failure:
        print(f"{outcome.failure}. {outcome.log}", file=sys.stderr)
        return 1
    reports = settings.publish_dir / "reports"
    print((reports / f"{day}.txt").read_text("utf-8"))
    print(f"Price source: {settings.price_source}")
    print(f"Report for {day}:")
    for suffix in (".txt", ".html", ".json"):
        print(f"  {reports / f'{day}{suffix}'}")
    print(f"Site front page: {settings.publish_dir / 'index.html'}")
    print(outcome.log)
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
    outcome = run_plans(
        days.plan_runs(start.isoformat(), end.isoformat(), materialized(), BACKFILL, settings.backtest_start)
    )
    if outcome.failure:
        print(f"{outcome.failure}. {outcome.log}", file=sys.stderr)
        return 1
    print(f"{summary(outcome, len(days.calendar.sessions(start, end)), settings)}. {outcome.log}")
    return 0


def summary(outcome: Outcome, trading_days: int, settings: Settings) -> str:
    """One line: the days published, the days held back and why, and where the reports are."""
    published = outcome.published
    line = f"Published {len(published)} of {trading_days} trading days ({published[0]}...{published[-1]})"
    if outcome.held_back:
        held = "; ".join(f"{day} ({why})" for day, why in outcome.held_back.items())
        line += f"; held back {len(outcome.held_back)}: {held}"
    return f"{line}; reports in {settings.publish_dir / 'reports'}, front page {settings.publish_dir / 'index.html'}"


def main_demo() -> int:
    return run_command("scripts/demo", demo, sys.argv[1:])


def main_backfill() -> int:
    return run_command("scripts/backfill", backfill, sys.argv[1:])
