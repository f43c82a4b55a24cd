"""Rounding as Python's ``round`` does it, for whole columns at once."""

from __future__ import annotations

import numpy as np

# Below this, a scaled value's rounding error (half a unit in its last place, at most 2**-24) is far
# smaller than TIE_MARGIN.
_EXACT_BELOW = 2.0**29
TIE_MARGIN = 1e-6


def python_round(values: np.ndarray, digits: int) -> np.ndarray:
    """Python's ``round(value, digits)`` of each value: the decimal of ``digits`` places nearest to the
    value's exact binary value, ties to even, as the double nearest to it.

    ``rint(value * 10**digits) / 10**digits`` gives that very double wherever the scaled value is not
    within its rounding error of a tie (the integer is then the right one, and dividing it is correctly
    rounded): a value stored from a rounded decimal is returned as it is. The rest (near a tie, huge, NaN
    or infinite) is rounded one by one by Python.
    """
    values = np.asarray(values, dtype="float64")
    scale = 10.0**digits
    scaled = values * scale
    rounded = np.rint(scaled) / scale
    with np.errstate(invalid="ignore"):  # infinities: sorted out below
        sure = (np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) > TIE_MARGIN) & (np.abs(scaled) < _EXACT_BELOW)
    unsure = np.flatnonzero(~sure)
    if len(unsure):
        rounded[unsure] = [round(value, digits) for value in values[unsure].tolist()]
    return rounded
