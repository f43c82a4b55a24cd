"""The rule's averages (``domain/signals/averages.py``): exact, rounded half up to thousandths, whatever order
floating point would have added them in."""

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from alchemy_pipeline.domain.signals.averages import bar_sums, rounded_averages


def averages(closes, factors, n, day_factor):
    return rounded_averages(bar_sums(np.array(closes), np.array(factors), n), n, day_factor)


def test_an_average_half_way_between_two_thousandths_rounds_up():
    # (1.000 + 1.007) / 2 = 1.0035 exactly; in floating point a hair under it, which rounds down.
    assert round((1.000 + 1.007) / 2, 3) == np.round(talib.SMA(np.array([1.000, 1.007]), 2)[-1], 3) == 1.003
    assert averages([1.000, 1.007], [1.0, 1.0], 2, 1.0).tolist() == [0.0, 1.004]
    # Forward-adjusted: (2.000 x 1.5 + 2.001 x 1.5) / (2 x 1.5) = 2.0005, up to 2.001.
    assert averages([2.0, 2.001], [1.5, 1.5], 2, 1.5)[-1] == 2.001
    # A factor that is not usable gives no average.
    assert np.isnan(averages([2.0, 2.001], [1.0, 1.0], 2, np.nan)[-1])


prices = st.integers(1, 200_000).map(lambda units: units / 1000)
factors = st.integers(1, 20_000_000).map(lambda units: units / 1_000_000)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 30).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.tuples(prices, factors), min_size=n,
                                                                          max_size=n + 20))))  # fmt: skip
def test_the_averages_are_the_decimal_definitions_and_within_rounding_of_talib(case):
    n, bars = case
    closes, factor = np.array([c for c, _ in bars]), np.array([f for _, f in bars])
    mine = averages(closes, factor, n, factor[-1])
    day = Decimal(str(float(factor[-1])))
    products = [Decimal(str(c)) * Decimal(str(f)) for c, f in bars]
    for j in range(n - 1, len(bars)):
        exact = sum(products[j - n + 1 : j + 1]) / (n * day)
        assert mine[j] == float(exact.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)), j
    floating = talib.SMA(closes * factor / factor[-1], n)
    assert np.all(np.abs(mine[n - 1 :] - floating[n - 1 :]) <= 0.0005 + 1e-9 * np.abs(floating[n - 1 :]))
