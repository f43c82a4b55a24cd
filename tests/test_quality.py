"""Data-quality rules on hand-made tables."""

import datetime as dt

import pandas as pd

from alchemy_pipeline.domain.market.quality import (
    bars_are_sane,
    bars_are_valid,
    calendar_horizon,
    days_over_threshold,
    factors_are_present,
    fund_days_are_unique,
    held_back_days,
    no_data_under_threshold,
    universe_coverage,
)
from alchemy_pipeline.domain.signals.rule import MISSING_BAR, NOT_TRADING

DAY = pd.Timestamp("2024-06-28")


def bars(**changes):
    row = {"ts_code": "510300.SH", "trade_date": DAY, "open": 3.5, "high": 3.6, "low": 3.4, "close": 3.55,
           "adj_factor": 1.2}  # fmt: skip
    return pd.DataFrame([row, {**row, "ts_code": "159915.SZ", **changes}])


def test_sane_bars_pass_and_broken_ones_are_named():
    assert bars_are_sane(bars()).passed
    for broken in ({"high": 3.3}, {"low": 3.56}, {"close": 0.0}, {"open": None}):
        finding = bars_are_sane(bars(**broken))
        assert not finding.passed and "159915.SZ 2024-06-28" in finding.description


def test_missing_or_non_positive_factors_fail():
    assert factors_are_present(bars()).passed
    assert not factors_are_present(bars(adj_factor=None)).passed
    assert not factors_are_present(bars(adj_factor=0.0)).passed


def test_duplicate_fund_days_fail():
    assert fund_days_are_unique(bars()).passed
    assert not fund_days_are_unique(bars(ts_code="510300.SH")).passed


def test_one_check_of_every_bar_rule_names_each_rule_that_fails():
    assert bars_are_valid(bars()).passed
    finding = bars_are_valid(bars(ts_code="510300.SH", high=3.3, adj_factor=None))
    assert not finding.passed
    assert "not sane" in finding.description and "lack a positive adjustment factor" in finding.description
    assert "repeat a fund and day" in finding.description
    assert finding.metadata == {"bad_bars": 1, "bars_without_factor": 1, "repeated_bars": 2, "days_held_back": 1}
    assert finding.description.endswith("Held back from publication: 2024-06-28")
    assert bars_are_valid(bars(adj_factor=0.0)).description.startswith("1 bars lack a positive adjustment factor")


def test_coverage_names_the_funds_without_a_bar():
    finding = universe_coverage(bars(), ["510300.SH", "159915.SZ", "512880.SH"], [DAY.date()])
    assert not finding.passed and "512880.SH" in finding.description


def test_coverage_counts_the_days_a_fund_lacks_a_bar():
    earlier = DAY - pd.Timedelta(days=1)
    table = pd.concat([bars().head(1).assign(trade_date=earlier), bars(), bars(ts_code="588000.SH")])
    codes = ["510300.SH", "159915.SZ"]  # 588000.SH is outside the universe and counts for nothing
    finding = universe_coverage(table, codes, [earlier.date(), DAY.date()])
    assert not finding.passed
    assert finding.metadata == {"days_with_missing_funds": 1, "missing_on_last_day": 0}
    assert finding.description == f"every fund has a bar on {DAY.date()}"


def test_funds_not_listed_yet_do_not_count_against_the_threshold():
    signals = pd.DataFrame(
        {
            "ts_code": [f"{i}" for i in range(8)],
            "trade_date": DAY,
            "state": "NO_DATA",
            "note": [MISSING_BAR] * 3 + [NOT_TRADING] * 5,
        }
    )
    assert no_data_under_threshold(signals, 5).passed
    assert not no_data_under_threshold(signals, 2).passed


def test_calendar_horizon_warns_sixty_days_ahead():
    end = dt.date(2026, 12, 31)
    assert calendar_horizon(end, dt.date(2026, 10, 1)).passed
    late = calendar_horizon(end, dt.date(2026, 11, 27))
    assert not late.passed and "34 days left" in late.description


def test_held_back_days_are_the_days_with_a_broken_bar_or_too_many_funds_without_data():
    earlier = DAY - pd.Timedelta(days=1)
    prices = pd.concat([bars().assign(trade_date=earlier), bars(high=3.3)], ignore_index=True)
    signals = pd.DataFrame(
        {
            "ts_code": ["510300.SH", "159915.SZ", "512880.SH"] * 2,
            "trade_date": [earlier] * 3 + [DAY] * 3,
            "state": ["NO_DATA"] * 3 + ["HOLD"] * 3,
            "note": [MISSING_BAR] * 3 + [None] * 3,
        }
    )
    held = held_back_days(prices, signals, threshold=2)
    assert list(held) == ["2024-06-27", "2024-06-28"]
    assert held["2024-06-27"] == "3 funds without data, more than 2: 510300.SH, 159915.SZ, 512880.SH"
    assert held["2024-06-28"].startswith("1 bars not sane") and "159915.SZ 2024-06-28" in held["2024-06-28"]
    assert held_back_days(prices.head(2), signals, threshold=3) == {}
    assert days_over_threshold(signals, threshold=3) == {}
