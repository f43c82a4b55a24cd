"""Fetching a universe's daily bars and adjustment factors in bulk, never per fund per day."""

from __future__ import annotations

import datetime as dt
import math
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from alchemy_pipeline.domain.tushare_api import PAGE_LIMIT, TushareClient, VendorDataError

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


def _yyyymmdd(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def calls_by_day(n_days: int) -> int:
    return 2 * n_days


def calls_by_fund(n_funds: int, n_days: int) -> int:
    return 2 * n_funds * max(1, math.ceil(n_days / PAGE_LIMIT))


def fetch_prices(client: TushareClient, ts_codes: Sequence[str], days: Sequence[dt.date]) -> pd.DataFrame:
    """Unadjusted bars with that day's adjustment factor, for the given funds on the given trading days.

    One call per API per day (all funds at once) or one per API per fund (the whole range at once),
    whichever needs fewer calls; the two APIs side by side. Bars without a factor keep a null factor:
    dropping them would hide a vendor gap that the checks downstream must see.
    """
    if not days or not ts_codes:
        return empty_prices()
    days = sorted(days)
    if calls_by_day(len(days)) <= calls_by_fund(len(ts_codes), len(days)):
        queries = [{"trade_date": _yyyymmdd(d)} for d in days]
    else:
        span = {"start_date": _yyyymmdd(days[0]), "end_date": _yyyymmdd(days[-1])}
        queries = [{"ts_code": code, **span} for code in ts_codes]
    bars, factors = _fetch_side_by_side(client, {"fund_daily": BAR_FIELDS, "fund_adj": ADJ_FIELDS}, queries)
    wanted_codes = set(ts_codes)
    wanted_days = pd.DatetimeIndex(days).astype("datetime64[ns]")
    bar_table = _normalise(bars, wanted_codes, wanted_days)
    factor_table = _normalise(factors, wanted_codes, wanted_days)
    repeated = factor_table[factor_table.duplicated(["ts_code", "trade_date"], keep=False)]
    if not repeated.empty:
        raise VendorDataError(
            "Tushare fund_adj returned more than one factor for "
            + ", ".join(sorted({f"{r.ts_code} {r.trade_date:%Y-%m-%d}" for r in repeated.itertuples()}))
        )
    prices = bar_table.merge(factor_table, on=["ts_code", "trade_date"], how="left", validate="m:1")
    prices = prices[PRICE_COLUMNS].astype({c: "float64" for c in _NUMERIC})
    return prices.sort_values(["trade_date", "ts_code"], ignore_index=True)


def _fetch_side_by_side(client: TushareClient, apis: dict[str, list[str]], queries: list[dict]) -> list[pd.DataFrame]:
    """The same queries to each API, one thread per API: the vendor limits calls per API, so the APIs
    proceed side by side, each at its own pace. The first call goes alone, so that a refused token costs
    one call; a failure in one thread stops the others at their next call. Returns each API's rows."""
    names = list(apis)
    first = client.query_all(names[0], apis[names[0]], **queries[0])
    failed = threading.Event()

    def fetch(name: str) -> pd.DataFrame | None:
        tables = [_compact(first)] if name == names[0] else []
        for query in queries[len(tables) :]:
            if failed.is_set():
                return None  # another API failed: its error is the one to raise
            try:
                tables.append(_compact(client.query_all(name, apis[name], **query)))
            except BaseException:
                failed.set()
                raise
        return pd.concat(tables, ignore_index=True)

    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="tushare") as pool:
        futures = [pool.submit(fetch, name) for name in names]
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise errors[0]
    return [future.result() for future in futures]


def _compact(page: pd.DataFrame) -> pd.DataFrame:
    """A page as it arrives: dates as datetime64 and one shared string per fund code, so that a decade of
    a large universe's pages fits in memory."""
    dates = pd.to_datetime(page["trade_date"].astype(str), format="%Y%m%d").astype("datetime64[ns]")
    return page.assign(trade_date=dates, ts_code=page["ts_code"].map(sys.intern))


def _normalise(table: pd.DataFrame, codes: set[str], days: pd.DatetimeIndex) -> pd.DataFrame:
    keep = table["ts_code"].isin(codes) & table["trade_date"].isin(days)
    return table[keep]


def empty_prices() -> pd.DataFrame:
    table = pd.DataFrame({c: pd.Series(dtype="float64") for c in PRICE_COLUMNS})
    return table.astype({"ts_code": "object", "trade_date": "datetime64[ns]"})
