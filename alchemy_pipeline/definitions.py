"""The Dagster code location: ``dagster dev -m alchemy_pipeline.definitions``."""

import dagster as dg

from alchemy_pipeline.defs.calendar.assets import build_calendar_schedule, trading_calendar, trading_calendar_job
from alchemy_pipeline.defs.partitions import TradingDays
from alchemy_pipeline.defs.resources import automation_runs_by_default, build_resources
from alchemy_pipeline.defs.signals.assets import build_signal_assets
from alchemy_pipeline.defs.signals.jobs import build_automation, daily_signals_job
from alchemy_pipeline.settings import Settings, load_settings


def build_definitions(settings: Settings) -> dg.Definitions:
    resources = build_resources(settings)
    # The partitions follow the calendar as cached when the code location loads; each run loads afresh.
    days = TradingDays(resources["calendar_cache"].load())
    running = automation_runs_by_default(settings)
    notify_subscribers, daily_signals_schedule, notify_subscribers_sensor = build_automation(days, running)
    return dg.Definitions(
        assets=[*build_signal_assets(days), trading_calendar],
        jobs=[daily_signals_job, notify_subscribers, trading_calendar_job],
        schedules=[daily_signals_schedule, build_calendar_schedule(running)],
        sensors=[notify_subscribers_sensor],
        resources=resources,
        # Every job, the CLI's and the UI's implicit asset job included, runs its steps in one process: the
        # four steps form a chain, so a process per step would only add an interpreter start and an import
        # of the code location to each (about 10 s a run), and the IO manager hands each step's value to the
        # next in memory. A step spreads its own work over threads and worker processes.
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
