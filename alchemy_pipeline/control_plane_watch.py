"""What the control plane reads of Dagster's storage: the runs, and the schedules' and the sensor's ticks.

The one module besides ``local_storage.py`` that uses Dagster's private API, because no public one exists:
the instance's instigator states and ticks (``DagsterInstance.all_instigator_state`` and ``get_ticks`` are
callable, but their types ``InstigatorType``, ``InstigatorStatus`` and ``TickStatus`` live under
``dagster._core``) and the iterator over a cron string's times (``dagster._utils.schedules``). Upstream, a
public read of a schedule's or sensor's latest ticks with public types (what the GraphQL API already gives
the UI), and a public cron iterator, would remove this module's private imports. Pinned with Dagster and
held by ``tests/test_control_plane.py`` against a real daemon.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import InstigatorStatus, TickStatus
from dagster._utils.schedules import cron_string_iterator

from alchemy_pipeline.domain.control_plane import Watch

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FINISHED_STATUSES = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
NOTIFY_SENSOR = "notify_subscribers_sensor"


@dataclass(frozen=True)
class ScheduleClock:
    """A schedule of the code location: when it ticks, and whether it runs unless switched off."""

    name: str
    cron: str
    timezone: str
    running_by_default: bool

    @classmethod
    def of(cls, schedule: dg.ScheduleDefinition) -> ScheduleClock:
        return cls(
            schedule.name,
            str(schedule.cron_schedule),
            schedule.execution_timezone or "UTC",
            schedule.default_status == dg.DefaultScheduleStatus.RUNNING,
        )


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _latest_tick(instance: dg.DagsterInstance, state, finished: bool = False):
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
    return next((t for t in ticks if not finished or t.status != TickStatus.STARTED), None)


def take_watch(
    instance: dg.DagsterInstance,
    clocks: list[ScheduleClock],
    started_at: dt.datetime,
    now: dt.datetime,
    lead: dt.timedelta,
) -> Watch:
    """What the daemon has done since ``started_at``, from Dagster's storage."""
    active = instance.get_run_records(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES))
    ended = instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED_STATUSES), limit=1, order_by="end_time", ascending=False
    )
    states = {(s.instigator_type, s.name): s for s in instance.all_instigator_state()}
    awaited = []
    for clock in clocks:
        state = states.get((InstigatorType.SCHEDULE, clock.name))
        if state is None or state.status == InstigatorStatus.DECLARED_IN_CODE:
            running = clock.running_by_default
        else:
            running = state.status == InstigatorStatus.RUNNING
        if not running:
            continue
        tick = _latest_tick(instance, state) if state else None
        for due in cron_string_iterator(started_at.timestamp(), clock.cron, clock.timezone):
            if due > started_at + lead:
                break
            if tick is None or tick.timestamp < due.timestamp():
                awaited.append(f"{clock.name} at {due:%Y-%m-%d %H:%M %Z}")
    sensor = states.get((InstigatorType.SENSOR, NOTIFY_SENSOR))
    sensor_tick = _latest_tick(instance, sensor, finished=True) if sensor else None
    return Watch(
        now=now,
        started_at=started_at,
        active_runs=tuple(f"{r.dagster_run.run_id} ({r.dagster_run.status.value})" for r in active),
        awaited_ticks=tuple(awaited),
        last_run_ended_at=_utc(ended[0].end_time) if ended and ended[0].end_time else None,
        sensor_ticked_at=_utc(sensor_tick.timestamp) if sensor_tick else None,
    )
