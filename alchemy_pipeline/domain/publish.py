"""Publishing reports to a site store: one key layout wherever the store lives.

Layout: ``reports/YYYY-MM-DD.json|.txt|.html``, ``index.html`` and ``history.json``; the backtest's
``backtests/YYYY-MM-DD.json`` and ``backtests/trades/<ts_code>.json``. A day's report JSON is written
last, and the history lists only days whose JSON exists, so a day appears on the site only once all
three of its files are there.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from alchemy_pipeline.domain.report import (
    backtest_summaries,
    build_reports,
    day_batches,
    document_json,
    history_json,
    list_json,
    render_files,
    render_index,
)
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


def render_batch(
    batch: tuple[pd.DataFrame, dict[str, dict]], params: StrategyParams, notice: str | None
) -> list[RenderedDay]:
    """The files of each day of a slice of signals, with those days' backtest summaries (run in a worker
    process)."""
    signals, backtests = batch
    reports = build_reports(signals, params, notice, backtests)
    return [(report["trade_date"], render_files(report)) for report in reports]


def publish_signals(
    store: BlobStore,
    signals: pd.DataFrame,
    params: StrategyParams,
    notice: str | None = None,
    subscribe_url: str | None = None,
    backtests: pd.DataFrame | None = None,
) -> list[str]:
    """Publishes the report of every day in ``signals``, with its backtest summary from the figures table
    ``backtests``. Rendering is pure Python: a long range is rendered in worker processes, a batch of days
    each, while this process writes the files."""

    def with_backtests(batch: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict]]:
        if backtests is None:
            return batch, {}
        days = backtests["trade_date"].to_numpy()
        first, last = batch["trade_date"].iloc[0].to_datetime64(), batch["trade_date"].iloc[-1].to_datetime64()
        rows = slice(days.searchsorted(first, "left"), days.searchsorted(last, "right"))
        return batch, backtest_summaries(backtests.iloc[rows])

    batches = (with_backtests(batch) for batch in day_batches(signals))
    if worth_workers(len(signals)):
        rendered_batches = map_in_processes(render_batch, batches, params, notice)
    else:
        rendered_batches = (render_batch(batch, params, notice) for batch in batches)
    return _write_days(store, itertools.chain.from_iterable(rendered_batches), subscribe_url)


def backtest_key(day: str) -> str:
    return f"backtests/{day}.json"


def trades_key(ts_code: str) -> str:
    return f"backtests/trades/{ts_code}.json"


def publish_backtests(
    store: BlobStore, documents: Iterable[dict], trades: dict[str, list[dict]] | None = None
) -> list[str]:
    """Publishes each day's backtest document and, when given, every fund's trades (by code)."""
    files = ((backtest_key(d["as_of"]), document_json(d, "funds"), REPORT_CACHE) for d in documents)
    if trades is not None:
        files = itertools.chain(files, ((trades_key(c), list_json(t), SHORT_CACHE) for c, t in trades.items()))
    written = []
    with store.batch():
        while batch := list(itertools.islice(files, IN_FLIGHT * 4)):
            in_parallel(lambda file: _put(store, *file), batch)
            written += [key for key, _, _ in batch]
    return written


def refresh_index(store: BlobStore, subscribe_url: str | None = None) -> list[str]:
    days = published_days(store)
    if not days:
        return []
    latest = json.loads(store.get(report_key(days[-1], ".json")))
    _put(store, "history.json", history_json(days), SHORT_CACHE)
    _put(store, "index.html", render_index(latest, days, subscribe_url).encode("utf-8"), SHORT_CACHE)
    return ["history.json", "index.html"]
