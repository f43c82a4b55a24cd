"""The equity ledger: every fund's and the portfolio's equity after each of its bars, in full precision, which
the tearsheets are computed from (``tearsheet``).

The backtest's state of a day holds only that day's equity; the ledger keeps them all, one Parquet object a
year (``backtest_equity/YYYY.parquet`` in the pipeline's data store), so that a day's backtest rewrites one
year's object whatever the years stored, and a tearsheet reads a decade in a few objects. Each stored day has
the portfolio's row, with ``bar`` False on a day without a bar (held back): the ledger knows which days it
holds.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest.engine import PORTFOLIO
from alchemy_pipeline.infrastructure.storage import BlobStore, in_parallel

PREFIX = "backtest_equity/"
COLUMNS = ["ts_code", "day", "bar", "strategy", "buy_and_hold"]


def year_key(year: str) -> str:
    return f"{PREFIX}{year}.parquet"


def ledger_rows(states: pd.DataFrame) -> pd.DataFrame:
    """Of a state table, the rows of a bar (a row whose last bar is its day), with the equity of both sleeves
    after it, and the portfolio's row of every day."""
    bar = states["last_day"].to_numpy("datetime64[D]") == states["trade_date"].to_numpy("datetime64[D]")
    kept = bar | (states["ts_code"] == PORTFOLIO).to_numpy()
    rows = states[kept]
    return pd.DataFrame(
        {
            "ts_code": rows["ts_code"].to_numpy(object),
            "day": np.datetime_as_string(rows["trade_date"].to_numpy("datetime64[D]"), unit="D").astype(object),
            "bar": bar[kept],
            "strategy": rows["strategy_previous"].to_numpy(float),
            "buy_and_hold": rows["buy_and_hold_previous"].to_numpy(float),
        },
        columns=COLUMNS,
    )


def _read_year(store: BlobStore, year: str, code: str | None = None) -> pd.DataFrame | None:
    data = store.get(year_key(year))
    if data is None:
        return None
    return pd.read_parquet(io.BytesIO(data), filters=[("ts_code", "==", code)] if code else None)


def write(store: BlobStore, states: Iterable[pd.DataFrame]) -> None:
    """Stores the ledger's rows of every day of the state tables ``states``, replacing those days' rows: each
    year touched is read, changed and written whole."""
    rows = pd.concat([ledger_rows(frame) for frame in states], ignore_index=True)
    if rows.empty:
        return
    years = rows["day"].str[:4]

    def write_year(year: str) -> None:
        new = rows[years == year]
        stored = _read_year(store, year)
        if stored is not None:
            new = pd.concat([stored[~stored["day"].isin(set(new["day"]))], new], ignore_index=True)
        new = new.sort_values(["ts_code", "day"], kind="stable", ignore_index=True)
        store.put(year_key(year), new.to_parquet(index=False))

    in_parallel(write_year, sorted(years.unique()))


def read(store: BlobStore, code: str | None = None) -> pd.DataFrame:
    """Every stored year of the ledger (of the fund ``code`` only, when given), by fund and day."""
    years = sorted(k.removeprefix(PREFIX).removesuffix(".parquet") for k in store.keys(PREFIX))
    frames = [f for f in in_parallel(lambda year: _read_year(store, year, code), years) if f is not None]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    ledger = pd.concat(frames, ignore_index=True)
    return ledger.sort_values(["ts_code", "day"], kind="stable", ignore_index=True)


def days_held(ledger: pd.DataFrame) -> set[str]:
    """The days the ledger holds (each has the portfolio's row)."""
    return set(ledger["day"][ledger["ts_code"] == PORTFOLIO])


def bars(ledger: pd.DataFrame) -> pd.DataFrame:
    """The rows of a bar: each fund's equity (and the portfolio's) at its bars."""
    return ledger[ledger["bar"].astype(bool)]
