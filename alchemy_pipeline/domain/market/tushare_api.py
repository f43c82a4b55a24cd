"""Tushare Pro protocol handling over any client with the SDK's ``query(api_name, fields, **params)``.

The real SDK (``tushare.pro_api``) answers an HTTP error (status >= 400) with an empty DataFrame that
has no columns, and raises ``Exception(msg)`` when the JSON ``code`` is not 0. A genuine "no rows"
answer still carries its column names, so a table without columns is always treated as a failure,
never as "no data".
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import pandas as pd
import requests

# Tushare caps fund_adj (and, by one version of its docs, fund_daily) at 2,000 rows per call.
PAGE_LIMIT = 2000


class VendorError(RuntimeError):
    """The price vendor failed to answer a call correctly."""


class VendorHTTPError(VendorError):
    """The vendor's HTTP endpoint answered with an error status (the SDK hides it as an empty table)."""


class VendorAPIError(VendorError):
    """The vendor answered with a non-zero error code."""


class VendorAuthError(VendorAPIError):
    """The token is wrong or expired: retrying cannot help."""


class VendorRateLimited(VendorAPIError):
    """The vendor refused the call for exceeding its call rate."""


class VendorTimeoutError(VendorError):
    """The vendor did not answer in time, or the connection failed."""


# The SDK hands over only the vendor's message, not its code: these are the messages it sends.
_AUTH_MESSAGE = re.compile(r"token|权限|积分不足", re.IGNORECASE)
_RATE_MESSAGE = re.compile(r"最多访问|频率|too many|rate limit", re.IGNORECASE)


class RateLimiter:
    """At most ``calls_per_minute`` calls per API within any 60 s, across every thread that shares it.

    A call counts from when it starts until 60 s after its answer: the vendor counts a call when it
    arrives, at some moment in between, so no 60 s of the vendor's can see more calls than the budget,
    however long a request takes to leave or to arrive. (Counting from the start alone lets a request
    that left late and one that left early fall in one vendor minute: a rate-limit refusal.)
    """

    # How often a caller looks again when the budget is taken by calls still in flight.
    POLL_SECONDS = 0.05

    def __init__(self, calls_per_minute: int, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        if calls_per_minute < 1:
            raise ValueError(f"calls_per_minute must be at least 1, got {calls_per_minute}")
        self.calls_per_minute = calls_per_minute
        self._clock, self._sleep = clock, sleep
        self._answered: dict[str, deque[float]] = {}
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, api_name: str) -> float:
        """Waits for a free slot and takes it until ``release``; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                answered = self._answered.setdefault(api_name, deque())
                while answered and answered[0] + 60.0 <= now:
                    answered.popleft()
                if self._in_flight[api_name] + len(answered) < self.calls_per_minute:
                    self._in_flight[api_name] += 1
                    return waited
                # At least a millisecond: a pause rounded down to nothing would spin.
                pause = max(answered[0] + 60.0 - now, 0.001) if answered else self.POLL_SECONDS
            self._sleep(pause)
            waited += pause

    def release(self, api_name: str) -> None:
        """The call taken by ``acquire`` has its answer (or failed): it counts for 60 s more."""
        with self._lock:
            self._in_flight[api_name] -= 1
            self._answered.setdefault(api_name, deque()).append(self._clock())

    @contextmanager
    def slot(self, api_name: str) -> Iterator[None]:
        self.acquire(api_name)
        try:
            yield
        finally:
            self.release(api_name)


@cache
def shared_rate_limiter(calls_per_minute: int) -> RateLimiter:
    """One limiter per process and rate, so every call of a run counts against the same budget."""
    return RateLimiter(calls_per_minute)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for the faults that a later attempt can clear."""

    attempts: int = 5
    base_delay: float = 2.0
    max_delay: float = 60.0

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f"a call needs at least one attempt, got {self.attempts}")

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.5, 1.5)


class VendorDataError(VendorError):
    """The vendor's answer is not the table that was asked for."""


class TushareApi(Protocol):
    def query(self, api_name: str, fields: str = "", **params) -> pd.DataFrame: ...


class TushareClient:
    """Paged, validated calls to a Tushare Pro API; counts the calls it makes. Safe to share between
    threads."""

    def __init__(
        self,
        api: TushareApi,
        page_limit: int = PAGE_LIMIT,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._api = api
        self._page_limit = page_limit
        self._limiter = limiter
        self._retry = retry or RetryPolicy(attempts=1)
        self._sleep = sleep
        self.calls: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self._counting = threading.Lock()

    def _attempt(self, api_name: str, fields: Sequence[str], params: dict) -> pd.DataFrame:
        with self._counting:
            self.calls[api_name] += 1
        where = f"Tushare {api_name} {_describe(params)}"
        try:
            with self._limiter.slot(api_name) if self._limiter is not None else nullcontext():
                table = self._api.query(api_name, fields=",".join(fields), **params)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise VendorTimeoutError(f"{where} got no answer: {type(exc).__name__}") from None
        except Exception as exc:  # the SDK raises bare Exception(msg) for vendor error codes
            message = str(exc)
            if _AUTH_MESSAGE.search(message):
                raise VendorAuthError(
                    f"{where} was refused: {message}. Check the token in TUSHARE_TOKEN (or TUSHARE_API_TOKEN)"
                ) from None
            if _RATE_MESSAGE.search(message):
                raise VendorRateLimited(f"{where} was rate-limited: {message}") from None
            raise VendorAPIError(f"{where} failed: {message}") from None
        if table is None or len(table.columns) == 0:
            raise VendorHTTPError(
                f"{where} returned no table (an HTTP error status); this is a failed call, not an empty result"
            )
        missing = [f for f in fields if f not in table.columns]
        if missing:
            raise VendorDataError(f"{where} lacks fields {missing}")
        return table if list(table.columns) == list(fields) else table[list(fields)]

    def _call(self, api_name: str, fields: Sequence[str], params: dict) -> pd.DataFrame:
        """One call, retried with backoff on faults a later attempt can clear; a refused token fails at once."""
        failures = 0
        while True:
            try:
                return self._attempt(api_name, fields, params)
            except (VendorAuthError, VendorDataError):
                raise
            except VendorError:
                failures += 1
                if failures >= self._retry.attempts:
                    raise
                with self._counting:
                    self.retries[api_name] += 1
                self._sleep(self._retry.delay(failures - 1))

    @property
    def page_limit(self) -> int:
        return self._page_limit

    def pages(self, api_name: str, fields: Sequence[str], **params) -> Iterator[pd.DataFrame]:
        """The pages of a query, each fetched when the previous one has been taken, paging with
        offset/limit past the per-call row cap; a page shorter than the cap is the last."""
        offset = 0
        while True:
            page = self._call(api_name, fields, {**params, "offset": offset, "limit": self._page_limit})
            yield page
            if len(page) < self._page_limit:
                return
            offset += self._page_limit

    def query_all(self, api_name: str, fields: Sequence[str], **params) -> pd.DataFrame:
        """All rows of a query, in one table."""
        pages = list(self.pages(api_name, fields, **params))
        return pd.concat(pages, ignore_index=True) if len(pages) > 1 else pages[0]


def _describe(params: dict) -> str:
    shown = {k: v for k, v in params.items() if k not in ("offset", "limit")}
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + ")"
