"""The backtest on cases worked out by hand: fills, lots, fees, splits, distributions, suspensions.

Each case is a few bars of one fund, with the signal published on each day; the figures are computed
here by hand (in the comments) and compared with what the backtest publishes.
"""

import datetime as dt
import itertools
import math
import statistics

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alchemy_pipeline.domain.backtest import BacktestSettings, documents, run_backtest, summary_table, trade_lists
from alchemy_pipeline.domain.site.report import backtest_lines, backtest_summaries

DAYS = [d.date() for d in pd.bdate_range("2024-01-01", periods=60)]
STRATEGY = {"name": "double_ma", "short": 11, "long": 22}
FUND = "510300.SH"


def run(bars: list[tuple], settings: BacktestSettings | None = None, universe=(FUND,)):
    """``bars``: (day index, open, close, factor, signal) of fund 510300.SH; the backtest through the day of
    the last bar."""
    prices = pd.DataFrame(
        [(FUND, pd.Timestamp(DAYS[i]), o, c, f) for i, o, c, f, _ in bars],
        columns=["ts_code", "trade_date", "open", "close", "adj_factor"],
    )
    signals = pd.DataFrame(
        [(FUND, pd.Timestamp(DAYS[i]), s) for i, *_, s in bars], columns=["ts_code", "trade_date", "state"]
    )
    funds = pd.DataFrame({"ts_code": list(universe), "name": [f"fund {c}" for c in universe]})
    settings = settings or BacktestSettings(start=DAYS[0], cash=10_000)
    return run_backtest(prices, signals, funds, settings, DAYS[: bars[-1][0] + 1])


def doc(backtest, day=None):
    """The published document of ``day`` (a day with a bar; the last one by default)."""
    published = {d["as_of"]: d for d in documents(backtest, STRATEGY)}
    return published[(day or backtest.traded_days[-1]).isoformat()]


def trades(backtest, code=FUND):
    return trade_lists(backtest, {})[code]


def equity(backtest, sleeve, code=FUND):
    """The fund's equity at the close of each of its bars."""
    rows = backtest.frame[
        (backtest.frame["ts_code"] == code) & (backtest.frame["last_day"] == backtest.frame["trade_date"])
    ]
    return rows[f"{sleeve}_previous"].tolist()


def test_one_round_trip_pays_the_minimum_commission_on_both_fills():
    backtest = run(
        [
            (0, 1.00, 1.00, 1.0, "EMPTY"),
            (1, 1.00, 1.00, 1.0, "BUY"),
            (2, 1.00, 1.05, 1.0, "HOLD"),  # bought at this open
            (3, 1.08, 1.10, 1.0, "SELL"),
            (4, 1.10, 1.12, 1.0, "EMPTY"),  # sold at this open
        ]
    )
    # 10,000 CNY buys 99 lots at 1.00: 9,900 + max(0.025% x 9,900 = 2.475, 5) = 9,905; 100 lots would cost 10,005.
    # Sold at 1.10: 10,890 - 5 = 10,885. Cash after: 95 + 10,885 = 10,980.
    (trade,) = trades(backtest)
    assert trade == {
        "signal_day": "2024-01-02",
        "entry_day": "2024-01-03",
        "entry_price": 1.0,
        "exit_signal_day": "2024-01-04",
        "exit_day": "2024-01-05",
        "exit_price": 1.1,
        "shares": 9900,
        "fees": 10.0,
        "return": round(10_885 / 9_905 - 1, 6),
    }
    figures = doc(backtest)["funds"][0]["strategy"]
    assert figures["total_return"] == pytest.approx(0.098, abs=1e-9)
    assert figures["fees"] == 10.0
    assert figures["trades"] == 1 and figures["win_rate"] == 1.0
    assert figures["exposure"] == 0.4  # held at the close of 2 of its 5 bars
    # Equity 10,000, 10,000, 95 + 9,900 x 1.05 = 10,490, 95 + 10,890 = 10,985, 10,980: the one drawdown is the
    # exit fee, from the 4th bar's close to the 5th's.
    assert figures["max_drawdown"] == pytest.approx(10_980 / 10_985 - 1, abs=1e-6)
    assert (figures["max_drawdown_peak"], figures["max_drawdown_trough"]) == ("2024-01-04", "2024-01-05")
    # Under a year: not annualised.
    assert figures["cagr"] is None and figures["calmar"] is None


def test_buy_and_hold_buys_at_the_first_open_with_the_same_costs():
    backtest = run([(0, 2.00, 2.10, 1.0, "EMPTY"), (1, 2.10, 2.20, 1.0, "EMPTY")])
    # 10,000 / 2.00: 49 lots (9,800 + 5); cash left 195; at 2.20: 195 + 10,780 = 10,975.
    hold = doc(backtest)["funds"][0]["buy_and_hold"]
    assert hold["total_return"] == pytest.approx(0.0975, abs=1e-9)
    strategy = doc(backtest)["funds"][0]["strategy"]
    assert strategy["total_return"] == 0.0 and strategy["trades"] == 0 and strategy["exposure"] == 0.0


def test_a_split_and_a_distribution_while_holding_are_neither_gain_nor_loss():
    backtest = run(
        [
            (0, 2.00, 2.00, 1.0, "BUY"),
            (1, 2.00, 2.00, 1.0, "HOLD"),  # bought 4,900 at 2.00 (9,800 + 5), cash 195
            (2, 1.00, 1.00, 2.0, "HOLD"),  # 1:2 split: half the price, twice the factor
            (3, 0.95, 0.95, 2.0 * 1.00 / 0.95, "HOLD"),  # a 0.05 distribution: the factor makes it up
            (4, 0.95, 0.95, 2.0 * 1.00 / 0.95, "SELL"),
            (5, 0.95, 0.95, 2.0 * 1.00 / 0.95, "EMPTY"),  # sold at this open
        ]
    )
    assert equity(backtest, "strategy") == pytest.approx([10_000, 9_995, 9_995, 9_995, 9_995, 9_995 - 5])
    (trade,) = trades(backtest)
    # The shares bought are the shares reported; the exit price is the real traded one.
    assert trade["shares"] == 4900 and trade["exit_price"] == 0.95
    assert trade["return"] == pytest.approx((9_800 - 5) / 9_805 - 1, abs=1e-6)


def test_a_signal_on_the_last_day_has_not_filled_yet():
    backtest = run([(0, 1.0, 1.0, 1.0, "EMPTY"), (1, 1.0, 1.0, 1.0, "BUY")])
    fund = doc(backtest)["funds"][0]
    assert fund["open_trade"] is None and fund["strategy"]["trades"] == 0
    assert fund["strategy"]["total_return"] == 0.0


def test_a_suspended_fund_fills_at_its_next_bar():
    backtest = run(
        [
            (0, 1.0, 1.0, 1.0, "BUY"),
            # suspended on days 1 and 2
            (3, 1.2, 1.3, 1.0, "HOLD"),
        ]
    )
    (trade,) = trades(backtest)
    assert (trade["signal_day"], trade["entry_day"], trade["entry_price"]) == ("2024-01-01", "2024-01-04", 1.2)
    assert trade["exit_day"] is None  # open: marked at the last close, without an exit fee
    assert trade["return"] == pytest.approx(8_300 * 1.3 / (8_300 * 1.2 + 5) - 1, abs=1e-6)


def test_the_lots_left_unbought_stay_as_idle_cash():
    backtest = run(
        [(0, 3.0, 3.0, 1.0, "BUY"), (1, 3.0, 3.0, 1.0, "HOLD"), (2, 3.3, 3.3, 1.0, "HOLD")],
        BacktestSettings(start=DAYS[0], cash=10_000, lot=100),
    )
    # 33 lots at 3.00 cost 9,900 + 5: 95 CNY idle, earning nothing while the 9,900 gain 10%.
    assert equity(backtest, "strategy")[-1] == pytest.approx(95 + 3_300 * 3.3)


def test_close_execution_fills_at_the_signal_days_close_and_is_named():
    bars = [(0, 1.0, 1.1, 1.0, "BUY"), (1, 1.3, 1.4, 1.0, "SELL"), (2, 1.2, 1.2, 1.0, "EMPTY")]
    at_close = run(bars, BacktestSettings(start=DAYS[0], cash=10_000, execution="close"))
    next_open = run(bars, BacktestSettings(start=DAYS[0], cash=10_000))
    (optimistic,) = trades(at_close)
    (realistic,) = trades(next_open)
    assert (optimistic["entry_day"], optimistic["entry_price"], optimistic["exit_price"]) == ("2024-01-01", 1.1, 1.4)
    assert (realistic["entry_day"], realistic["entry_price"], realistic["exit_price"]) == ("2024-01-02", 1.3, 1.2)
    assert doc(at_close)["settings"]["execution"] == "close"


def test_slippage_moves_both_fills_against_the_trader():
    bars = [(0, 1.0, 1.0, 1.0, "BUY"), (1, 1.0, 1.0, 1.0, "SELL"), (2, 1.0, 1.0, 1.0, "EMPTY")]
    (trade,) = trades(run(bars, BacktestSettings(start=DAYS[0], cash=10_000, slippage_bps=10)))
    assert (trade["entry_price"], trade["exit_price"]) == (1.001, 0.999)


def test_a_regime_running_at_the_start_is_not_entered():
    # A SELL while out does nothing; the HOLD days of a regime begun before the start are not a BUY.
    backtest = run([(0, 1.0, 1.0, 1.0, "HOLD"), (1, 1.0, 1.0, 1.0, "SELL"), (2, 1.0, 1.0, 1.0, "HOLD")])
    assert trades(backtest) == []


def test_volatility_and_sharpe_are_annualised_sample_figures():
    closes = [1.00, 1.02, 0.99, 1.03, 1.01, 1.04]
    backtest = run(
        [(i, c, c, 1.0, "EMPTY") for i, c in enumerate(closes)], BacktestSettings(start=DAYS[0], cash=1_000_000)
    )
    held = equity(backtest, "buy_and_hold")
    returns = [b / a - 1 for a, b in itertools.pairwise([1_000_000, *held])]
    hold = doc(backtest)["funds"][0]["buy_and_hold"]
    sd = statistics.stdev(returns)
    assert hold["volatility"] == pytest.approx(sd * math.sqrt(244), abs=1e-6)
    assert hold["sharpe"] == pytest.approx(statistics.mean(returns) / sd * math.sqrt(244), abs=1e-6)


def test_a_fund_without_a_bar_has_null_figures_and_an_idle_sleeve_in_the_portfolio():
    backtest = run([(0, 1.0, 1.0, 1.0, "EMPTY"), (1, 1.0, 1.1, 1.0, "EMPTY")], universe=("510300.SH", "159915.SZ"))
    _, absent = doc(backtest)["funds"]
    assert absent == {
        "ts_code": "159915.SZ",
        "name": "fund 159915.SZ",
        "first_day": None,
        "strategy": None,
        "buy_and_hold": None,
        "open_trade": None,
    }
    # Two sleeves of 10,000; the absent fund's stays cash.
    hold = equity(backtest, "buy_and_hold")[-1]
    assert doc(backtest)["portfolio"]["buy_and_hold"]["total_return"] == pytest.approx((hold + 10_000) / 20_000 - 1)


def test_a_year_and_more_is_annualised_over_calendar_days():
    days = [dt.date(2022, 1, 4), dt.date(2024, 1, 4)]
    prices = pd.DataFrame(
        {"ts_code": "A", "trade_date": pd.to_datetime(days), "open": 1.0, "close": [1.0, 1.21], "adj_factor": 1.0}
    )
    signals = pd.DataFrame({"ts_code": "A", "trade_date": pd.to_datetime(days), "state": "EMPTY"})
    settings = BacktestSettings(start=days[0], cash=1_000_000, min_commission=0, commission=0)
    backtest = run_backtest(prices, signals, pd.DataFrame({"ts_code": ["A"], "name": ["a"]}), settings, days)
    hold = doc(backtest)["funds"][0]["buy_and_hold"]
    assert hold["cagr"] == pytest.approx(1.21 ** (365.25 / 730) - 1, abs=1e-6)


@st.composite
def walks(draw):
    """A fund's random bars with random signals, a split or two, and suspensions."""
    n = draw(st.integers(5, 60))
    price, factor, bars = 1.0, 1.0, []
    for i in range(n):
        if draw(st.booleans()) and draw(st.booleans()):
            continue  # suspended
        if draw(st.integers(0, 20)) == 0:
            price, factor = price / 2, factor * 2
        price = round(max(0.01, price * (1 + draw(st.floats(-0.1, 0.1)))), 3)
        signal = draw(st.sampled_from(["BUY", "SELL", "HOLD", "EMPTY", "BUY", "SELL"]))
        bars.append((i, round(price * (1 + draw(st.floats(-0.02, 0.02))), 3), price, factor, signal))
    return bars


@settings(max_examples=40, deadline=None)
@given(walks(), st.sampled_from(["next_open", "close"]), st.integers(0, 59))
def test_a_days_backtest_does_not_change_when_later_prices_are_added(bars, execution, cut):
    """No look-ahead: every document up to a day is the same from a run that ends there and from a longer one."""
    early = [b for b in bars if b[0] <= cut]
    if not early:
        return
    settings = BacktestSettings(start=DAYS[0], cash=50_000, execution=execution)
    longer = {d["as_of"]: d for d in documents(run(bars, settings), STRATEGY)}
    for document in documents(run(early, settings), STRATEGY):
        assert longer[document["as_of"]] == document


def test_a_fund_suspended_to_the_end_is_annualised_to_its_last_bar():
    days = [dt.date(2022, 1, 4), dt.date(2023, 1, 4), dt.date(2024, 1, 4)]
    prices = pd.DataFrame(
        {"ts_code": ["A", "A", "B"], "trade_date": pd.to_datetime([days[0], days[1], days[2]]), "open": 1.0,
         "close": [1.0, 1.21, 1.0], "adj_factor": 1.0}
    )  # fmt: skip
    signals = pd.DataFrame({"ts_code": prices["ts_code"], "trade_date": prices["trade_date"], "state": "EMPTY"})
    settings = BacktestSettings(start=days[0], cash=1_000_000, min_commission=0, commission=0)
    funds = pd.DataFrame({"ts_code": ["A", "B"], "name": ["a", "b"]})
    backtest = run_backtest(prices, signals, funds, settings, days)
    # A's last bar is a year after its first: 21% in 365 days, whatever day the document is of.
    assert doc(backtest, days[2])["funds"][0]["buy_and_hold"]["cagr"] == pytest.approx(1.21 ** (365.25 / 365) - 1)


def test_the_reports_summary_is_the_backtests_figures_of_the_day():
    backtest = run(
        [(0, 1.0, 1.0, 1.0, "BUY"), (1, 1.0, 1.1, 1.0, "HOLD"), (2, 1.1, 1.2, 1.0, "HOLD")],
        universe=("510300.SH", "159915.SZ"),
    )
    summaries = backtest_summaries(summary_table(backtest.frame, backtest.state.settings))
    first, last = summaries["2024-01-01"], summaries["2024-01-03"]
    assert first["funds"] == []  # the BUY has not filled yet
    figures = doc(backtest, DAYS[2])
    (fund,) = last["funds"]  # the one that traded; the fund without a bar is left out
    assert fund["strategy"]["total_return"] == figures["funds"][0]["strategy"]["total_return"]
    assert last["portfolio"]["buy_and_hold"] == {
        "total_return": figures["portfolio"]["buy_and_hold"]["total_return"],
        "cagr": None,
    }
    assert (last["start"], last["execution"]) == ("2024-01-01", "next_open")


def test_the_reports_lines_give_a_years_rate_or_under_a_year_the_return():
    summary = {
        "start": "2015-01-05",
        "execution": "close",
        "portfolio": {
            "strategy": {"total_return": 0.2367, "cagr": 0.02555},
            "buy_and_hold": {"total_return": 0.3318, "cagr": 0.03461},
        },
        "funds": [
            {
                "ts_code": "510300.SH",
                "name": "沪深300ETF",
                "strategy": {"total_return": 0.05, "cagr": None},
                "buy_and_hold": {"total_return": -0.012, "cagr": None},
            }
        ],
    }
    assert backtest_lines(summary) == [
        "回测(自2015-01-05起, 信号当日收盘成交(偏乐观), 扣除佣金):",
        "等权组合: 策略年化2.6%, 持有年化3.5%",
        "沪深300ETF(510300.SH): 策略累计5.0%, 持有累计-1.2%(不足一年, 未年化)",
    ]
