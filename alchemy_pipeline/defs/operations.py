"""Operators hear when a day goes wrong: a failed run, a trading day not published by the deadline, and the
success after either, told to the operator's channels (``ALCHEMY_OPERATOR_URLS``) and always logged.

Each failed run is told once (the failure sensor's cursor) and each late day once (its record); what was
told and is still open is kept in ``notifications/operator/open.json``, so the success after it says so.
"""

import datetime as dt
import json
import re
from zoneinfo import ZoneInfo

import dagster as dg

from alchemy_pipeline.defs.automation import exchange_schedule
from alchemy_pipeline.defs.partitions import REPORT_ASSET
from alchemy_pipeline.defs.resources import OperatorResource, TradingCalendarResource
from alchemy_pipeline.domain.market import calendar

OPEN_KEY = "notifications/operator/open.json"
DEADLINE_DAY_TAG = "alchemy/deadline_day"
DEADLINE = f"{calendar.DEADLINE_HOUR}:00 {calendar.TIMEZONE}"


def one_line(text: str, limit: int = 300) -> str:
    lines = (text or "").strip().splitlines()
    first = lines[0] if lines else "no reason given"
    return first if len(first) <= limit else first[: limit - 3] + "..."


def failure_reason(event: dg.DagsterEvent) -> str:
    """What a failed step said: a raised ``Failure``'s description, or the error without its class's path."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    return re.sub(rf"^[\w.]*{re.escape(error.cls_name or '')}: ", "", error.message) if error else "no reason given"


def tell(log, operator: OperatorResource, title: str, body: str) -> None:
    """Logs the alert and sends it to the operator's channels, logging any that did not take it."""
    log.warning(f"{title}: {body}")
    outcomes = operator.alert(title, body)
    for outcome in outcomes:
        if outcome.state != "sent":
            log.warning(f"operator channel {outcome.described()}")


def open_alerts(operator: OperatorResource) -> dict[str, str]:
    raw = operator.records.store().get(OPEN_KEY)
    return json.loads(raw) if raw else {}


def save_open_alerts(operator: OperatorResource, alerts: dict[str, str]) -> None:
    operator.records.store().put(OPEN_KEY, json.dumps(alerts, indent=2, sort_keys=True).encode(), "application/json")


@dg.asset_check(
    asset=REPORT_ASSET,
    name="published_by_deadline",
    description=(
        f"The trading day's signal_report is published by {DEADLINE} (after the late-data retries' last try); "
        "if not, the operator is told once."
    ),
)
def published_by_deadline(
    context: dg.AssetCheckExecutionContext, operator: OperatorResource, calendar_cache: TradingCalendarResource
) -> dg.AssetCheckResult:
    # The deadline schedule names its day; run with a range of days (the CLI's), the check is of its last.
    tags = context.run.tags
    at_deadline = DEADLINE_DAY_TAG in tags
    day = (
        tags.get(DEADLINE_DAY_TAG)
        or tags.get("dagster/asset_partition_range_end")
        or tags.get("dagster/partition")
        or calendar.exchange_today().isoformat()
    )
    known = calendar_cache.load()
    if known.knows(dt.date.fromisoformat(day)) and not known.is_trading_day(dt.date.fromisoformat(day)):
        return dg.AssetCheckResult(passed=True, description=f"{day} is not a trading day", metadata={"day": day})
    if day in context.instance.get_materialized_partitions(dg.AssetKey(REPORT_ASSET)):
        return dg.AssetCheckResult(passed=True, description=f"{day} is published", metadata={"day": day})
    alerts = open_alerts(operator)
    key = f"deadline:{day}"
    told = alerts.get(key)
    if told is None:
        told = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        tell(
            context.log,
            operator,
            f"Alchemy: {day} not published" + (f" by {DEADLINE}" if at_deadline else ""),
            f"signal_report has no partition for {day}: no email or channel message went out. Its runs: "
            f"{operator.ui_url.rstrip('/')}/runs",
        )
        save_open_alerts(operator, {**alerts, key: told})
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{day} is not published; the operator was told at {told}",
        metadata={"day": day},
    )


deadline_job = dg.define_asset_job(
    "operator_deadline_job",
    selection=dg.AssetSelection.checks(published_by_deadline),
    description=f"Checks that the trading day is published by {DEADLINE}, and tells the operator if not.",
)


def build_operations(running: bool) -> tuple[dg.ScheduleDefinition, dg.SensorDefinition, dg.SensorDefinition]:
    """The deadline's schedule and the operator's failure and recovery sensors, on or off by default."""

    @exchange_schedule(
        f"0 {calendar.DEADLINE_HOUR} * * 1-5",
        deadline_job,
        running,
        f"{DEADLINE} on weekdays: runs the published_by_deadline check of signal_report for the day.",
    )
    def operator_deadline_schedule(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.astimezone(ZoneInfo(calendar.TIMEZONE)).date()
        return dg.RunRequest(run_key=f"deadline:{day}", tags={DEADLINE_DAY_TAG: day.isoformat()})

    status = dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED

    @dg.run_failure_sensor(
        name="operator_run_failure_sensor",
        default_status=status,
        description="Tells the operator of each failed run once: the run, the failing step, its reason, the link.",
    )
    def operator_run_failure_sensor(context: dg.RunFailureSensorContext, operator: OperatorResource):
        run = context.dagster_run
        failures = context.get_step_failure_events()
        steps = ", ".join(event.step_key for event in failures) or "the run itself"
        reason = one_line(failure_reason(failures[0]) if failures else context.failure_event.message)
        tell(
            context.log,
            operator,
            f"Alchemy: {run.job_name} failed",
            f"run {run.run_id} of {run.job_name} failed at {steps}: {reason} {operator.run_url(run.run_id)}",
        )
        save_open_alerts(operator, {**open_alerts(operator), f"run:{run.job_name}": run.run_id})

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="operator_recovery_sensor",
        default_status=status,
        description="Tells the operator when a job that failed succeeds again, and when a late day is published.",
    )
    def operator_recovery_sensor(context: dg.RunStatusSensorContext, operator: OperatorResource):
        alerts = open_alerts(operator)
        if not alerts:
            return
        run = context.dagster_run
        closed = {}
        failed = alerts.get(f"run:{run.job_name}")
        if failed is not None:
            closed[f"run:{run.job_name}"] = (
                f"Alchemy: {run.job_name} succeeded again",
                f"run {run.run_id} of {run.job_name} succeeded after run {failed} failed "
                f"{operator.run_url(run.run_id)}",
            )
        late = {key.removeprefix("deadline:"): key for key in alerts if key.startswith("deadline:")}
        if late:
            published = context.instance.get_materialized_partitions(dg.AssetKey(REPORT_ASSET))
            for day in sorted(late.keys() & published):
                closed[late[day]] = (
                    f"Alchemy: {day} published",
                    f"{day} is published after its deadline (run {run.run_id})",
                )
        for title, body in closed.values():
            tell(context.log, operator, title, body)
        if closed:
            save_open_alerts(operator, {k: v for k, v in alerts.items() if k not in closed})

    return operator_deadline_schedule, operator_run_failure_sensor, operator_recovery_sensor
