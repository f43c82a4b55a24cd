"""The rule's moving averages, computed exactly: the one definition the rule, the fast path and the lab use.

Tushare quotes a close in thousandths of a yuan and an adjustment factor in millionths, so the average of ``n``
closes forward-adjusted to day d's factor, ``sum(close x factor) / (n x factor of d)``, is a ratio of integers.
It is rounded half up to thousandths in integers. In floating point (TA-Lib's SMA, or any running sum) an
average that lies exactly half-way between two thousandths, which an even ``n`` of unadjusted closes lands on
about once in ``n`` days, comes out a hair above or below it depending on the order of the additions, and the
rounding then goes either way.
"""

from __future__ import annotations

import numpy as np

PRICE_UNITS = 1_000
FACTOR_UNITS = 1_000_000


def factor_units(factors: np.ndarray) -> np.ndarray:
    """Adjustment factors in millionths (0 where a factor is missing or not positive: no average there)."""
    factors = np.asarray(factors, float)
    usable = np.isfinite(factors) & (factors > 0)
    return np.where(usable, np.rint(np.where(usable, factors, 0.0) * FACTOR_UNITS), 0).astype(np.int64)


def bar_sums(closes: np.ndarray, factors: np.ndarray, n: int) -> np.ndarray:
    """At each bar, the sum of ``close x factor`` (in thousandths x millionths) over the ``n`` bars ending on it;
    0 before the ``n``-th bar."""
    closes = np.asarray(closes, float)
    products = np.where(np.isfinite(closes), np.rint(np.nan_to_num(closes) * PRICE_UNITS), 0).astype(np.int64)
    products *= factor_units(factors)
    sums = np.zeros(len(products), dtype=np.int64)
    if len(products) >= n:
        sums[n - 1 :] = np.lib.stride_tricks.sliding_window_view(products, n).sum(axis=1)
    return sums


def rounded_averages(sums: np.ndarray, n: int, day_factors: np.ndarray) -> np.ndarray:
    """``sums`` (``bar_sums``) over ``n`` x the day's factor, rounded half up to thousandths, as prices; NaN where
    the day's factor is not usable. ``day_factors`` broadcasts against ``sums``."""
    denominator = n * factor_units(day_factors)
    safe = np.where(denominator > 0, denominator, 1)
    thousandths = (2 * np.asarray(sums, np.int64) + safe) // (2 * safe)
    return np.where(denominator > 0, thousandths / PRICE_UNITS, np.nan)
