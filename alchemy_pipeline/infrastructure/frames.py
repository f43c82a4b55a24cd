"""Keeping large tables of many days lean: day order, a fund's rows as one slice, and text as shared Python
strings."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd


def by_trade_date(table: pd.DataFrame) -> pd.DataFrame:
    """The table in day order (rows of a day keep their order); as it is when it already is."""
    if table["trade_date"].is_monotonic_increasing:
        return table
    return table.sort_values("trade_date", kind="stable", ignore_index=True)


def slices_by_code(codes: pd.Series) -> dict[str, slice]:
    """The rows of each code in a column where each code's rows are together (a table by fund and day): slices
    of the table are views, where a group-by would copy every row. Raises if a code's rows are apart."""
    values = codes.to_numpy(object)
    bounds = np.flatnonzero(np.r_[True, values[1:] != values[:-1], True]).tolist() if len(values) else []
    found = {values[a]: slice(a, b) for a, b in itertools.pairwise(bounds)}
    if len(found) != len(bounds) - 1:
        raise ValueError("the rows of a code are not together: the table is not ordered by code")
    return found


def object_column(values: np.ndarray) -> pd.Series:
    """Python strings kept as they are, each row a reference to a shared object: pandas would otherwise
    copy them into an Arrow-backed column, and back into a new object per row wherever they are read."""
    return pd.Series(values, dtype=object, copy=False)


def shared_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns (Arrow-backed strings, or categories) as object columns with one Python string per
    distinct value: a fund's code repeated over a decade of days is millions of rows."""
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes, uniques = column.cat.codes.to_numpy(), column.cat.categories
        elif isinstance(column.dtype, pd.StringDtype):
            codes, uniques = pd.factorize(column)
        else:
            continue
        values = np.append(np.asarray(uniques, dtype=object), None)  # code -1, a null, picks None
        frame[name] = object_column(values[codes]).set_axis(frame.index)
    return frame
