"""The small profile's control plane, one task that sleeps between days (``deploy/README.md``):

    python -m alchemy_pipeline.container_entrypoint python -m alchemy_pipeline.control_plane

It starts Dagster's daemon (``dagster-daemon run``; its workspace loads the code location in this task),
reads from Dagster's storage every ``--poll-seconds`` what the daemon has done, and once
``domain.control_plane.decide`` says the day's work is done, or at the ceiling, stops the daemon and exits
0, which ends the task. SIGTERM (a Spot interruption, ``aws ecs stop-task``) stops the daemon as well: the
next start catches up what was missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import InstigatorStatus, TickStatus
from dagster._utils.schedules import cron_string_iterator

from alchemy_pipeline.domain.control_plane import Limits, Watch, ceiling_after_late_data, decide
from alchemy_pipeline.settings import SettingsError, load_settings

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FINISHED_STATUSES = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
NOTIFY_SENSOR = "notify_subscribers_sensor"
# The daemon gets this long to finish its threads' iterations after SIGINT before it is killed.
DAEMON_STOP_SECONDS = 60


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


def _log(message: str) -> None:
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} control_plane: {message}", file=sys.stderr, flush=True)


def _stop(daemon: subprocess.Popen) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGINT)
        try:
            daemon.wait(timeout=DAEMON_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m alchemy_pipeline.control_plane", description=__doc__.split("\n")[0]
    )
    defaults = Limits()
    parser.add_argument(
        "--workspace", default="/opt/dagster/home/workspace-small.yaml", help="the daemon's workspace (the image's)"
    )
    parser.add_argument("--poll-seconds", type=float, default=30, help="how often Dagster's storage is read")
    parser.add_argument("--settle-seconds", type=float, default=defaults.settle.total_seconds())
    parser.add_argument("--lead-minutes", type=float, default=defaults.lead.total_seconds() / 60)
    parser.add_argument(
        "--ceiling-minutes", type=float, help="default: the late-data retries' span (ALCHEMY_LATE_DATA_*) plus an hour"
    )
    parser.add_argument("--stay-minutes", type=float, default=0, help="stay at least this long (deploy/ui up)")
    args = parser.parse_args(argv)
    for name in ("poll_seconds", "settle_seconds", "lead_minutes", "ceiling_minutes", "stay_minutes"):
        value = getattr(args, name)
        if name == "poll_seconds" and value <= 0:
            parser.error(f"--poll-seconds={value:g} must be more than 0")
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')}={value:g} must not be negative")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings()
        # Imported here: importing the code location loads it, which needs the settings checked first.
        from alchemy_pipeline.definitions import build_definitions
    except SettingsError as exc:
        _log(str(exc))
        return 1
    ceiling = ceiling_after_late_data(settings.late_data_retries, settings.late_data_retry_seconds)
    limits = Limits(
        settle=dt.timedelta(seconds=args.settle_seconds),
        lead=dt.timedelta(minutes=args.lead_minutes),
        ceiling=ceiling if args.ceiling_minutes is None else dt.timedelta(minutes=args.ceiling_minutes),
        stay=dt.timedelta(minutes=args.stay_minutes),
    )
    clocks = [ScheduleClock.of(s) for s in build_definitions(settings).schedules or []]
    started_at = dt.datetime.now(dt.UTC)
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", args.workspace])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    _log(f"daemon started (pid {daemon.pid}); ceiling {limits.ceiling.total_seconds() / 60:g} min")
    said = None
    try:
        with dg.DagsterInstance.get() as instance:
            while not stopping.wait(args.poll_seconds):
                if daemon.poll() is not None:
                    _log(f"the daemon exited by itself with code {daemon.returncode}")
                    return 1
                try:
                    watch = take_watch(instance, clocks, started_at, dt.datetime.now(dt.UTC), limits.lead)
                except Exception as exc:  # a database that is resuming answers late: ask again next time
                    _log(f"could not read Dagster's storage ({type(exc).__name__}: {exc}); trying again")
                    continue
                decision = decide(watch, limits)
                if decision.reason != said:
                    _log(("leaving: " if decision.leave else "staying: ") + decision.reason)
                    said = decision.reason
                if decision.leave:
                    break
            else:
                _log("SIGTERM: stopping the daemon; the next start catches up")
    finally:
        _stop(daemon)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
