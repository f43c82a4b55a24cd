"""Publishing reports to a site store: one key layout wherever the store lives.

Layout: ``reports/YYYY-MM-DD.json|.txt|.html``, ``index.html`` and ``history.json``. A day's JSON is
written last, and the history lists only days whose JSON exists, so a day appears on the site only
once all three of its files are there.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path

from alchemy_pipeline.domain.report import history_json, render_html, render_index, render_text, report_json
from alchemy_pipeline.domain.storage import IN_FLIGHT, BlobStore, in_parallel

CONTENT_TYPES = {
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
# The front page and the history change every day; a dated report changes only if it is re-run.
SHORT_CACHE = "public, max-age=300"
REPORT_CACHE = "public, max-age=3600"


def _put(store: BlobStore, key: str, data: bytes, cache_control: str) -> None:
    store.put(key, data, content_type=CONTENT_TYPES[Path(key).suffix], cache_control=cache_control)


def report_key(day: str, suffix: str) -> str:
    return f"reports/{day}{suffix}"


def published_days(store: BlobStore) -> list[str]:
    return sorted(
        k.removeprefix("reports/").removesuffix(".json") for k in store.keys("reports/") if k.endswith(".json")
    )


def _publish_one(store: BlobStore, report: dict) -> list[str]:
    day = report["trade_date"]
    keys = []
    for suffix, data in (
        (".txt", render_text(report).encode("utf-8")),
        (".html", render_html(report).encode("utf-8")),
        (".json", report_json(report)),
    ):
        _put(store, report_key(day, suffix), data, REPORT_CACHE)
        keys.append(report_key(day, suffix))
    return keys


def publish_reports(store: BlobStore, reports: Iterable[dict], subscribe_url: str | None = None) -> list[str]:
    """Writes each day's three files (several days at once), then refreshes the front page and the
    history once, after every day's files are written."""
    written, reports = [], iter(reports)
    # In batches: the reports may be built lazily, and only a batch of them need exist at once.
    while batch := list(itertools.islice(reports, IN_FLIGHT * 4)):
        written += [key for keys in in_parallel(lambda report: _publish_one(store, report), batch) for key in keys]
    written += refresh_index(store, subscribe_url)
    return written


def refresh_index(store: BlobStore, subscribe_url: str | None = None) -> list[str]:
    days = published_days(store)
    if not days:
        return []
    latest = json.loads(store.get(report_key(days[-1], ".json")))
    _put(store, "history.json", history_json(days), SHORT_CACHE)
    _put(store, "index.html", render_index(latest, days, subscribe_url).encode("utf-8"), SHORT_CACHE)
    return ["history.json", "index.html"]
