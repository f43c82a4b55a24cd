"""Fetching a universe's daily bars and adjustment factors in bulk, never per fund per day."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from alchemy_pipeline.domain.market.tushare_api import TushareClient, VendorDataError
from alchemy_pipeline.infrastructure.frames import object_column

BAR_FIELDS = [
    "ts_code",
    "trade_date",
    "open",
    "high",
    "low",
    "close",
    "pre_close",
    "change",
    "pct_chg",
    "vol",
    "amount",
]
ADJ_FIELDS = ["ts_code", "trade_date", "adj_factor"]
PRICE_COLUMNS = [*BAR_FIELDS, "adj_factor"]
# fund_adj's doc allows several codes in one call but states no maximum: a batch this size keeps the
# request small and wastes at most one part-filled page per batch.
ADJ_CODES_PER_CALL = 100
# Queries of one API in flight at once: each call mostly waits on the network and on the vendor, so a
# few in flight use the whole minute's budget in a fraction of the minute.
QUERIES_IN_FLIGHT = 4


@dataclass(frozen=True)
class VendorApi:
    name: str
    fields: list[str]
    codes_per_call: int  # how many fund codes one call may name


FUND_DAILY = VendorApi("fund_daily", BAR_FIELDS, codes_per_call=1)
FUND_ADJ = VendorApi("fund_adj", ADJ_FIELDS, codes_per_call=ADJ_CODES_PER_CALL)


def _yyyymmdd(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def plan_queries(
    codes: Sequence[str], days: Sequence[dt.date], market_rows: int | None, codes_per_call: int, page_limit: int
) -> list[dict]:
    """The queries that fetch every fund's rows on the sorted ``days`` in the fewest calls, of three ways:

    - per day, the whole market at once;
    - per batch of ``codes_per_call`` funds, over the whole range;
    - the whole market over the whole range, paged (only when ``market_rows``, the market's rows on one
      day, is known), split into up to ``QUERIES_IN_FLIGHT`` consecutive ranges fetched side by side.

    Every query is paged at ``page_limit`` rows. A range is costed at one row per fund and weekday, which
    is at least its trading days.
    """
    if not days:
        return []

    def pages(rows: int) -> int:
        return max(1, math.ceil(rows / page_limit))

    def span(part: Sequence[dt.date]) -> dict:
        return {"start_date": _yyyymmdd(part[0]), "end_date": _yyyymmdd(part[-1])}

    def weekdays(part: Sequence[dt.date]) -> int:
        return int(np.busday_count(part[0], part[-1])) + 1

    batches = [codes[i : i + codes_per_call] for i in range(0, len(codes), codes_per_call)]
    plans = [
        (len(days) * pages(market_rows or 0), [{"trade_date": _yyyymmdd(d)} for d in days]),
        (
            sum(pages(len(batch) * weekdays(days)) for batch in batches),
            [{"ts_code": ",".join(batch), **span(days)} for batch in batches],
        ),
    ]
    if market_rows:
        parts = min(QUERIES_IN_FLIGHT, pages(market_rows * weekdays(days)))  # never a range under a page
        size = math.ceil(len(days) / parts)
        ranges = [days[i : i + size] for i in range(0, len(days), size)]
        plans.append((sum(pages(market_rows * weekdays(r)) for r in ranges), [span(r) for r in ranges]))
    return min(plans, key=lambda plan: plan[0])[1]


def fetch_prices(client: TushareClient, ts_codes: Sequence[str], days: Sequence[dt.date]) -> pd.DataFrame:
    """Unadjusted bars with that day's adjustment factor, for the given funds on the given trading days,
    ordered by day, then fund code.

    Each API is first asked for the last day, every fund at once: that call alone serves a daily run, and
    its size tells what the whole market costs to fetch. The other days then come in the fewest calls
    (see ``plan_queries``). The two APIs proceed side by side. Bars without a factor keep a null factor:
    dropping them would hide a vendor gap that the checks downstream must see. So is a fund's second bar
    on a day kept; a second factor is refused at once, as no bar could choose between the two.
    """
    if not days or not ts_codes:
        return empty_prices()
    request = PriceRequest(ts_codes, days)
    bars, factors = _fetch_side_by_side(client, request)
    factor_order = np.argsort(factors.keys, kind="stable")
    factor_keys = factors.keys[factor_order]
    repeated = factor_keys[1:][factor_keys[1:] == factor_keys[:-1]]
    if len(repeated):
        raise VendorDataError(
            "Tushare fund_adj returned more than one factor for " + ", ".join(request.describe(np.unique(repeated)))
        )
    order = np.argsort(bars.keys, kind="stable")
    bar_keys = bars.keys[order]
    # Each bar's factor: the factor row of the same fund and day, if there is one.
    adj_factor = np.full(len(bar_keys), np.nan)
    if len(factor_keys):
        at = np.minimum(np.searchsorted(factor_keys, bar_keys), len(factor_keys) - 1)
        found = factor_keys[at] == bar_keys
        adj_factor[found] = factors.values[factor_order[at[found]], 0]
    columns = {
        "ts_code": object_column(request.codes[bar_keys % len(request.codes)]),
        "trade_date": request.dates[bar_keys // len(request.codes)],
    }
    for i, name in enumerate(BAR_FIELDS[2:]):
        columns[name] = bars.values[order, i]
    columns["adj_factor"] = adj_factor
    return pd.DataFrame(columns, copy=False)


@dataclass(frozen=True)
class _ApiRows:
    """One API's rows as plain arrays: a key per row (see ``PriceRequest.page_rows``) and its numbers. A decade
    of a large universe is millions of rows; as tables of Python objects, page after page, they would
    take several times the memory until the last page."""

    keys: np.ndarray
    values: np.ndarray

    @staticmethod
    def concat(parts: list[_ApiRows]) -> _ApiRows:
        return _ApiRows(np.concatenate([p.keys for p in parts]), np.concatenate([p.values for p in parts]))


class PriceRequest:
    """The funds and days asked for: each row gets the key ``day * funds + fund``, with days and funds
    numbered in order, so that rows in key order are in (day, fund code) order."""

    def __init__(self, ts_codes: Sequence[str], days: Sequence[dt.date]):
        self.universe = list(dict.fromkeys(ts_codes))  # as asked for: the order of the calls
        self.codes = np.array(sorted(self.universe), dtype=object)
        self.days = sorted(set(days))
        self.dates = np.array(self.days, dtype="datetime64[D]").astype("datetime64[ns]")
        # Arrow value sets: a page's codes and dates are looked up where they are, in the page's Arrow
        # columns, without a Python string per row.
        self._code_set = pa.array(self.codes.tolist(), type=pa.large_string())
        self._day_set = pa.array([_yyyymmdd(d) for d in self.days], type=pa.large_string())

    def describe(self, keys: np.ndarray) -> list[str]:
        funds = len(self.codes)
        return [f"{self.codes[k % funds]} {self.days[k // funds].isoformat()}" for k in keys.tolist()]

    def page_rows(self, api: VendorApi, page: pd.DataFrame) -> _ApiRows:
        """A page's rows of the wanted funds on the wanted days; a date or a number that is not one fails
        the fetch, naming the API and the value."""
        fund = _positions(_text(page["ts_code"]), self._code_set)
        texts = _text(page["trade_date"])
        day = _positions(texts, self._day_set)
        unknown = pc.unique(texts.filter(pa.array(day < 0))).to_pylist()
        malformed = [text for text in unknown if text is None or not _is_yyyymmdd(text)]
        if malformed:
            raise VendorDataError(
                f"Tushare {api.name} returned trade_date values that are not YYYYMMDD: {malformed[:5]}"
            )
        try:
            values = np.column_stack([page[name].to_numpy(dtype="float64") for name in api.fields[2:]])
        except (TypeError, ValueError) as exc:
            raise VendorDataError(f"Tushare {api.name} returned a value that is not a number: {exc}") from None
        kept = (fund >= 0) & (day >= 0)
        return _ApiRows(day[kept].astype(np.int64) * len(self.codes) + fund[kept], values[kept])


def _text(column: pd.Series) -> pa.Array:
    """A column as Arrow text (a value the vendor sent as a number, as its digits)."""
    values = pa.array(column, from_pandas=True)
    return values if values.type == pa.large_string() else pc.cast(values, pa.large_string())


def _positions(values: pa.Array, value_set: pa.Array) -> np.ndarray:
    """Each value's position in ``value_set``, or -1."""
    found = pc.index_in(values, value_set=value_set)
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _is_yyyymmdd(text: str) -> bool:
    try:
        dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return len(text) == 8


def _fetch_side_by_side(client: TushareClient, request: PriceRequest) -> list[_ApiRows]:
    """The APIs side by side, as the vendor limits calls per API, each with ``QUERIES_IN_FLIGHT`` queries
    at once. fund_daily's first call goes alone, so that a refused token costs one call; a failure in
    one thread stops the others at their next call. Returns each API's rows of the funds and days asked for."""
    codes, days = request.universe, request.days
    failed = threading.Event()

    def last_day(api: VendorApi) -> pd.DataFrame:
        return client.query_all(api.name, api.fields, trade_date=_yyyymmdd(days[-1]))

    def fetch_query(api: VendorApi, query: dict) -> list[_ApiRows]:
        parts = []
        try:
            for page in client.pages(api.name, api.fields, **query):
                if failed.is_set():
                    break  # another query failed: its error is the one to raise
                parts.append(request.page_rows(api, page))
        except BaseException:
            failed.set()
            raise
        return parts

    def fetch(api: VendorApi, first: pd.DataFrame | None) -> _ApiRows:
        try:
            first = last_day(api) if first is None else first
            parts = [request.page_rows(api, first)]
        except BaseException:
            failed.set()
            raise
        queries = plan_queries(codes, days[:-1], len(first) or None, api.codes_per_call, client.page_limit)
        with ThreadPoolExecutor(max_workers=QUERIES_IN_FLIGHT, thread_name_prefix=api.name) as pool:
            parts += itertools.chain.from_iterable(pool.map(lambda q: fetch_query(api, q), queries))
        return _ApiRows.concat(parts)

    first_bars = last_day(FUND_DAILY)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="tushare") as pool:
        futures = [pool.submit(fetch, FUND_DAILY, first_bars), pool.submit(fetch, FUND_ADJ, None)]
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise errors[0]
    return [future.result() for future in futures]


def empty_prices() -> pd.DataFrame:
    table = pd.DataFrame({c: pd.Series(dtype="float64") for c in PRICE_COLUMNS})
    return table.astype({"ts_code": "object", "trade_date": "datetime64[ns]"})
