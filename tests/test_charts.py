"""The equity chart the Dagster UI shows on signal_report: an SVG drawn from the portfolio's series."""

import math
from xml.etree import ElementTree

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from alchemy_pipeline.domain.site.charts import PLOT_BOX, equity_svg, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def points(polyline) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in polyline.get("points").split()]


def test_each_curve_is_drawn_where_it_has_values_and_the_line_at_one_is_where_the_values_are_one():
    dates = [f"2023-0{m}-0{d}" for m in range(1, 4) for d in range(1, 6)]
    strategy = [1.0, 1.1, 1.2, 0.9, 1.0] * 3
    hold = [None, None, 1.0, 1.05, 1.1, None, 1.2, 1.3, 1.0, 0.8, 0.9, 1.0, 1.1, 1.0, 1.0]
    svg = ElementTree.fromstring(equity_svg(dates, strategy, hold))
    red, *grey = [c for c in svg.findall(f"{SVG}polyline")]
    assert [len(points(c)) for c in grey] == [3, 9]  # split where hold has no value
    assert len(points(red)) == 15
    left, _, right, _ = PLOT_BOX
    assert points(red)[0][0] == left and points(red)[-1][0] == right
    one = [float(line.get("y1")) for line in svg.findall(f"{SVG}line") if line.get("stroke") == "#d0d7de"]
    assert one == [points(red)[0][1]] == [points(grey[0])[0][1]]  # both start at 1.0, on the line at 1
    labels = [t.text for t in svg.findall(f"{SVG}text")]
    assert "2023-01" in labels and "strategy" in labels and "buy & hold" in labels


@given(st.floats(-1e3, 1e3), st.floats(1e-6, 1e3))
@example(1.192092896e-07, 601.0)  # a first tick of 0, float noise below the range
@example(-858.9999999999999, 1e-06)  # a first tick of -859.0, the ten decimals it is rounded to
def test_ticks_are_round_cover_the_range_and_are_few(low, span):
    ticks = nice_ticks(low, low + span)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    assert 1 <= len(ticks) <= 7
    # Within the range, give or take a billionth of a step (the float noise the ticks' rounding forgives) and
    # the ten decimals each tick is rounded to.
    slack = 1e-9 * (step or 1) + 1e-10
    assert all(low - slack <= t <= low + span + slack for t in ticks)
    if step is not None:
        mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
        assert any(mantissa == pytest.approx(k) for k in (1, 2, 5))
