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

from alchemy_pipeline.domain.tushare_api import TushareClient, VendorDataError

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
_NUMERIC = [c for c in PRICE_COLUMNS if c not in ("ts_code", "trade_date")]
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
    """Unadjusted bars with that day's adjustment factor, for the given funds on the given trading days.

    Each API is first asked for the last day, every fund at once: that call alone serves a daily run, and
    its size tells what the whole market costs to fetch. The other days then come in the fewest calls
    (see ``plan_queries``). The two APIs proceed side by side. Bars without a factor keep a null factor:
    dropping them would hide a vendor gap that the checks downstream must see.
    """
    if not days or not ts_codes:
        return empty_prices()
    codes, days = list(dict.fromkeys(ts_codes)), sorted(days)
    bars, factors = _fetch_side_by_side(client, codes, days)
    repeated = factors[factors.duplicated(["ts_code", "trade_date"], keep=False)]
    if not repeated.empty:
        raise VendorDataError(
            "Tushare fund_adj returned more than one factor for "
            + ", ".join(sorted({f"{r.ts_code} {r.trade_date:%Y-%m-%d}" for r in repeated.itertuples()}))
        )
    prices = bars.merge(factors, on=["ts_code", "trade_date"], how="left", validate="m:1", sort=False)
    del bars, factors  # a decade of a large universe: not held twice while it is sorted
    prices = prices[PRICE_COLUMNS].astype({c: "float64" for c in _NUMERIC}, copy=False)
    return prices.sort_values(["trade_date", "ts_code"], ignore_index=True)


def _fetch_side_by_side(client: TushareClient, codes: list[str], days: list[dt.date]) -> list[pd.DataFrame]:
    """The APIs side by side, as the vendor limits calls per API, each with ``QUERIES_IN_FLIGHT`` queries
    at once. fund_daily's first call goes alone, so that a refused token costs one call; a failure in
    one thread stops the others at their next call. Returns each API's rows for ``codes`` on ``days``."""
    wanted_codes = set(codes)
    wanted_days = pd.DatetimeIndex(days).astype("datetime64[ns]")
    failed = threading.Event()

    def keep(page: pd.DataFrame) -> pd.DataFrame:
        """A page as it arrives: its dates as datetime64, and only the rows asked for."""
        dates = pd.to_datetime(page["trade_date"].astype(str), format="%Y%m%d").astype("datetime64[ns]")
        return page.assign(trade_date=dates)[page["ts_code"].isin(wanted_codes) & dates.isin(wanted_days)]

    def last_day(api: VendorApi) -> pd.DataFrame:
        return client.query_all(api.name, api.fields, trade_date=_yyyymmdd(days[-1]))

    def fetch_query(api: VendorApi, query: dict) -> list[pd.DataFrame]:
        tables = []
        try:
            for page in client.pages(api.name, api.fields, **query):
                if failed.is_set():
                    break  # another query failed: its error is the one to raise
                tables.append(keep(page))
        except BaseException:
            failed.set()
            raise
        return tables

    def fetch(api: VendorApi, first: pd.DataFrame | None) -> pd.DataFrame:
        try:
            first = last_day(api) if first is None else first
        except BaseException:
            failed.set()
            raise
        queries = plan_queries(codes, days[:-1], len(first) or None, api.codes_per_call, client.page_limit)
        with ThreadPoolExecutor(max_workers=QUERIES_IN_FLIGHT, thread_name_prefix=api.name) as pool:
            pages = [keep(first), *itertools.chain.from_iterable(pool.map(lambda q: fetch_query(api, q), queries))]
        return pd.concat(pages, ignore_index=True)

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
