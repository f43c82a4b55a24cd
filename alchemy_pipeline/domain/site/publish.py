"""Publishing reports to a site store: one key layout wherever the store lives.

Layout: ``reports/YYYY-MM-DD.json|.txt|.html``; ``index.html``, ``history.html``, ``history.json`` and
``rules.html``; ``funds/<ts_code>.json|.html`` (and ``funds/PORTFOLIO.*``); ``static/`` (the pages' script
and charting library); the backtest's ``backtests/YYYY-MM-DD.json`` and ``backtests/trades/<ts_code>.json``;
the newest day's ``backtests/tearsheets/<ts_code>.json`` and ``backtests/csv/<ts_code>.equity.csv|.trades.csv``;
the parameter lab's sweeps, ``lab/<run id>/`` and ``lab/latest/``.
A day's report JSON is written last, and the history lists only days whose JSON exists, so a day appears
on the site only once all three of its files are there; the fund pages, the history and the front page
are refreshed after every day's files are written.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from alchemy_pipeline.domain.backtest import PORTFOLIO
from alchemy_pipeline.domain.backtest.ledger import bars as ledger_bars
from alchemy_pipeline.domain.backtest.tearsheet import closed_trades, tearsheet
from alchemy_pipeline.domain.lab import Sweep, headline, sweep_document
from alchemy_pipeline.domain.signals.rule import RuleParams
from alchemy_pipeline.domain.site.downloads import equity_csv, equity_csv_key, trades_csv, trades_csv_key
from alchemy_pipeline.domain.site.feed import FEED_KEY, render_feed
from alchemy_pipeline.domain.site.fund_pages import (
    RunSeries,
    document_bytes,
    fund_data_key,
    fund_document,
    fund_new_days,
    fund_page_key,
    merge_series,
    render_fund_page,
    series_rows,
)
from alchemy_pipeline.domain.site.lab_page import portfolio_rows, render_lab_page
from alchemy_pipeline.domain.site.pages import (
    history_entry,
    history_json,
    render_day_page,
    render_files,
    render_history,
    render_index,
    render_rules,
    static_files,
)
from alchemy_pipeline.domain.site.report import (
    backtest_summaries,
    build_reports,
    day_batches,
    distinct_days,
    list_json,
)
from alchemy_pipeline.infrastructure.frames import slices_by_code
from alchemy_pipeline.infrastructure.memory import release_free_memory
from alchemy_pipeline.infrastructure.storage import IN_FLIGHT, BlobStore, in_parallel, one_by_one
from alchemy_pipeline.infrastructure.workers import map_in_processes, worth_workers

CONTENT_TYPES = {
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".xml": "application/atom+xml; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}
# The front page, the history and the fund pages change every day; a dated report only if it is re-run.
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


# A day, its files' bytes by suffix, and its line in the history.
RenderedDay = tuple[str, dict[str, bytes], dict]


def _write_day(store: BlobStore, rendered: RenderedDay) -> list[str]:
    day, files, _ = rendered
    keys = []
    for suffix, data in files.items():  # the JSON last: it marks the day as published
        _put(store, report_key(day, suffix), data, REPORT_CACHE)
        keys.append(report_key(day, suffix))
    return keys


def render_batch(
    batch: tuple[pd.DataFrame, pd.DataFrame | None, dict[str, None]],
    params: RuleParams,
    notice: str | None,
    days: list[str],
) -> list[RenderedDay]:
    """The files of each day of a slice of signals, with those days' backtest summaries (from their rows of the
    report table; the slice's days unavailable, without), each page linked to the published days around it in
    ``days`` (run in a worker process)."""
    signals, backtests, unavailable = batch
    summaries = {**unavailable, **backtest_summaries(backtests)} if backtests is not None else {}
    reports = build_reports(signals, params, notice, summaries)
    return [(r["trade_date"], render_files(r, days), history_entry(r)) for r in reports]


def _rows_of_days(table: pd.DataFrame | None, batch: pd.DataFrame) -> pd.DataFrame | None:
    """The rows of ``table`` (in day order) on the days of ``batch``."""
    if table is None:
        return None
    days = table["trade_date"].to_numpy()
    first, last = batch["trade_date"].iloc[0].to_datetime64(), batch["trade_date"].iloc[-1].to_datetime64()
    return table.iloc[days.searchsorted(first, "left") : days.searchsorted(last, "right")]


# Consecutive days of a run: their signals, their rows of the backtest's report table and their prices' adjustment
# factors (each None when there are none), and those of the days whose backtest is unavailable.
Stretch = tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None, Iterable[str]]


def publish_stretches(
    store: BlobStore,
    run_days: list[str],
    stretches: Iterable[Stretch],
    params: RuleParams,
    notice: str | None = None,
    subscribe_url: str | None = None,
    ledger: Callable[[], pd.DataFrame | None] = lambda: None,
) -> list[str]:
    """Publishes a run's days (``run_days``, which the pages link to), given as consecutive stretches that are
    taken one by one as the rendering needs their days, so that a decade of a large universe is never held at
    once: each day's report with its backtest summary (or saying the backtest is unavailable), rendered in worker
    processes when the run is long; then, once every day's files are durable, the pages that link to them: each
    fund's page with the run's days added (of each stretch only what they take is kept, ``series_rows``), the
    tearsheets and downloads when ``ledger`` gives the equity ledger of every published day (read once the
    workers have stopped), the pages of the published days on either side, the history and the front page."""
    days = sorted(set(published_days(store)) | set(run_days))
    series: list[pd.DataFrame] = []

    def batches() -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None, dict[str, None]]]:
        for stretch in stretches:
            signals, backtests, factors, unavailable = stretch
            series.append(series_rows(signals, factors, backtests))
            missing = dict.fromkeys(unavailable)
            for batch in day_batches(signals):
                # Copies, not views: a view in flight would keep its whole stretch alive beside the next one.
                summaries = _rows_of_days(backtests, batch)
                yield batch.copy(), None if summaries is None else summaries.copy(), missing
            del stretch, signals, backtests, factors  # before the next stretch is read

    first = next(items := batches(), None)
    if first is None:
        return []
    items = itertools.chain([first], items)
    # Starting workers repays itself on a long run: its rows, as many a day as its first days have.
    use_workers = worth_workers(len(first[0]) // first[0]["trade_date"].nunique() * len(run_days))
    if use_workers:
        rendered_batches = map_in_processes(render_batch, items, params, notice, days)
    else:
        rendered_batches = (render_batch(item, params, notice, days) for item in items)
    entries: list[dict] = []
    written = []
    with store.batch():
        rendered = itertools.chain.from_iterable(rendered_batches)
        # In batches: the days are rendered lazily, and only a batch of them need exist at once.
        while batch := list(itertools.islice(rendered, IN_FLIGHT * 4)):
            written += [key for keys in in_parallel(lambda day: _write_day(store, day), batch) for key in keys]
            entries += [entry for _, _, entry in batch]
    # Once every day's files are durable: the pages that link to them.
    written += _relink_neighbours(store, run_days, days)
    written += publish_fund_pages(store, RunSeries(series), params.described(), ledger, days[-1], use_workers)
    return written + refresh_site(store, subscribe_url, entries, days)


def publish_signals(
    store: BlobStore,
    signals: pd.DataFrame,
    params: RuleParams,
    notice: str | None = None,
    subscribe_url: str | None = None,
    backtests: pd.DataFrame | None = None,
    factors: pd.DataFrame | None = None,
    unavailable: Iterable[str] = (),
    ledger: pd.DataFrame | None = None,
) -> list[str]:
    """Publishes the report of every day in ``signals``, with its backtest summary from the report table
    ``backtests`` (on the days ``unavailable``, a report that says the backtest is unavailable); then each
    fund's page with these days added (their adjustment factors from ``factors``, the prices) and, given the
    equity ``ledger`` of every published day, the tearsheets and downloads; the pages of the published days
    on either side, the history and the front page (``publish_stretches``, the days as one stretch)."""
    stretch = (signals, backtests, factors, unavailable)
    run_days = distinct_days(signals["trade_date"])
    return publish_stretches(store, run_days, [stretch], params, notice, subscribe_url, lambda: ledger)


def _relink_neighbours(store: BlobStore, run_days: list[str], days: list[str]) -> list[str]:
    """Re-renders the pages of the published days just before and after the run's: their links to the
    previous and next day may now lead into the run."""
    first, last = days.index(run_days[0]), days.index(run_days[-1])
    outside = [d for d in (days[first - 1] if first else None, days[last + 1] if last + 1 < len(days) else None) if d]
    for day in outside:
        page = render_day_page(json.loads(store.get(report_key(day, ".json"))), days)
        _put(store, report_key(day, ".html"), page.encode("utf-8"), REPORT_CACHE)
    return [report_key(day, ".html") for day in outside]


def publish_fund_pages(
    store: BlobStore,
    new_days: RunSeries,
    rule: dict,
    ledger: Callable[[], pd.DataFrame | None],
    newest: str,
    in_processes: bool = False,
) -> list[str]:
    """Adds each fund's new days (``RunSeries``) to its stored data and re-renders its page, with the
    backtest's figures of its last day, its trades as the backtest published them and, when ``ledger`` gives
    the equity ledger, its tearsheet (``publish_tearsheets``); rendered in worker processes when
    ``in_processes`` (a decade of 1,500 funds' pages is half a minute of one core)."""

    @functools.cache
    def backtest_as_of(day: str) -> dict | None:
        # The pages' last day, the newest published: a run of past days leaves it as it was.
        stored = store.get(backtest_key(day))
        return json.loads(stored) if stored is not None else None

    @functools.cache
    def published_trades(code: str) -> list[dict]:
        stored = store.get(trades_key(code))
        return json.loads(stored) if stored is not None else []

    written, sheets = _ledger_tearsheets(store, ledger, backtest_as_of, published_trades)
    release_free_memory()  # the ledger's decade of equity, before the pages

    def publish(code: str, files: tuple[bytes, bytes] | None = None) -> list[str]:
        if files is None:
            name, series = fund_series(code, new_days.rows(code), store.get(fund_data_key(code)), new_days.has_equity)
            backtest = backtest_as_of(series["dates"][-1])
            files = fund_files(code, name, series, rule, backtest, published_trades(code), sheets.get(code))
        data, page = files
        _put(store, fund_data_key(code), data, SHORT_CACHE)
        _put(store, fund_page_key(code), page, SHORT_CACHE)
        return [fund_data_key(code), fund_page_key(code)]

    codes = new_days.codes()
    with store.batch():
        if not in_processes:
            return written + [key for keys in in_parallel(publish, codes) for key in keys]
        # A page ends on the run's last day or on the newest published day, but for a fund that left the
        # universe and came back: the workers get those days' backtests, and such a page is rendered here.
        ends = {new_days.last_day, newest}
        backtests = {day: _by_code(backtest_as_of(day)) for day in ends}

        def inputs(code: str) -> FundInputs:
            return (
                code,
                new_days.rows(code),
                store.get(fund_data_key(code)),
                published_trades(code),
                sheets.get(code),
                {day: by_code(code) if by_code else None for day, by_code in backtests.items()},
            )

        pages = map_in_processes(render_fund, one_by_one(inputs, codes), rule, new_days.has_equity)
        rendered = zip(codes, pages, strict=True)
        while batch := list(itertools.islice(rendered, IN_FLIGHT * 4)):
            written += [key for keys in in_parallel(lambda item: publish(*item), batch) for key in keys]
        return written


# What a worker renders a fund's page from: its code, its ``series_rows`` of the run, its stored data, its
# published trades, its tearsheet, and the backtest's figures (``_by_code``) of each day its page may end on.
FundInputs = tuple[str, pd.DataFrame, bytes | None, list[dict], dict | None, dict[str, dict | None]]


def render_fund(inputs: FundInputs, rule: dict, has_equity: bool) -> tuple[bytes, bytes] | None:
    """A fund's data and page with the run's days added (run in a worker process); None when its page ends on
    a day whose backtest it was not given."""
    code, rows, stored, trades, sheet, backtests = inputs
    name, series = fund_series(code, rows, stored, has_equity)
    if series["dates"][-1] not in backtests:
        return None
    return fund_files(code, name, series, rule, backtests[series["dates"][-1]], trades, sheet)


def fund_series(code: str, rows: pd.DataFrame, stored: bytes | None, has_equity: bool) -> tuple[str, dict]:
    """A fund's name and its series: its stored data's (``stored``, if any) with its ``series_rows`` of the run
    added."""
    new = fund_new_days(code, rows, has_equity)
    return new["name"], merge_series(json.loads(stored)["series"] if stored else None, new["series"])


def fund_files(
    code: str, name: str, series: dict, rule: dict, backtest: dict | None, trades: list[dict], sheet: dict | None
) -> tuple[bytes, bytes]:
    """A fund's data (``funds/<ts_code>.json``) and page, with the figures of ``backtest`` (the published
    document of the series' last day) and ``sheet``, its tearsheet, when they are of that day."""
    as_of = series["dates"][-1]
    document = fund_document(
        code, name, series, rule, backtest, trades, sheet if sheet is not None and sheet["as_of"] == as_of else None
    )
    data = document_bytes(document)
    return data, render_fund_page(document, data).encode("utf-8")


def _by_code(backtest: dict | None) -> Callable[[str], dict] | None:
    """A day's backtest document cut to one fund's figures (or the portfolio's), as ``fund_document`` reads it."""
    if backtest is None:
        return None
    funds = {f["ts_code"]: f for f in backtest["funds"]}
    terms = {key: value for key, value in backtest.items() if key != "funds"}
    return lambda code: {**terms, "funds": [funds[code]] if code in funds else []}


def _ledger_tearsheets(
    store: BlobStore,
    ledger: Callable[[], pd.DataFrame | None],
    backtest_as_of: Callable[[str], dict | None],
    published_trades: Callable[[str], list[dict]],
) -> tuple[list[str], dict[str, dict]]:
    """The tearsheets as of the ledger's newest day, if its backtest document is published; the ledger is read
    here and dropped on return."""
    read = ledger()
    equity = ledger_bars(read) if read is not None else None
    del read
    if equity is not None and len(equity) and (newest := backtest_as_of(equity["day"].max())) is not None:
        return publish_tearsheets(store, equity, newest, published_trades)
    return [], {}


def tearsheet_key(code: str) -> str:
    return f"backtests/tearsheets/{code}.json"


def publish_tearsheets(
    store: BlobStore,
    equity: pd.DataFrame,
    backtest: dict,
    published_trades: Callable[[str], list[dict]],
) -> tuple[list[str], dict[str, dict]]:
    """Each fund's and the portfolio's tearsheet as of ``backtest``'s day (its published document) and their
    equity and trades as CSV, from the ``equity`` at each bar up to that day (the ledger's, by fund and day)
    and each fund's published trades. The portfolio's trade statistics pool its funds' trades; its trades file
    lists them all."""
    cash, as_of = backtest["settings"]["cash"], backtest["as_of"]
    funds = [(f["ts_code"], f["name"]) for f in backtest["funds"]]
    # Each fund's rows as a view: a decade of 1,500 funds' equity is held once, not copied by a group-by.
    rows = {code: equity.iloc[at] for code, at in slices_by_code(equity["ts_code"]).items()}
    empty = equity.iloc[0:0]
    trades = in_parallel(lambda fund: [(*fund, t) for t in published_trades(fund[0])], funds)
    inputs = [(code, rows.get(code, empty), listed) for (code, _), listed in zip(funds, trades, strict=True)]
    # One after another in the publishing process: worker processes beside the ledger's decade of equity would pass
    # 2 GB, and threads only contend for the interpreter (a third slower, RESULTS.md).
    made = [fund_tearsheet(item, as_of, cash) for item in inputs]
    pooled = [trade for _, closed, _ in made for trade in closed]
    portfolio_equity = rows.get(PORTFOLIO, empty)
    portfolio = tearsheet(PORTFOLIO, as_of, portfolio_equity, cash * len(funds), pooled)
    files = {key: data for *_, made_files in made for key, data in made_files.items()}
    every_trade = [trade for listed in trades for trade in listed]
    files.update(_tearsheet_files(PORTFOLIO, portfolio, portfolio_equity, every_trade))
    with store.batch():
        in_parallel(lambda item: _put(store, item[0], item[1], SHORT_CACHE), list(files.items()))
    sheets = {code: sheet for (code, _), (sheet, *_) in zip(funds, made, strict=True)}
    return list(files), {**sheets, PORTFOLIO: portfolio}


def fund_tearsheet(
    inputs: tuple[str, pd.DataFrame, list[tuple[str, str, dict]]], as_of: str, cash: float
) -> tuple[dict, list, dict[str, bytes]]:
    """A fund's tearsheet, its closed trades as the tearsheet counts them and its files, from its equity at each
    bar and its published trades (each with its code and name, as the CSV lists them)."""
    code, bars, trades = inputs
    # Its days as Python strings once: the tearsheet, its trades and its CSV each read them.
    bars = bars.assign(day=bars["day"].to_numpy(object))
    closed = closed_trades([t for _, _, t in trades], bars["day"].tolist())
    sheet = tearsheet(code, as_of, bars, cash, closed)
    return sheet, closed, _tearsheet_files(code, sheet, bars, trades)


def _tearsheet_files(code: str, sheet: dict, equity: pd.DataFrame, trades: list) -> dict[str, bytes]:
    return {
        tearsheet_key(code): document_bytes(sheet),
        equity_csv_key(code): equity_csv(equity),
        trades_csv_key(code): trades_csv(trades),
    }


def backtest_key(day: str) -> str:
    return f"backtests/{day}.json"


def trades_key(ts_code: str) -> str:
    return f"backtests/trades/{ts_code}.json"


def publish_backtests(
    store: BlobStore, documents: Iterable[tuple[str, bytes]], trades: dict[str, list[dict]] | None = None
) -> list[str]:
    """Publishes each day's backtest document (its day and bytes, ``backtest.document_files``) and, when
    given, every fund's trades (by code)."""
    files = ((backtest_key(day), data, REPORT_CACHE) for day, data in documents)
    if trades is not None:
        files = itertools.chain(files, ((trades_key(c), list_json(t), SHORT_CACHE) for c, t in trades.items()))
    written = []
    with store.batch():
        while batch := list(itertools.islice(files, IN_FLIGHT * 4)):
            in_parallel(lambda file: _put(store, *file), batch)
            written += [key for key, _, _ in batch]
    return written


def _history(store: BlobStore, days: list[str], new_entries: list[dict]) -> list[dict]:
    """Every published day's line in the history: the stored lines, the run's, and for a day without one
    (published before the history kept them) its line from its report."""
    stored = store.get("history.json")
    entries = {e["trade_date"]: e for e in (json.loads(stored).get("crosses", []) if stored else [])}
    entries.update((e["trade_date"], e) for e in new_entries)
    missing = [d for d in days if d not in entries]
    reports = in_parallel(lambda day: json.loads(store.get(report_key(day, ".json"))), missing)
    entries.update((r["trade_date"], history_entry(r)) for r in reports)
    return [entries[d] for d in days]


def refresh_site(
    store: BlobStore, subscribe_url: str | None = None, new_entries: Iterable[dict] = (), days: list[str] | None = None
) -> list[str]:
    """The pages about every day (``days``, the published days, when the caller knows them): the history
    (with ``new_entries``, the run's days), the feed, the rules, the static files and, last, the front page."""
    days = published_days(store) if days is None else days
    if not days:
        return []
    latest = json.loads(store.get(report_key(days[-1], ".json")))
    entries = _history(store, days, list(new_entries))
    files = [(f"static/{name}", data) for name, data in static_files().items()]
    files += [
        ("history.json", history_json(entries)),
        ("history.html", render_history(entries).encode("utf-8")),
        (FEED_KEY, render_feed(entries)),
        ("rules.html", _rules_page(store, latest["strategy"], days[-1])),
    ]
    with store.batch():
        for key, data in files:
            _put(store, key, data, SHORT_CACHE)
    _put(store, "index.html", render_index(latest, days, subscribe_url).encode("utf-8"), SHORT_CACHE)
    return [key for key, _ in files] + ["index.html"]


def _rules_page(store: BlobStore, rule: dict, newest: str) -> bytes:
    backtest, lab = store.get(backtest_key(newest)), store.get(LAB_HEADLINE)
    return render_rules(rule, *(json.loads(d) if d else None for d in (backtest, lab))).encode("utf-8")


LAB_LATEST = "lab/latest"
LAB_HEADLINE = f"{LAB_LATEST}/headline.json"


def publish_sweep(store: BlobStore, sweep: Sweep, run: str) -> list[str]:
    """A sweep under ``lab/<run>/`` and, as the newest, ``lab/latest/``: the grid as Parquet and as
    ``sweep.json``, its headline (``headline.json``) and its page; then the rules page, which links it."""
    document = sweep_document(sweep)
    files = {
        "sweep.parquet": sweep.table.to_parquet(index=False),
        "sweep.json": json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        "headline.json": json.dumps(headline(sweep), ensure_ascii=False, indent=1).encode("utf-8"),
        # The page last: once it is there, so is what it links.
        "index.html": render_lab_page(document, portfolio_rows(sweep.table)).encode("utf-8"),
    }
    written = []
    with store.batch():
        for name, data in static_files().items():
            _put(store, f"static/{name}", data, SHORT_CACHE)
    for folder in (f"lab/{run}", LAB_LATEST):
        for name, data in files.items():
            _put(store, f"{folder}/{name}", data, SHORT_CACHE)
            written.append(f"{folder}/{name}")
    if days := published_days(store):
        latest = json.loads(store.get(report_key(days[-1], ".json")))
        _put(store, "rules.html", _rules_page(store, latest["strategy"], days[-1]), SHORT_CACHE)
        written.append("rules.html")
    return written
