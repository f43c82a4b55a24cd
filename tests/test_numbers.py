"""Column rounding must give exactly what Python's round gives, value by value: reports have always been
rounded that way, and a published figure must not change by a last digit when a range is re-run."""

import numpy as np
import pytest

from alchemy_pipeline.domain.numbers import python_round


def _same(got: np.ndarray, want: list[float]) -> bool:
    want = np.array(want, dtype="float64")
    return np.array_equal(got, want, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("digits", [2, 3])
def test_columns_round_exactly_as_python_does(digits):
    rng = np.random.default_rng(digits)
    decimals = rng.integers(-(10**7), 10**7, 200_000)
    ties = (decimals + 0.5) / 10**digits  # decimal ties, none exact in binary but a few
    samples = [
        rng.normal(0, 50, 200_000),  # % changes
        rng.uniform(-1e6, 1e6, 200_000),
        decimals / 10**digits,  # already rounded: returned as they are
        ties,
        np.nextafter(ties, np.inf),
        np.nextafter(ties, -np.inf),
        np.array([0.125, 0.375, 2.675, 1.005, -0.0, -0.004, 0.0049999999999, 5e-324, 1e300, -1e300]),
        np.array([np.nan, np.inf, -np.inf]),
    ]
    for values in samples:
        assert _same(python_round(values, digits), [round(v, digits) for v in values.tolist()])
