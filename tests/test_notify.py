"""Notification rules, the message, and the durable record's crash semantics."""

import datetime as dt
import json
import threading
import uuid

import boto3
import pytest

from alchemy_pipeline.domain.site.notify import (
    MAX_BODY_BYTES,
    Message,
    NotificationInDoubt,
    SnsNotifier,
    build_message,
    choose_day_to_notify,
    must_send,
)
from alchemy_pipeline.infrastructure.storage import LocalBlobStore, S3BlobStore
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
    with pytest.raises(NotificationInDoubt, match=r"delete notifications/2024-06-28\.json to send it again"):
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
    record, sent = notifier.send(Message("2024-06-28", "subject", "body"))
    assert sent
    stored = json.loads((tmp_path / "notifications" / "2024-06-28.json").read_text())
    assert stored["state"] == "sent" and stored["message_id"] == record["message_id"]


def subscribed_topic() -> tuple[str, str]:
    """A topic with an SQS queue subscribed, to count what SNS really delivers."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    topic = sns.create_topic(Name=f"t-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"q-{suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, queue_url


def delivered(queue_url: str) -> int:
    sqs, count = boto3.client("sqs"), 0
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    ):
        count += len(batch)
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return count


def record_store(kind: str, tmp_path):
    if kind == "local":
        return lambda: LocalBlobStore(tmp_path)
    bucket = f"records-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return lambda: S3BlobStore(boto3.client("s3"), bucket)


@pytest.mark.parametrize("store", ["s3", "local"])
def test_concurrent_attempts_at_one_day_send_one_email(aws, tmp_path, store):
    topic, queue_url = subscribed_topic()
    records = record_store(store, tmp_path)
    # Each attempt has its own clients, as separate runs would; they start together.
    notifiers = [SnsNotifier(boto3.client("sns"), topic, records()) for _ in range(6)]
    start, outcomes = threading.Barrier(len(notifiers)), []

    def attempt(notifier):
        start.wait()
        try:
            outcomes.append(notifier.send(Message("2024-06-28", "subject", "body"))[1])
        except NotificationInDoubt as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in notifiers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(True) == 1, outcomes
    assert all(o is False or "sent nothing" in o or "never recorded as sent" in o for o in outcomes if o is not True)
    assert delivered(queue_url) == 1
    assert notifiers[0].sent_record("2024-06-28")["state"] == "sent"


def test_a_failed_day_is_claimed_again_and_sent_once(aws, tmp_path):
    topic, queue_url = subscribed_topic()
    records = LocalBlobStore(tmp_path)
    records.put("notifications/2024-06-28.json", json.dumps({"trade_date": "2024-06-28", "state": "failed"}).encode())
    notifier = SnsNotifier(boto3.client("sns"), topic, records)
    assert notifier.send(Message("2024-06-28", "subject", "body"))[1]
    assert not notifier.send(Message("2024-06-28", "subject", "body"))[1]
    assert delivered(queue_url) == 1
