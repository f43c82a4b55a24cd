"""Which day to notify subscribers of, what the message says, and the local outbox.

Rules: notify only the newest day that has a published report, only if it is newer than the last day
notified, only if it is at most ``max_age_days`` calendar days old, and at most once per day: the
notifier keeps a durable record per day and never sends a day it has a record for.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from alchemy_pipeline.domain.signals.rule import State
from alchemy_pipeline.infrastructure.storage import BlobStore, WriteConflict, atomic_write

SUBJECT = "Double MA Strategy Trade Signal: {day} - A Share"
# SNS refuses email subjects that are not ASCII or are 100 characters or more.
MAX_SUBJECT_CHARS = 99
# SNS's message limit is 256 KB; keep room for the link and the cut notice.
MAX_BODY_BYTES = 250_000


# The message attribute that lists the day's BUY and SELL funds: a watchlist subscriber's filter policy
# (deploy/lambda/subscribe) matches it, so SNS delivers her the days one of her funds crosses.
CROSSED = "crossed"


@dataclass(frozen=True)
class Message:
    trade_date: str
    subject: str
    body: str
    crossed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    day: str | None
    reason: str


def choose_day_to_notify(
    published_days: list[str], last_notified: str | None, today: dt.date, max_age_days: int
) -> Decision:
    if not published_days:
        return Decision(None, "no report has been published yet")
    newest = max(published_days)
    if last_notified is not None and newest <= last_notified:
        return Decision(None, f"the newest report ({newest}) is not newer than the last notified day ({last_notified})")
    age = (today - dt.date.fromisoformat(newest)).days
    if age > max_age_days:
        return Decision(None, f"the newest report ({newest}) is {age} days old, over the {max_age_days}-day limit")
    return Decision(newest, f"{newest} is the newest report and has not been notified")


def crossed_funds(report: dict) -> tuple[str, ...]:
    return tuple(e["ts_code"] for e in report["signals"] if e["state"] in (State.BUY, State.SELL))


def build_message(day: str, text: str, page_url: str, crossed: tuple[str, ...] = ()) -> Message:
    subject = SUBJECT.format(day=day)
    if not subject.isascii() or len(subject) > MAX_SUBJECT_CHARS:
        raise ValueError(f"email subject must be ASCII and under 100 characters: {subject!r}")
    link = f"\n详情与历史: {page_url}\n"
    body = text.rstrip("\n") + "\n" + link
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        cut = "\n...(内容过长, 已截断, 完整报告见下方链接)\n"
        room = MAX_BODY_BYTES - len((cut + link).encode("utf-8"))
        head = text.encode("utf-8")[:room].decode("utf-8", errors="ignore")
        body = head[: head.rfind("\n") + 1] + cut + link
    return Message(day, subject, body, crossed)


class NotificationInDoubt(RuntimeError):
    """An earlier attempt may or may not have sent the day's message."""


class Notifier(Protocol):
    def sent_record(self, day: str) -> dict | None:
        """The durable record of the day's message, if an attempt was ever made."""

    def send(self, message: Message) -> tuple[dict, bool]:
        """Sends the message unless its record says it was sent meanwhile; returns the record and whether
        this call sent it."""


def must_send(record: dict | None, key: str | None = None, where: str = "the topic's delivery logs") -> bool:
    """Whether the day still needs its message, given its durable record (kept at ``key``, by default the
    email's).

    A record left in state ``sending`` (or ``unknown``: no answer in time) means an attempt may have
    delivered the message. Sending again could message every subscriber twice, so the day fails loudly
    instead (a missed message is preferred to a duplicate) and an operator decides, after checking ``where``.
    """
    if record is None or record.get("state") == "failed":
        return True
    if record.get("state") == "sent":
        return False
    day, state = record.get("trade_date"), record.get("state")
    what = "got no answer in time" if state == "unknown" else "was started and never recorded as sent or failed"
    raise NotificationInDoubt(
        f"the notification of {day} {what} ({record.get('updated_at')}): it may have been delivered; check "
        f"{where}, then delete {key or f'notifications/{day}.json'} to send it again"
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class LocalOutbox:
    """Writes each message to ``<root>/YYYY-MM-DD.json``; the file is the durable record of sending."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def sent_record(self, day: str) -> dict | None:
        path = self.root / f"{day}.json"
        return json.loads(path.read_text("utf-8")) if path.exists() else None

    def send(self, message: Message) -> tuple[dict, bool]:
        # The outbox file is the message itself: a second write of one day is the same file, not a second email.
        record = {
            **asdict(message),
            "state": "sent",
            "message_id": f"outbox-{message.trade_date}",
            "updated_at": _now(),
        }
        atomic_write(
            self.root / f"{message.trade_date}.json", json.dumps(record, ensure_ascii=False, indent=2).encode()
        )
        return record, True


class DayRecords:
    """Each day's durable record of one recipient's message, at ``<prefix><day>.json`` in a blob store.

    An attempt claims the day by a conditional write before sending, so that of concurrent attempts (two
    runs of one day, a retry racing a rerun) exactly one goes on to send, and a crash after sending leaves
    the claim behind (see ``must_send``)."""

    def __init__(self, store: BlobStore, prefix: str, where: str):
        self._store = store
        self.prefix = prefix
        self.where = where

    def key(self, day: str) -> str:
        return f"{self.prefix}{day}.json"

    def get(self, day: str) -> dict | None:
        raw = self._store.get(self.key(day))
        return json.loads(raw) if raw is not None else None

    def must_send(self, record: dict | None) -> bool:
        return must_send(record, self.key(record["trade_date"]) if record else None, self.where)

    def write(self, day: str, **fields) -> dict:
        record = {"trade_date": day, **fields, "updated_at": _now()}
        self._store.put(self.key(day), json.dumps(record, ensure_ascii=False, indent=2).encode(), "application/json")
        return record

    def claim(self, day: str, **fields) -> dict | None:
        """Moves the day's record to ``sending``; returns the record instead when it says the day was sent."""
        tagged = self._store.get_tagged(self.key(day))
        record = json.loads(tagged[0]) if tagged else None
        if not self.must_send(record):
            return record
        claim = {"trade_date": day, **fields, "state": "sending", "updated_at": _now()}
        try:
            self._store.put_if(self.key(day), json.dumps(claim, ensure_ascii=False, indent=2).encode(),
                               tagged[1] if tagged else None, "application/json")  # fmt: skip
        except WriteConflict:
            raise NotificationInDoubt(
                f"another attempt claimed the notification of {day} at the same moment; this one sent nothing (a "
                "retry reads what that attempt recorded)"
            ) from None
        return None


def message_attributes(message: Message) -> dict:
    """The day, and the funds that crossed on it (none: no attribute, and no watchlist matches)."""
    attributes = {"trade_date": {"DataType": "String", "StringValue": message.trade_date}}
    if message.crossed:
        attributes[CROSSED] = {"DataType": "String.Array", "StringValue": json.dumps(list(message.crossed))}
    return attributes


class SnsNotifier:
    """Publishes to an SNS topic, keeping each day's record at ``notifications/YYYY-MM-DD.json``."""

    def __init__(self, sns_client, topic_arn: str, records: BlobStore):
        self._sns = sns_client
        self.topic_arn = topic_arn
        self._records = DayRecords(records, "notifications/", "the topic's delivery logs")

    def sent_record(self, day: str) -> dict | None:
        return self._records.get(day)

    def send(self, message: Message) -> tuple[dict, bool]:
        from botocore.exceptions import ClientError, EndpointConnectionError

        # Claimed before publishing, so a crash in between leaves "sending" (see must_send): the day is
        # then never resent automatically. This side fails toward a missed email, never a duplicate.
        day, subject = message.trade_date, message.subject
        already = self._records.claim(day, subject=subject)
        if already is not None:
            return already, False
        try:
            answer = self._sns.publish(
                TopicArn=self.topic_arn,
                Subject=message.subject,
                Message=message.body,
                MessageAttributes=message_attributes(message),
            )
        except (ClientError, EndpointConnectionError) as exc:
            # SNS refused the call or was never reached: nothing was sent, a retry may send.
            self._records.write(day, subject=subject, state="failed", error=str(exc))
            raise
        return self._records.write(day, subject=subject, state="sent", message_id=answer["MessageId"]), True
