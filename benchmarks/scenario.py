"""One benchmark scenario, run in its own process so that its peak memory is its own.

``python -m benchmarks.scenario NAME`` with the Tushare test server's URL in TUSHARE_API_URL and the
pipeline's settings in the environment; prints one JSON line of measurements.
"""

import datetime as dt
import functools
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.defs.partitions import BACKTEST_ASSET, PLANNED_ASSETS, REPORT_ASSET, TradingDays
from alchemy_pipeline.domain.market.calendar import TradingCalendar
from alchemy_pipeline.settings import load_settings

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def server_counters(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


@functools.cache
def trading_days() -> TradingDays:
    return TradingDays(TradingCalendar())


def sessions(start: str, end: str) -> list[str]:
    return [d.isoformat() for d in trading_days().calendar.sessions(start, end)]


def signals_job() -> dg.JobDefinition:
    """The job as the code location builds it from the environment, in whichever process runs it."""
    return build_definitions(load_settings()).resolve_job_def("daily_signals_job")


class Runner:
    def __init__(self):
        self.defs = build_definitions(load_settings())
        self.instance = dg.DagsterInstance.get()

    def run(self, start: str, end: str, assets: list[str] | None = None) -> str:
        """Runs the job's assets (all, or ``assets``) over a range; the run's id."""
        # As a launched run executes (``dagster api execute_run``), not ``execute_in_process``, which keeps
        # every step's output in memory for the caller until the run ends.
        with dg.execute_job(
            dg.reconstructable(signals_job),
            instance=self.instance,
            asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
            tags=dict(zip(RANGE_TAGS, (start, end), strict=True)),
        ) as result:
            if not result.success:
                failures = [e.message for e in result.all_events if e.is_failure]
                raise SystemExit(f"run {start}...{end} failed: {failures}")
            return result.run_id

    def prepare(self, day: str) -> None:
        """The history a run of ``day`` reads on an instance that has run every day before it: the prices and
        the signals from the backtest's start, as the schedule plans them, and the backtest's states."""
        settings = load_settings()
        empty = {asset: set() for asset in PLANNED_ASSETS}
        for plan in trading_days().plan_runs(day, day, empty, "history", settings.backtest_start)[:-1]:
            self.run(plan.start, plan.end, list(plan.assets))
        before = [d for d in sessions(settings.backtest_start.isoformat(), day) if d < day]
        if before:
            self.run(before[0], before[-1], [BACKTEST_ASSET])

    def step_times(self, run_id: str) -> dict[str, tuple[float, float]]:
        """When each step of a run started and succeeded (Unix times), in the order they started."""
        events = self.instance.all_logs(
            run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
        )
        times: dict[str, list[float]] = {}
        for event in events:
            times.setdefault(event.step_key, []).append(event.timestamp)
        return {step: (at[0], at[-1]) for step, at in times.items()}

    def step_seconds(self, run_id: str, step: str) -> float:
        """How long one step of a run took, from its start to its success in the run's log."""
        events = self.instance.all_logs(
            run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
        )
        times = [e.timestamp for e in events if e.step_key == step]
        return round(times[-1] - times[0], 2)


def measure(url: str, work) -> dict:
    before = server_counters(url)
    started = time.perf_counter()
    reports = work()
    wall = time.perf_counter() - started
    after = server_counters(url)
    return {
        "wall_s": round(wall, 2),
        "api_calls": after["calls"] - before["calls"],
        "rows_fetched": after["rows"] - before["rows"],
        "reports": reports,
    }


ROOT = Path(__file__).resolve().parents[1]
# What users run, as the docs give it (docs/backfills.md): the Dagster CLI's range command, and scripts/backfill.
USER_COMMANDS = {
    "readme_cli_4_5y": lambda start, end: [
        str(ROOT / ".venv" / "bin" / "dg"), "launch", "--assets", "*signal_report",
        "--partition-range", f"{start}...{end}",
    ],
    "scripts_backfill_4_5y": lambda start, end: [str(ROOT / "scripts" / "backfill"), start, end],
}  # fmt: skip


# docs/backfills.md exports these before its CLI range command (scripts/run-local sets them too).
RANGE_COMMAND_EXPORTS = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true", "DAGSTER_EVENT_BATCH_SIZE": "1000"}


def user_command(name: str, start: str, end: str) -> int:
    """Runs the user's command as typed at the repo root, on the instance at DAGSTER_HOME; the reports it
    published."""
    env = {**os.environ, **RANGE_COMMAND_EXPORTS}
    done = subprocess.run(USER_COMMANDS[name](start, end), env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:300]}")
    return len(sessions(start, end))


def scenario(name: str, start: str, end: str, url: str) -> dict:
    if name in USER_COMMANDS:
        if name == "readme_cli_4_5y":
            Runner().prepare(start)  # not timed: the documented command runs where the history is present
        return measure(url, lambda: user_command(name, start, end))
    if name == "seed_baseline":
        from benchmarks.seed_way import run_seed_way

        return measure(url, lambda: run_seed_way(sessions(start, end)))
    runner = Runner()
    if name == "cold_start":

        def cold_start():
            schedule = runner.defs.resolve_schedule_def("daily_signals_schedule")
            when = dt.datetime.combine(dt.date.fromisoformat(end), dt.time(18), ZoneInfo("Asia/Shanghai"))
            with dg.build_schedule_context(
                instance=runner.instance, scheduled_execution_time=when, resources=runner.defs.resources
            ) as context:
                tick = schedule.evaluate_tick(context)
            for request in sorted(tick.run_requests, key=lambda r: -int(r.tags["dagster/priority"])):
                selection = [k.to_user_string() for k in request.asset_selection]
                runner.run(request.tags[RANGE_TAGS[0]], request.tags[RANGE_TAGS[1]], selection)
            return 1

        return measure(url, cold_start)
    if name == "recompute_10y":
        # Not timed: ten years published; then a backtest setting changes and the next day is run.
        runner.prepare(start)
        before = [d for d in sessions(load_settings().backtest_start.isoformat(), end) if d < end]
        runner.run(before[0], before[-1], [REPORT_ASSET])
        os.environ["ALCHEMY_BACKTEST_COMMISSION"] = "0.0003"
        runner = Runner()
        result = measure(url, lambda: (runner.run(end, end), 1)[1])
        run_id = runner.instance.get_runs(limit=1)[0].run_id
        return {**result, "backtest_step_s": runner.step_seconds(run_id, BACKTEST_ASSET)}
    if name.startswith("backtest_daily"):
        runner.prepare(end)  # not timed: 10 years of prices and signals
        result = measure(url, lambda: (runner.run(end, end), 1)[1])
        run_id = runner.instance.get_runs(limit=1)[0].run_id
        return {**result, "backtest_step_s": runner.step_seconds(run_id, BACKTEST_ASSET)}
    if name == "backtest_10y":
        runner.run(start, end, ["etf_daily_prices", "etf_indicators", "trade_signals"])  # not timed
        return measure(url, lambda: (runner.run(start, end, [BACKTEST_ASSET]), len(sessions(start, end)))[1])
    if name != "scale":
        runner.prepare(start)  # not timed: an instance that already has the history
    days = sessions(start, end)
    result = measure(url, lambda: (runner.run(start, end), len(days))[1])
    return {**result, "steps": runner.step_times(runner.instance.get_runs(limit=1)[0].run_id)}


def peak_rss_mb() -> int:
    """This process's highest resident set size. Not ``ru_maxrss``: Linux carries the parent's resident
    size at the fork into the child's, and the benchmark's parent holds every table the server serves."""
    status = Path("/proc/self/status").read_text()
    return round(int(status.split("VmHWM:")[1].split()[0]) / 1024)


def main() -> None:
    name, start, end, url = sys.argv[1:5]
    result = scenario(name, start, end, url)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
