"""The Dagster code location: ``dagster dev -m alchemy_pipeline.definitions``."""

import dagster as dg

from alchemy_pipeline.defs.resources import automation_runs_by_default, build_resources
from alchemy_pipeline.defs.signals.assets import etf_daily_prices, etf_indicators, signal_report, trade_signals
from alchemy_pipeline.defs.signals.jobs import build_automation, daily_signals_job, notify_subscribers
from alchemy_pipeline.settings import Settings, load_settings


def build_definitions(settings: Settings) -> dg.Definitions:
    daily_signals_schedule, notify_subscribers_sensor = build_automation(automation_runs_by_default(settings))
    return dg.Definitions(
        assets=[etf_daily_prices, etf_indicators, trade_signals, signal_report],
        jobs=[daily_signals_job, notify_subscribers],
        schedules=[daily_signals_schedule],
        sensors=[notify_subscribers_sensor],
        resources=build_resources(settings),
    )


defs = build_definitions(load_settings())
