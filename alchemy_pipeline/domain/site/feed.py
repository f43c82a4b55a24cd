"""The site's Atom feed, ``feed.xml``: one entry per published day, newest first, with its BUY and SELL funds.

A day's entry is the same bytes however often it is published: its id is a ``tag:`` URI of the day, not
of the site's address, and its time is the day's publication hour. Links are relative to the feed, which
sits at the site's top, so the feed does not depend on where the site is served either.
"""

from __future__ import annotations

import datetime as dt
import html
from zoneinfo import ZoneInfo

from feedgen.feed import FeedGenerator

from alchemy_pipeline.domain.market.calendar import PUBLISH_HOUR, TIMEZONE

FEED_KEY = "feed.xml"
FEED_TITLE = "双均线策略交易信号"
MAX_ENTRIES = 60
TAG = "tag:alchemy,2026:"


def published_at(day: str) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(PUBLISH_HOUR), ZoneInfo(TIMEZONE))


def _funds(label: str, funds: list[dict]) -> str:
    links = "、".join(
        f'<a href="funds/{html.escape(f["ts_code"])}.html">{html.escape(f["name"])}({html.escape(f["ts_code"])})</a>'
        for f in funds
    )
    return f"<p>{label}: {links}</p>" if funds else ""


def render_feed(entries: list[dict]) -> bytes:
    """The feed of the newest ``MAX_ENTRIES`` of the history's entries (``history_entry``: a day and its crosses;
    at least one)."""
    newest = sorted(entries, key=lambda e: e["trade_date"], reverse=True)[:MAX_ENTRIES]
    feed = FeedGenerator()
    feed.id(f"{TAG}signals")
    feed.title(FEED_TITLE)
    feed.author({"name": "Alchemy"})
    feed.link(href=FEED_KEY, rel="self")
    feed.link(href="index.html", rel="alternate")
    feed.language("zh-CN")
    feed.updated(published_at(newest[0]["trade_date"]))
    for day in newest:
        entry = feed.add_entry(order="append")
        date = day["trade_date"]
        entry.id(f"{TAG}reports/{date}")
        entry.title(f"{date}: 可买 {len(day['buy'])}, 可卖 {len(day['sell'])}")
        entry.link(href=f"reports/{date}.html")
        entry.updated(published_at(date))
        body = _funds("可买", day["buy"]) + _funds("可卖", day["sell"]) or "<p>今日无买卖信号</p>"
        entry.content(f'{body}<p><a href="reports/{date}.html">当日全部信号</a></p>', type="html")
    return feed.atom_str(pretty=True)
