"""Channels beside the email: group robots (WeCom, DingTalk, Feishu), Telegram, ServerChan, PushPlus, Bark
and webhooks, each one Apprise URL.

A channel is named in records and logs by a digest of its URL, never by the URL, which holds its token.
Each day's message puts the BUY and SELL funds first, linked to their pages, then the backtest's one line
and the day page's link: in Markdown where the service renders it, cut to the service's length.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import apprise

from alchemy_pipeline.domain.backtest import PORTFOLIO_NAME
from alchemy_pipeline.domain.signals.rule import State
from alchemy_pipeline.domain.site.notify import DayRecords, NotificationInDoubt
from alchemy_pipeline.domain.site.report import BACKTEST_UNAVAILABLE, backtest_line, signal_line
from alchemy_pipeline.infrastructure.storage import BlobStore, in_parallel

NOTIFY_URLS = "ALCHEMY_NOTIFY_URLS"
OPERATOR_URLS = "ALCHEMY_OPERATOR_URLS"
# Apprise logs a URL it cannot parse whole, token included: none of its log lines reach the process's
# log. What a send did is read from its result instead, and redacted (``redact``).
logging.getLogger("apprise").propagate = False
logging.getLogger("apprise").addHandler(logging.NullHandler())

CROSSINGS = ((State.BUY, "可买标的"), (State.SELL, "可卖标的"))
DAY_LINK = "当日全部信号与历史"


class ChannelError(ValueError):
    """A channel URL Apprise cannot use."""


@dataclass(frozen=True)
class Channel:
    url: str = field(repr=False)

    @property
    def id(self) -> str:
        """How records and logs name the channel: a digest of its URL."""
        return hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower()

    @property
    def name(self) -> str:
        return f"{self.scheme}:{self.id}"

    def service(self) -> apprise.NotifyBase:
        return apprise.Apprise.instantiate(self.url)


def parse_channels(text: str, variable: str = NOTIFY_URLS) -> tuple[Channel, ...]:
    """The channels of a whitespace- or comma-separated list of Apprise URLs, each once; an unusable URL is
    refused in one line that names ``variable`` and the URL's scheme, never its token."""
    channels: dict[str, Channel] = {}
    for position, url in enumerate((u for u in re.split(r"[\s,]+", text) if u), start=1):
        channel = Channel(url)
        if "://" not in url or channel.service() is None:
            scheme = f"{channel.scheme}://" if "://" in url else "a text without a scheme://"
            raise ChannelError(
                f"{variable}: URL {position} ({scheme}) is not one Apprise can send to: an unknown scheme, or its "
                "token or target is missing or malformed (see https://github.com/caronc/apprise/wiki)"
            )
        channels.setdefault(channel.id, channel)
    return tuple(channels.values())


@dataclass(frozen=True)
class ChannelMessage:
    title: str
    body: str
    body_format: str


def _formats(service: apprise.NotifyBase) -> tuple[str, ...]:
    declared = service.notify_format
    return tuple(declared) if isinstance(declared, tuple | list) else (declared,)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def compose(report: dict, service: apprise.NotifyBase, fund_url: Callable[[str], str], day_url: str) -> ChannelMessage:
    """The day's message for ``service``: Markdown if it renders it, else text with bare links; at most its
    length in UTF-8 bytes (Apprise counts characters, the services' limits are often bytes), the funds that
    do not fit replaced by their number and the day page's link."""
    markdown = apprise.NotifyFormat.MARKDOWN in _formats(service)
    day, params = report["trade_date"], report["strategy"]
    crossing = {state: [e for e in report["signals"] if e["state"] == state] for state, _ in CROSSINGS}
    title = f"双均线信号 {day}: 可买{len(crossing[State.BUY])}, 可卖{len(crossing[State.SELL])}"

    def fund(entry: dict) -> str:
        who = f"{entry['name']}({entry['ts_code']})"
        rest = signal_line(entry, params)[len(who) :]
        url = fund_url(entry["ts_code"])
        return f"- [{who}]({url}){rest}" if markdown else f"{who}{rest}\n  {url}"

    funds = [(title_, [fund(e) for e in crossing[state]]) for state, title_ in CROSSINGS if crossing[state]]
    others = {label: sum(e["state"] == state for e in report["signals"]) for state, label in
              ((State.HOLD, "持仓"), (State.EMPTY, "空仓"))}  # fmt: skip
    summary = ", ".join(f"{label}{count}" for label, count in others.items())
    tail = [f"{'今日无买卖信号; ' if not funds else ''}{summary}"]
    if report.get("backtest"):
        tail.append(f"回测: {backtest_line(PORTFOLIO_NAME, report['backtest']['portfolio'])}")
    elif "backtest" in report:
        tail.append(BACKTEST_UNAVAILABLE)
    tail.append(f"[{DAY_LINK}]({day_url})" if markdown else f"{DAY_LINK}: {day_url}")

    limit = service.body_maxlen if service.body_maxlen > 0 else None
    if limit is not None and service.title_maxlen <= 0:
        limit -= _bytes(title) + 2  # a service without a title gets it as the body's first line
    lines: list[str] = []
    left = sum(len(f) for _, f in funds)
    for header, lines_of_state in funds:
        lines.append(f"**{header}**" if markdown else f"{header}:")
        for line in lines_of_state:
            more = f"...另有{left}个买卖标的未列出, 见下方链接"
            if limit is not None and _bytes("\n".join([*lines, line, more, *tail])) > limit:
                return ChannelMessage(title, "\n".join([*lines, more, *tail]), _format(markdown))
            lines.append(line)
            left -= 1
    return ChannelMessage(title, "\n".join([*lines, *tail]), _format(markdown))


def _format(markdown: bool) -> str:
    return apprise.NotifyFormat.MARKDOWN if markdown else apprise.NotifyFormat.TEXT


@dataclass(frozen=True)
class Outcome:
    """What one channel did with the day: ``sent``, ``already sent``, ``failed`` (refused or unreachable:
    nothing arrived, a retry may send), ``unknown`` (no answer in time: it may have arrived, never resent)."""

    channel: str
    state: str
    detail: str = ""

    def described(self) -> str:
        return f"{self.channel}: {self.state}" + (f" ({self.detail})" if self.detail else "")


def redact(text: str, url: str) -> str:
    """``text`` without any secret-looking part of ``url`` (its user, password, token or path pieces; host
    names, which have dots, stay)."""
    for piece in re.split(r"[/:@?&=#]+", url.split("://", 1)[-1]):
        if len(piece) >= 4 and "." not in piece:
            text = text.replace(piece, "***")
    return text


def send(channel: Channel, service: apprise.NotifyBase, message: ChannelMessage, timeout_seconds: float) -> Outcome:
    """Sends ``message`` through the channel's ``service`` (``Channel.service``) and says what came of it."""
    # A slow answer must end as Apprise's timeout (the message may have arrived), never as the service's own
    # read timeout, which Apprise reports as a failure like a refusal.
    service.socket_read_timeout = timeout_seconds + 30
    sender = apprise.Apprise()
    sender.add(service)
    result = sender.notify(
        body=message.body, title=message.title, body_format=message.body_format, timeout=timeout_seconds
    )
    if result.status == apprise.AppriseResultStatus.SUCCESS:
        return Outcome(channel.name, "sent")
    if result.status == apprise.AppriseResultStatus.TIMEOUT:
        return Outcome(channel.name, "unknown", f"no answer within {timeout_seconds:g} s: it may have arrived")
    said = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    return Outcome(channel.name, "failed", redact(said[-1] if said else "refused", channel.url))


def records_of(store: BlobStore, channel: Channel) -> DayRecords:
    return DayRecords(store, f"notifications/channels/{channel.id}/", f"the {channel.scheme} channel {channel.id}")


def notify_channel(
    channel: Channel,
    store: BlobStore,
    day: str,
    message_for: Callable[[apprise.NotifyBase], ChannelMessage],
    timeout_seconds: float,
) -> Outcome:
    """Sends the day to the channel once: not if its record says it was sent, nor if a past attempt may have
    sent it (``must_send``); its outcome recorded either way."""
    records = records_of(store, channel)
    fields = {"channel": channel.id, "scheme": channel.scheme}
    try:
        if records.claim(day, **fields) is not None:
            return Outcome(channel.name, "already sent")
    except NotificationInDoubt as doubt:
        return Outcome(channel.name, "unknown", str(doubt))
    service = channel.service()
    outcome = send(channel, service, message_for(service), timeout_seconds)
    records.write(day, **fields, state=outcome.state, **({"detail": outcome.detail} if outcome.detail else {}))
    return outcome


def alert(channels: tuple[Channel, ...], title: str, body: str, timeout_seconds: float) -> list[Outcome]:
    """Tells the operator's channels, side by side, in plain text; what each did (nothing when there are
    none). An alert is not retried: the next failure, or the success after, says where things stand."""
    message = ChannelMessage(title, body, apprise.NotifyFormat.TEXT)
    return in_parallel(lambda channel: send(channel, channel.service(), message, timeout_seconds), channels)
