"""Tushare Pro protocol handling over any client with the SDK's ``query(api_name, fields, **params)``.

The real SDK (``tushare.pro_api``) answers an HTTP error (status >= 400) with an empty DataFrame that
has no columns, and raises ``Exception(msg)`` when the JSON ``code`` is not 0. A genuine "no rows"
answer still carries its column names, so a table without columns is always treated as a failure,
never as "no data".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import pandas as pd

# Tushare caps fund_adj (and, by one version of its docs, fund_daily) at 2,000 rows per call.
PAGE_LIMIT = 2000


class VendorError(RuntimeError):
    """The price vendor failed to answer a call correctly."""


class VendorHTTPError(VendorError):
    """The vendor's HTTP endpoint answered with an error status (the SDK hides it as an empty table)."""


class VendorAPIError(VendorError):
    """The vendor answered with a non-zero error code."""


class VendorDataError(VendorError):
    """The vendor's answer is not the table that was asked for."""


class TushareApi(Protocol):
    def query(self, api_name: str, fields: str = "", **params) -> pd.DataFrame: ...


class TushareClient:
    """Paged, validated calls to a Tushare Pro API; counts the calls it makes."""

    def __init__(self, api: TushareApi, page_limit: int = PAGE_LIMIT):
        self._api = api
        self._page_limit = page_limit
        self.calls: Counter[str] = Counter()

    def _call(self, api_name: str, fields: Sequence[str], params: dict) -> pd.DataFrame:
        self.calls[api_name] += 1
        try:
            table = self._api.query(api_name, fields=",".join(fields), **params)
        except VendorError:
            raise
        except Exception as exc:  # the SDK raises bare Exception(msg) for vendor error codes
            raise VendorAPIError(f"Tushare {api_name} {_describe(params)} failed: {exc}") from exc
        if table is None or len(table.columns) == 0:
            raise VendorHTTPError(
                f"Tushare {api_name} {_describe(params)} returned no table (an HTTP error status); "
                "this is a failed call, not an empty result"
            )
        missing = [f for f in fields if f not in table.columns]
        if missing:
            raise VendorDataError(f"Tushare {api_name} {_describe(params)} lacks fields {missing}")
        return table[list(fields)]

    def query_all(self, api_name: str, fields: Sequence[str], **params) -> pd.DataFrame:
        """All rows of a query, paging with offset/limit past the per-call row cap."""
        pages = []
        offset = 0
        while True:
            page = self._call(api_name, fields, {**params, "offset": offset, "limit": self._page_limit})
            pages.append(page)
            if len(page) < self._page_limit:
                break
            offset += self._page_limit
        return pd.concat(pages, ignore_index=True) if len(pages) > 1 else pages[0]


def _describe(params: dict) -> str:
    shown = {k: v for k, v in params.items() if k not in ("offset", "limit")}
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + ")"
