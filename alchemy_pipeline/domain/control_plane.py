"""When the control plane that sleeps may go back to sleep.

The small deployment profile starts Dagster's daemon (with the code location loaded in the same task) a
little before each schedule's tick, and stops it once the day's work is done. What the daemon has done is
read from Dagster's storage into a ``Watch``; ``decide`` says stay or leave, with the reason, so that the
task's log tells an engineer why it is still up or why it left.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """``settle``: the time every daemon needs for its first iterations (the scheduler's catch-up of a
    missed tick happens in its first one); ``lead``: how long after the start a schedule's tick is still
    awaited (the task is started a little before it); ``ceiling``: the longest the task stays, whatever
    is pending; ``stay``: a minimum stay, for a person at the UI who may queue runs."""

    settle: dt.timedelta = dt.timedelta(minutes=3)
    lead: dt.timedelta = dt.timedelta(minutes=10)
    ceiling: dt.timedelta = dt.timedelta(minutes=300)
    stay: dt.timedelta = dt.timedelta(0)


# After the vendor-late retries' last try: time for that run, the notification run and the sensor's ticks.
AFTER_LAST_TRY = dt.timedelta(hours=1)


def ceiling_after_late_data(retries: int, retry_seconds: int) -> dt.timedelta:
    """The ceiling that lets a day the vendor publishes late be retried to the last try (the defaults, 8 tries
    30 minutes apart, give 5 hours)."""
    return dt.timedelta(seconds=retries * retry_seconds) + AFTER_LAST_TRY


@dataclass(frozen=True)
class Watch:
    """What the daemon has done so far, as Dagster's storage tells it."""

    now: dt.datetime
    started_at: dt.datetime
    # "<run id> (<status>)" of every run queued, starting, started or cancelling.
    active_runs: tuple[str, ...]
    # "<schedule> at <time>" of every tick in the wake window that the scheduler has not evaluated yet.
    awaited_ticks: tuple[str, ...]
    # When the newest finished run ended, and when the notification sensor last finished a tick.
    last_run_ended_at: dt.datetime | None
    sensor_ticked_at: dt.datetime | None


@dataclass(frozen=True)
class Decision:
    leave: bool
    reason: str


def decide(watch: Watch, limits: Limits) -> Decision:
    """Stay while anything of the day is pending; leave once nothing is, or at the ceiling."""
    awake = watch.now - watch.started_at
    if awake >= limits.ceiling:
        pending = ", ".join((*watch.active_runs, *watch.awaited_ticks)) or "nothing"
        return Decision(True, f"the ceiling of {_minutes(limits.ceiling)} is reached (still pending: {pending})")
    if awake < limits.settle:
        return Decision(False, f"settling: the daemon's first iterations ({_minutes(limits.settle)})")
    if awake < limits.stay:
        return Decision(False, f"asked to stay {_minutes(limits.stay)}")
    if watch.active_runs:
        return Decision(False, f"runs in progress or queued: {', '.join(watch.active_runs)}")
    if watch.awaited_ticks:
        return Decision(False, f"waiting for {', '.join(watch.awaited_ticks)}")
    if watch.last_run_ended_at is not None and (
        watch.sensor_ticked_at is None or watch.sensor_ticked_at <= watch.last_run_ended_at
    ):
        return Decision(False, f"waiting for the notification sensor to tick after the run ended at "
                        f"{watch.last_run_ended_at:%H:%M:%S}")  # fmt: skip
    return Decision(True, "idle: no run queued or in progress, no tick awaited, the sensor has ticked since")


def _minutes(span: dt.timedelta) -> str:
    return f"{span.total_seconds() / 60:g} min"
