"""The Dagster code location: ``dg dev`` at the repo root ([tool.dg] in pyproject.toml), or workspace.yaml.

Loading it reads the settings and this machine's trading calendar, and makes no network call.
"""

import dagster as dg

from alchemy_pipeline.defs.backtest.assets import build_backtest_asset
from alchemy_pipeline.defs.backtest.lab import build_sweep_asset
from alchemy_pipeline.defs.calendar.assets import build_calendar_schedule, trading_calendar, trading_calendar_job
from alchemy_pipeline.defs.operations import build_operations, deadline_job, published_by_deadline
from alchemy_pipeline.defs.resources import automation_runs_by_default, build_resources
from alchemy_pipeline.defs.signals.assets import signal_assets
from alchemy_pipeline.defs.signals.jobs import build_automation, daily_signals_job
from alchemy_pipeline.domain.control_plane import ceiling_after_late_data
from alchemy_pipeline.settings import Settings, load_settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """The assets and jobs, with the resources, schedules and sensor of the environment ``settings`` name."""
    running = automation_runs_by_default(settings)
    notify_subscribers, daily_signals_schedule, notify_subscribers_sensor = build_automation(
        running,
        settings.backtest_start,
        ceiling_after_late_data(settings.late_data_retries, settings.late_data_retry_seconds),
    )
    deadline_schedule, failure_sensor, recovery_sensor = build_operations(running)
    return dg.Definitions(
        assets=[
            *signal_assets,
            build_backtest_asset(settings.backtest_start),
            build_sweep_asset(settings.backtest_start),
            trading_calendar,
        ],
        asset_checks=[published_by_deadline],
        jobs=[daily_signals_job, notify_subscribers, trading_calendar_job, deadline_job],
        schedules=[daily_signals_schedule, build_calendar_schedule(running), deadline_schedule],
        sensors=[notify_subscribers_sensor, failure_sensor, recovery_sensor],
        resources=build_resources(settings),
        # Every job, the CLI's and the UI's implicit asset job included, runs its steps in one process: the
        # four steps form a chain, so a process per step would only add an interpreter start and an import
        # of the code location to each (about 10 s a run). A step spreads its own work over threads and
        # worker processes. Nothing depends on it: the steps share only what the IO manager stores.
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
