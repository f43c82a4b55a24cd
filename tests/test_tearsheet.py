"""The tearsheet's figures (``domain/backtest/tearsheet.py``) on curves small enough to work out by hand, and
held to the backtest's running figures: the same daily returns, the same deepest drawdown."""

import datetime as dt
import math
import statistics

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alchemy_pipeline.domain.backtest.engine import Stats
from alchemy_pipeline.domain.backtest.tearsheet import (
    closed_trades,
    daily_returns,
    drawdown_episodes,
    period_returns,
    relative,
    rolling_sharpe,
    sortino,
    tearsheet,
    trade_statistics,
)

ANNUAL = math.sqrt(244)


def days(n: int, first: str = "2023-01-02") -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.bdate_range(first, periods=n)]


def test_sortino_is_the_mean_return_over_the_downside_deviation_of_every_day_annualised():
    returns = daily_returns(np.array([110.0, 99.0, 108.9]), 100.0)
    assert returns == pytest.approx([0.1, -0.1, 0.1])
    # The downside deviation counts the days without a loss as zeros: sqrt(0.1^2 / 3).
    assert sortino(returns) == pytest.approx((0.1 / 3) / math.sqrt(0.01 / 3) * ANNUAL)
    assert math.isnan(sortino(np.array([0.01, 0.02]))), "without a losing day there is no downside"
    assert math.isnan(sortino(np.array([])))


def test_a_periods_return_is_its_last_equity_over_the_previous_periods_last():
    dates = ["2023-12-28", "2023-12-29", "2024-01-02", "2024-01-31", "2024-02-01"]
    equity = np.array([101.0, 102.0, 100.0, 103.0, 99.0])
    assert period_returns(dates, equity, 100.0, 7) == {
        "2023-12": 0.02,
        "2024-01": round(103 / 102 - 1, 6),
        "2024-02": round(99 / 103 - 1, 6),
    }
    assert period_returns(dates, equity, 100.0, 4) == {"2023": 0.02, "2024": round(99 / 102 - 1, 6)}
    assert period_returns([], np.array([]), 100.0, 7) == {}


def test_drawdown_episodes_deepest_first_with_peak_trough_recovery_and_calendar_days():
    dates = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10",
             "2024-01-11"]  # fmt: skip
    equity = np.array([95.0, 101.0, 90.0, 80.0, 101.0, 102.0, 100.0, 99.0])
    episodes = drawdown_episodes(dates, equity, 100.0, as_of="2024-01-15")
    assert episodes == [
        # Back at the peak is recovered (101 on the 8th).
        {"peak": "2024-01-03", "trough": "2024-01-05", "recovery": "2024-01-08", "depth": round(80 / 101 - 1, 6),
         "days": 5},
        # Below the starting value from the first bar: the peak is the start, dated by the first bar.
        {"peak": "2024-01-02", "trough": "2024-01-02", "recovery": "2024-01-03", "depth": -0.05, "days": 1},
        # Not recovered: counted to the tearsheet's day.
        {"peak": "2024-01-09", "trough": "2024-01-11", "recovery": None, "depth": round(99 / 102 - 1, 6), "days": 6},
    ]  # fmt: skip
    assert drawdown_episodes(dates, equity, 100.0, "2024-01-15", count=2) == episodes[:2]
    assert drawdown_episodes(dates[:2], np.array([100.0, 101.0]), 100.0, "2024-01-15") == []


def test_the_rolling_sharpe_ratio_is_taken_at_each_months_last_bar_over_the_year_of_bars_ending_on_it():
    dates = days(300)
    returns = np.random.default_rng(7).normal(0.0005, 0.01, 300)
    points = rolling_sharpe(dates, returns)
    month_ends = [d for i, d in enumerate(dates) if i + 1 == len(dates) or dates[i + 1][:7] != d[:7]]
    assert [p["day"] for p in points] == month_ends
    for point in points:
        i = dates.index(point["day"])
        if i < 243:
            assert point["value"] is None, "fewer than 244 bars"
            continue
        window = returns[i - 243 : i + 1].tolist()
        expected = statistics.fmean(window) / statistics.stdev(window) * ANNUAL
        assert point["value"] == pytest.approx(expected, abs=5e-7)
    assert sum(p["value"] is not None for p in points) == 3, "Dec, Jan, Feb and the last bar: 244 bars by Dec 29"
    flat = rolling_sharpe(dates, np.zeros(300))
    assert all(p["value"] is None for p in flat), "a flat year has no Sharpe ratio"


def test_trade_statistics_are_over_closed_trades_net_of_fees_with_the_bars_each_was_held():
    dates = days(20, "2024-03-01")
    trades = [
        {"entry_day": dates[0], "exit_day": dates[3], "return": 0.1},
        {"entry_day": dates[4], "exit_day": dates[5], "return": -0.05},
        {"entry_day": dates[6], "exit_day": dates[12], "return": 0.02},
        {"entry_day": dates[13], "exit_day": dates[15], "return": -0.01},
        {"entry_day": dates[17], "exit_day": None, "return": 0.3},  # open: not counted
    ]
    closed = closed_trades(trades, dates)
    assert closed == [(0.1, 3), (-0.05, 1), (0.02, 6), (-0.01, 2)]
    assert trade_statistics(closed) == {
        "closed_trades": 4,
        "profit_factor": 2.0,
        "expectancy": 0.015,
        "average_holding_days": 3.0,
        "best_trade": 0.1,
        "worst_trade": -0.05,
    }
    assert trade_statistics([(0.1, 2)])["profit_factor"] is None, "no loss to divide by"
    assert trade_statistics([]) == {
        "closed_trades": 0,
        "profit_factor": None,
        "expectancy": None,
        "average_holding_days": None,
        "best_trade": None,
        "worst_trade": None,
    }


def test_beta_and_alpha_against_holding():
    hold = np.random.default_rng(3).normal(0.0004, 0.012, 500)
    strategy = 0.5 * hold + 0.001
    assert relative(strategy, hold) == {"alpha": 0.244, "beta": 0.5}
    assert relative(strategy[:1], hold[:1]) == {"alpha": None, "beta": None}
    assert relative(strategy, np.full(500, 0.001)) == {"alpha": None, "beta": None}, "holding did not vary"


def test_a_tearsheet_has_both_sleeves_the_strategys_trades_and_the_relative_figures():
    dates = days(260)
    rng = np.random.default_rng(11)
    equity = pd.DataFrame(
        {
            "day": dates,
            "strategy": 100_000 * np.cumprod(1 + rng.normal(0.0004, 0.008, 260)),
            "buy_and_hold": 100_000 * np.cumprod(1 + rng.normal(0.0002, 0.012, 260)),
        }
    )
    sheet = tearsheet("510300.SH", dates[-1], equity, 100_000.0, [(0.05, 10), (-0.02, 4)])
    assert sheet["as_of"] == dates[-1] and sheet["ts_code"] == "510300.SH"
    assert set(sheet["strategy"]) == {
        "sortino", "monthly_returns", "yearly_returns", "drawdowns", "rolling_sharpe", "closed_trades",
        "profit_factor", "expectancy", "average_holding_days", "best_trade", "worst_trade",
    }  # fmt: skip
    assert set(sheet["buy_and_hold"]) == {"sortino", "monthly_returns", "yearly_returns", "drawdowns", "rolling_sharpe"}
    growth = math.prod(1 + r for r in sheet["strategy"]["yearly_returns"].values())
    assert growth == pytest.approx(equity["strategy"].iloc[-1] / 100_000, rel=1e-5)
    assert sheet["relative"]["beta"] is not None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-0.08, 0.08, allow_nan=False).map(lambda r: round(r, 4)), min_size=2, max_size=120),
    st.booleans(),
)
def test_the_same_returns_and_deepest_drawdown_as_the_backtests_running_figures(returns, flat_spells):
    if flat_spells:  # out of the market: the equity stays exactly where it was
        returns = [0.0 if i % 5 < 2 else r for i, r in enumerate(returns)]
    dates = days(len(returns))
    equity = 100_000 * np.cumprod(1 + np.array(returns))
    stats = Stats(100_000.0)
    for value, day in zip(equity.tolist(), dates, strict=True):
        stats.add(value, day)
    mine = daily_returns(equity, 100_000.0)
    assert float(np.mean(mine)) == pytest.approx(stats.mean, rel=1e-12, abs=1e-15)
    assert float(np.sum((mine - mine.mean()) ** 2)) == pytest.approx(stats.m2, rel=1e-9, abs=1e-15)
    episodes = drawdown_episodes(dates, equity, 100_000.0, dates[-1])
    if stats.worst == 0:
        assert episodes == []
        return
    deepest = episodes[0]
    assert deepest["depth"] == round(stats.worst, 6)
    assert deepest["trough"] == stats.worst_trough_day
    assert all(e["depth"] >= deepest["depth"] for e in episodes)
    assert all(dt.date.fromisoformat(e["peak"]) <= dt.date.fromisoformat(e["trough"]) for e in episodes)
