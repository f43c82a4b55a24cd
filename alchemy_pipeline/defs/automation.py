"""Schedules on the exchange's clock, running by default or waiting to be switched on."""

import dagster as dg

from alchemy_pipeline.domain.market import calendar


def exchange_schedule(cron_schedule: str, job, running: bool, description: str):
    """The decorator of a schedule on Asia/Shanghai time, running or stopped when first deployed."""
    return dg.schedule(
        cron_schedule=cron_schedule,
        execution_timezone=calendar.TIMEZONE,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=description,
    )
