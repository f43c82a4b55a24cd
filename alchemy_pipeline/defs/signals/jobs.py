"""The daily job, its schedule, and the notification job with the sensor that starts it."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import dagster as dg

from alchemy_pipeline.defs.automation import exchange_schedule
from alchemy_pipeline.defs.operations import published_by_deadline
from alchemy_pipeline.defs.partitions import (
    DAILY,
    DAILY_ASSETS,
    LANE,
    LANE_TAG,
    PRIORITY_TAG,
    REPORT_ASSET,
    TradingDays,
    materialized_partitions,
    plan_tags,
)
from alchemy_pipeline.defs.resources import ChannelsResource, NotifierResource, SiteResource, TradingCalendarResource
from alchemy_pipeline.defs.trading_days import trading_days_partitions
from alchemy_pipeline.domain.market import calendar
from alchemy_pipeline.domain.site.channels import compose, notify_channel
from alchemy_pipeline.domain.site.fund_pages import fund_page_key
from alchemy_pipeline.domain.site.notify import build_message, choose_day_to_notify, crossed_funds, must_send
from alchemy_pipeline.domain.site.publish import report_key
from alchemy_pipeline.domain.site.report import render_text
from alchemy_pipeline.infrastructure.storage import in_parallel

daily_signals_job = dg.define_asset_job(
    name="daily_signals_job",
    # The deadline's check is the operator's schedule's own, at the deadline (defs/operations.py).
    selection=dg.AssetSelection.assets(*DAILY_ASSETS) - dg.AssetSelection.checks(published_by_deadline),
    tags={LANE_TAG: LANE},
    description="Fetch, compute and publish the trading signals of a trading day (or of a range, as one run).",
)


# Dagster's run monitoring ends a run past this many seconds (deploy/dagster.yaml's max_runtime_seconds
# otherwise): a scheduled run may wait for a vendor-late day through every late-data retry.
MAX_RUNTIME_TAG = "dagster/max_runtime"


def scheduled_requests(
    days: TradingDays, day: str, instance: dg.DagsterInstance, backtest_start: dt.date, max_runtime: dt.timedelta
) -> list[dg.RunRequest]:
    plans = days.plan_runs(day, day, materialized_partitions(instance), DAILY, backtest_start)
    # Earlier plans feed later ones: give them the higher priority.
    return [
        dg.RunRequest(
            run_key=f"{day}:{plan.kind}:{plan.start}",
            asset_selection=[dg.AssetKey(a) for a in plan.assets],
            tags={
                **plan_tags(plan, "schedule"),
                PRIORITY_TAG: str(len(plans) - i),
                MAX_RUNTIME_TAG: str(int(max_runtime.total_seconds())),
            },
        )
        for i, plan in enumerate(plans)
    ]


@dg.op(
    description=(
        "Sends the day's published report to subscribers as text: each BUY and SELL fund with the link to its "
        "page, the portfolio's backtest line, and the link to the day's page."
    ),
    # SNS hiccups are retried; a retry re-reads the durable record first, so it never sends twice.
    retry_policy=dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
)
def send_signal_notification(
    context: dg.OpExecutionContext, site: SiteResource, notifier: NotifierResource
) -> dg.Output[None]:
    day = context.partition_key
    outbox = notifier.notifier()
    # The durable record is checked before sending: a rerun or a retry never sends a day twice.
    record = outbox.sent_record(day)
    if not must_send(record):
        context.log.info(f"{day} was already notified ({record['message_id']}); nothing sent")
        return dg.Output(None, metadata={"sent": False, "message_id": record["message_id"]})
    report = published_report(site, day)
    text = render_text(report, fund_url=lambda code: site.url(fund_page_key(code)))
    message = build_message(day, text, site.page_url(day), crossed_funds(report))
    record, sent = outbox.send(message)
    return dg.Output(
        None,
        metadata={"sent": sent, "message_id": record["message_id"], "subject": message.subject},
    )


def published_report(site: SiteResource, day: str) -> dict:
    published = site.store().get(report_key(day, ".json"))
    if published is None:
        # Not retried: a report missing now is not published by waiting a minute.
        raise dg.Failure(description=f"No published report for {day}: nothing to notify", allow_retries=False)
    return json.loads(published)


# A refused channel is tried again after ALCHEMY_NOTIFY_RETRY_SECONDS, then twice and four times that.
CHANNEL_RETRIES = 3


@dg.op(
    description=(
        "Sends the day's published report to each channel of ALCHEMY_NOTIFY_URLS (group robots, Telegram, "
        "webhooks, through Apprise) once: the BUY and SELL funds linked to their pages, the backtest's line and "
        "the day page's link. A channel that refuses is retried; one that did not answer in time is not resent."
    ),
)
def send_channel_messages(
    context: dg.OpExecutionContext, site: SiteResource, channels: ChannelsResource
) -> dg.Output[None]:
    day = context.partition_key
    configured = channels.channels()
    if not configured:
        context.log.info("No channel is configured (ALCHEMY_NOTIFY_URLS): nothing to send")
        return dg.Output(None, metadata={"channels": 0})
    report = published_report(site, day)
    day_url = site.page_url(day)

    def message_for(service):
        return compose(report, service, lambda code: site.url(fund_page_key(code)), day_url)

    store = channels.records.store()
    outcomes = in_parallel(
        lambda channel: notify_channel(channel, store, day, message_for, channels.timeout_seconds), configured
    )
    for outcome in outcomes:
        (context.log.info if outcome.state in ("sent", "already sent") else context.log.warning)(outcome.described())
    table = "\n".join(["| channel | outcome |", "|---|---|"] + [
        f"| `{o.channel}` | {o.state}{': ' + o.detail if o.detail else ''} |" for o in outcomes
    ])  # fmt: skip
    metadata = {
        "channels": len(configured),
        "sent": sum(o.state == "sent" for o in outcomes),
        "outcomes": dg.MetadataValue.md(table),
    }
    refused = [o for o in outcomes if o.state == "failed"]
    if refused and context.retry_number < CHANNEL_RETRIES:
        # Only the refused channels are tried again: the others' records say they are done.
        raise dg.RetryRequested(
            max_retries=CHANNEL_RETRIES, seconds_to_wait=channels.retry_seconds * 2**context.retry_number
        )
    unsettled = [o for o in outcomes if o.state in ("failed", "unknown")]
    if unsettled:
        raise dg.Failure(
            description=f"{len(unsettled)} of {len(outcomes)} channels did not take {day}: "
            + "; ".join(o.described() for o in unsettled),
            metadata=metadata,
        )
    return dg.Output(None, metadata=metadata)


def build_automation(
    running: bool, backtest_start: dt.date, max_runtime: dt.timedelta
) -> tuple[dg.JobDefinition, dg.ScheduleDefinition, dg.SensorDefinition]:
    """The notification job, the daily schedule and the notification sensor, on or off by default; the
    schedule plans the history the backtest from ``backtest_start`` reads, each run allowed ``max_runtime``
    (the late-data retries' span and the time after the last try, as the control plane stays)."""

    @dg.job(partitions_def=trading_days_partitions, tags={LANE_TAG: "notify"})
    def notify_subscribers():
        """Emails the day's signals to subscribers and sends them to the channels, each once per day; the
        email and the channels do not wait for each other."""
        send_signal_notification()
        send_channel_messages()

    @exchange_schedule(
        f"0 {calendar.PUBLISH_HOUR} * * 1-5",
        daily_signals_job,
        running,
        f"{calendar.PUBLISH_HOUR}:00 {calendar.TIMEZONE} on trading days: publishes that day's signals. On a fresh "
        "instance it first fetches the missing price history as one single-run backfill.",
    )
    def daily_signals_schedule(context: dg.ScheduleEvaluationContext, calendar_cache: TradingCalendarResource):
        day = context.scheduled_execution_time.astimezone(ZoneInfo(calendar.TIMEZONE)).date()
        # The calendar is read now, not when the code location loaded: a refreshed trade_cal counts at once.
        fresh = TradingDays(calendar_cache.load())
        known = fresh.calendar
        if not known.knows(day):
            # Fail safe: past the calendar's horizon a holiday would look like a trading day.
            return dg.SkipReason(
                f"{day} is past {known.known_until}, the last day the trading calendar knows ({known.source}): "
                "materialize the trading_calendar asset once Tushare lists the exchange's new year, or upgrade "
                "exchange-calendars (pinned in pyproject.toml); nothing is published"
            )
        if not known.is_trading_day(day):
            return dg.SkipReason(f"{day} is not a trading day of the {calendar.EXCHANGE} calendar")
        return scheduled_requests(fresh, day.isoformat(), context.instance, backtest_start, max_runtime)

    @dg.sensor(
        job=notify_subscribers,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description="Notifies subscribers of the newest published signal_report day, once, if it is recent.",
    )
    def notify_subscribers_sensor(context: dg.SensorEvaluationContext, notifier: NotifierResource):
        published = context.instance.get_materialized_partitions(dg.AssetKey(REPORT_ASSET))
        today = calendar.exchange_today()
        decision = choose_day_to_notify(sorted(published), context.cursor or None, today, notifier.max_age_days)
        if decision.day is None:
            return dg.SkipReason(decision.reason)
        context.update_cursor(decision.day)
        return dg.RunRequest(run_key=f"notify:{decision.day}", partition_key=decision.day)

    return notify_subscribers, daily_signals_schedule, notify_subscribers_sensor
