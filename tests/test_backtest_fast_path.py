"""The fast paths the pipeline runs, held to their definitions on random markets: the carried backtest
(``backtest.fast_path.carry``: every fund of a day at once) to ``state.carry_fund_by_fund`` (one fund and bar
at a time with the books), every number of every day's state, every closed trade and the state it leaves, to
the last bit; and the documents written from columns to the reports' layout of what they hold."""

import datetime as dt
import json

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.backtest.state import carry_fund_by_fund
from alchemy_pipeline.domain.site.report import document_json
from tests.test_backtest_carried import DAYS, markets


def both_ways(frame, universe, days, held_back, settings_, start_from: int = 0):
    """The two engines over ``days``, from the empty state or from the state the definition left after the
    first ``start_from`` days."""
    runs = []
    for engine in (carry_fund_by_fund, bt.carry):
        state = bt.BacktestState.empty(settings_, universe, "fp")
        if start_from:
            before = days[:start_from]
            carry_fund_by_fund(state, bt.bars_by_day(frame, frame, state.codes, before), before, held_back)
        rest = days[start_from:]
        runs.append(engine(state, bt.bars_by_day(frame, frame, state.codes, rest), rest, held_back))
    return runs


def assert_same_run(plain: bt.CarriedRun, fast: bt.CarriedRun) -> None:
    assert fast.traded_days == plain.traded_days
    assert fast.frame.drop(columns=bt.state.STATE_FIELDS).equals(plain.frame.drop(columns=bt.state.STATE_FIELDS))
    assert np.array_equal(bt.state_numbers(fast.frame), bt.state_numbers(plain.frame), equal_nan=True)
    assert fast.closed_trades == plain.closed_trades
    left = np.array([f.record() for f in fast.state.funds] + [fast.state.portfolio.record()], dtype=float)
    right = np.array([f.record() for f in plain.state.funds] + [plain.state.portfolio.record()], dtype=float)
    assert np.array_equal(left, right, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(
    markets(),
    st.sampled_from(["next_open", "close"]),
    st.sampled_from([0.0, 3.0]),
    st.sampled_from([20_000.0, 150.0]),  # 150: often not one lot affordable
    st.integers(0, 6),
)
def test_every_fund_at_once_is_the_books_one_fund_at_a_time(market, execution, slippage, cash, start_from):
    frame, universe, days, held_back, _ = market
    settings_ = bt.BacktestSettings(start=days[0], cash=cash, execution=execution, slippage_bps=slippage)
    plain, fast = both_ways(frame, universe, days, held_back, settings_, min(start_from, len(days) - 1))
    assert_same_run(plain, fast)


def test_a_large_universe_sums_its_portfolio_in_universe_order():
    """Hundreds of funds: a sum that paired the funds up would differ from the books' in the last bits."""
    rng = np.random.default_rng(7)
    codes = [f"51{i:04d}.SH" for i in range(300)]
    days = DAYS[:30]
    rows = [
        (code, pd.Timestamp(day), round(p * 1.01, 3), round(p, 3), 1.0, rng.choice(["BUY", "SELL", "HOLD"]))
        for code in codes
        for day, p in zip(days, np.cumprod(1 + rng.normal(0, 0.02, len(days))) * rng.uniform(0.5, 5), strict=True)
    ]
    frame = pd.DataFrame(rows, columns=["ts_code", "trade_date", "open", "close", "adj_factor", "state"])
    universe = pd.DataFrame({"ts_code": codes, "name": codes})
    settings_ = bt.BacktestSettings(start=dt.date(2024, 1, 1), cash=33_333.33)
    plain, fast = both_ways(frame, universe, days, set(), settings_)
    assert_same_run(plain, fast)
    assert fast.frame["strategy_previous"].iloc[0] != 0


@settings(max_examples=30, deadline=None)
@given(markets(), st.sampled_from(["next_open", "close"]))
def test_each_document_is_written_as_the_reports_layout_writes_its_content(market, execution):
    """The documents are written from columns; their bytes are those of the reports' layout (one fund a line,
    ``json``'s numbers) of what they hold: a reader parsing them and writing them out again gets them back."""
    frame, universe, days, held_back, _ = market
    settings_ = bt.BacktestSettings(start=days[0], cash=20_000, execution=execution, slippage_bps=3)
    run = bt.run_backtest(frame, frame, universe, settings_, days, held_back, "fp")
    files = list(bt.document_files(run, {"name": "double_ma", "short": 11, "long": 22}))
    assert [day for day, _ in files] == [d.isoformat() for d in run.traded_days]
    for _, data in files:
        assert document_json(json.loads(data), "funds") == data


@settings(max_examples=30, deadline=None)
@given(markets())
def test_the_reports_table_from_a_few_columns_is_the_summary_tables(market):
    """signal_report reads a handful of the states' columns (a decade of 1,500 funds' whole states is 1.3 GB):
    its figures are those of the summary table of the whole states, the portfolio's trades summed alike."""
    frame, universe, days, held_back, _ = market
    settings_ = bt.BacktestSettings(start=days[0], cash=20_000, slippage_bps=3)
    states = bt.run_backtest(frame, frame, universe, settings_, days, held_back, "fp").frame
    report = bt.report_table(states[bt.REPORT_STATE_COLUMNS], settings_)
    summary = bt.summary_table(states, settings_)
    pd.testing.assert_frame_equal(report, summary[report.columns], check_exact=True)
