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

from alchemy_pipeline.domain.publish import atomic_write

SUBJECT = "Double MA Strategy Trade Signal: {day} - A Share"
# SNS refuses email subjects that are not ASCII or are 100 characters or more.
MAX_SUBJECT_CHARS = 99
# SNS's message limit is 256 KB; keep room for the link and the cut notice.
MAX_BODY_BYTES = 250_000


@dataclass(frozen=True)
class Message:
    trade_date: str
    subject: str
    body: str


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


def build_message(day: str, text: str, page_url: str) -> Message:
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
    return Message(day, subject, body)


class Notifier(Protocol):
    def sent_record(self, day: str) -> dict | None: ...

    def send(self, message: Message) -> dict: ...


class LocalOutbox:
    """Writes each message to ``<root>/YYYY-MM-DD.json``; the file is the durable record of sending."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def sent_record(self, day: str) -> dict | None:
        path = self.root / f"{day}.json"
        return json.loads(path.read_text("utf-8")) if path.exists() else None

    def send(self, message: Message) -> dict:
        record = {**asdict(message), "message_id": f"outbox-{message.trade_date}"}
        data = json.dumps(record, ensure_ascii=False, indent=2).encode("utf-8")
        atomic_write(self.root / f"{message.trade_date}.json", data)
        return record
