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

import pandas as pd

from alchemy_pipeline.domain.report import build_reports, day_batches, history_json, render_files, render_index
from alchemy_pipeline.domain.storage import IN_FLIGHT, BlobStore, in_parallel
from alchemy_pipeline.domain.strategy import StrategyParams
from alchemy_pipeline.domain.workers import map_in_processes, worth_workers

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


RenderedDay = tuple[str, dict[str, bytes]]  # a day, and its files' bytes by suffix


def _write_day(store: BlobStore, rendered: RenderedDay) -> list[str]:
    day, files = rendered
    keys = []
    for suffix, data in files.items():  # the JSON last: it marks the day as published
        _put(store, report_key(day, suffix), data, REPORT_CACHE)
        keys.append(report_key(day, suffix))
    return keys


def _write_days(store: BlobStore, rendered: Iterable[RenderedDay], subscribe_url: str | None) -> list[str]:
    """Writes each day's files (several days at once), then refreshes the front page and the history once,
    after every day's files are written."""
    written, rendered = [], iter(rendered)
    with store.batch():
        # In batches: the days may be rendered lazily, and only a batch of them need exist at once.
        while batch := list(itertools.islice(rendered, IN_FLIGHT * 4)):
            written += [key for keys in in_parallel(lambda day: _write_day(store, day), batch) for key in keys]
    written += refresh_index(store, subscribe_url)  # once every day's files are durable
    return written


def publish_reports(store: BlobStore, reports: Iterable[dict], subscribe_url: str | None = None) -> list[str]:
    """Publishes report documents: each day's three files, then the front page and the history."""
    rendered = ((report["trade_date"], render_files(report)) for report in reports)
    return _write_days(store, rendered, subscribe_url)


def render_batch(signals: pd.DataFrame, params: StrategyParams, notice: str | None) -> list[RenderedDay]:
    """The files of each day of a slice of signals (run in a worker process)."""
    return [(report["trade_date"], render_files(report)) for report in build_reports(signals, params, notice)]


def publish_signals(
    store: BlobStore,
    signals: pd.DataFrame,
    params: StrategyParams,
    notice: str | None = None,
    subscribe_url: str | None = None,
) -> list[str]:
    """Publishes the report of every day in ``signals``. Rendering is pure Python: a long range is
    rendered in worker processes, a batch of days each, while this process writes the files."""
    batches = day_batches(signals)
    if worth_workers(len(signals)):
        rendered_batches = map_in_processes(render_batch, batches, params, notice)
    else:
        rendered_batches = (render_batch(batch, params, notice) for batch in batches)
    return _write_days(store, itertools.chain.from_iterable(rendered_batches), subscribe_url)


def refresh_index(store: BlobStore, subscribe_url: str | None = None) -> list[str]:
    days = published_days(store)
    if not days:
        return []
    latest = json.loads(store.get(report_key(days[-1], ".json")))
    _put(store, "history.json", history_json(days), SHORT_CACHE)
    _put(store, "index.html", render_index(latest, days, subscribe_url).encode("utf-8"), SHORT_CACHE)
    return ["history.json", "index.html"]
