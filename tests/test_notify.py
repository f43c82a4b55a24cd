"""Notification rules, the message, and the durable record's crash semantics."""

import datetime as dt
import json
import uuid

import boto3
import pytest

from alchemy_pipeline.domain.notify import (
    MAX_BODY_BYTES,
    Message,
    NotificationInDoubt,
    SnsNotifier,
    build_message,
    choose_day_to_notify,
    must_send,
)
from alchemy_pipeline.domain.storage import LocalBlobStore
from tests.aws import free_port

TODAY = dt.date(2024, 7, 2)


def test_only_the_newest_recent_day_not_yet_notified():
    days = ["2024-06-27", "2024-06-28", "2024-07-01"]
    assert choose_day_to_notify(days, None, TODAY, 3).day == "2024-07-01"
    assert choose_day_to_notify(days, "2024-06-28", TODAY, 3).day == "2024-07-01"
    assert choose_day_to_notify(days, "2024-07-01", TODAY, 3).day is None
    assert choose_day_to_notify([], None, TODAY, 3).day is None


def test_a_day_older_than_the_limit_is_not_notified():
    stale = choose_day_to_notify(["2024-06-27"], None, TODAY, 3)
    assert stale.day is None and "5 days old" in stale.reason
    assert choose_day_to_notify(["2024-06-29"], None, TODAY, 3).day == "2024-06-29"


def test_subject_is_ascii_and_short_and_body_ends_with_the_link():
    message = build_message(
        "2024-06-28", "可买标的:\n沪深300ETF(510300.SH)可买\n", "https://x.example/reports/2024-06-28.html"
    )
    assert message.subject == "Double MA Strategy Trade Signal: 2024-06-28 - A Share"
    assert message.subject.isascii() and len(message.subject) < 100
    assert message.body.startswith("可买标的:\n沪深300ETF(510300.SH)可买\n")
    assert message.body.rstrip().endswith("https://x.example/reports/2024-06-28.html")


def test_a_huge_report_is_cut_with_a_pointer_to_the_page_never_failing():
    text = "".join(f"某某ETF({i:06d}.SH)于2024-01-02日买入, 持有10天, 盈利1.00%\n" for i in range(20_000))
    message = build_message("2024-06-28", text, "https://x.example/reports/2024-06-28.html")
    assert len(message.body.encode("utf-8")) <= MAX_BODY_BYTES < 256 * 1024
    assert "已截断" in message.body and message.body.rstrip().endswith("2024-06-28.html")
    assert message.body.startswith(text[:1000])


def test_record_states_decide_whether_to_send():
    assert must_send(None) and must_send({"state": "failed"})
    assert not must_send({"state": "sent"})
    with pytest.raises(NotificationInDoubt, match="delete its record"):
        must_send({"state": "sending", "trade_date": "2024-06-28"})


def test_sns_refusal_is_recorded_as_failed_so_a_retry_may_send(aws, tmp_path, monkeypatch):
    records = LocalBlobStore(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # SNS unreachable
    sns = boto3.client("sns", config=boto3.session.Config(retries={"max_attempts": 1}, connect_timeout=1))
    notifier = SnsNotifier(sns, "arn:aws:sns:us-east-1:123456789012:signals", records)
    with pytest.raises(Exception, match="Could not connect"):
        notifier.send(Message("2024-06-28", "s", "b"))
    assert notifier.sent_record("2024-06-28")["state"] == "failed"


def test_a_sent_day_records_the_message_id(aws, tmp_path):
    sns = boto3.client("sns")
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    notifier = SnsNotifier(sns, topic, LocalBlobStore(tmp_path))
    record = notifier.send(Message("2024-06-28", "subject", "body"))
    stored = json.loads((tmp_path / "notifications" / "2024-06-28.json").read_text())
    assert stored["state"] == "sent" and stored["message_id"] == record["message_id"]
