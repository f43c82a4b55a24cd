"""The strategy rule (``rule.fund_signal``) on cases worked out by hand (short=2, long=3 unless said otherwise)."""

import datetime as dt

import numpy as np
import pytest

from alchemy_pipeline.domain.signals.rule import MISSING_BAR, NOT_TRADING, RuleParams, Signal, State, fund_signal

SMALL = RuleParams(short=2, long=3, window=254)
DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(0, 40)]  # calendar days stand in for sessions


def signal_on(closes: list[float | None], index: int, factors: list[float] | None = None, params=SMALL):
    """The signal on DAYS[index] of a fund with these closes (None: no bar that day)."""
    bars = [(DAYS[i], c, factors[i] if factors else 1.0) for i, c in enumerate(closes[: index + 1]) if c is not None]
    dates, values, adj = zip(*bars, strict=True) if bars else ((), (), ())
    return fund_signal(DAYS[index], list(dates), list(values), list(adj), params)


# SMA2 / SMA3 by hand for these closes:
#   i:      0     1     2     3     4      5      6      7      8      9
#   close: 10     9     8     7     8     10     11      9      7    7.5
#   sma2:   -   9.5   8.5   7.5   7.5    9.0   10.5   10.0    8.0   7.25
#   sma3:   -     -   9.0   8.0  7.667  8.333  9.667  10.0    9.0   7.833
CLOSES = [10, 9, 8, 7, 8, 10, 11, 9, 7, 7.5]


def test_golden_cross_is_a_buy_on_the_day_it_fires():
    signal = signal_on(CLOSES, 5)
    assert signal.state == State.BUY
    assert (signal.ma_short, signal.ma_long, signal.close) == (9.0, 8.333, 10.0)
    assert signal.since == DAYS[5]  # the cross day itself, not the day before
    assert (signal.days, signal.pct) == (0, 0.0)


def test_hold_counts_from_the_buy_day():
    signal = signal_on(CLOSES, 6)
    assert (signal.state, signal.since, signal.days) == (State.HOLD, DAYS[5], 1)
    assert signal.pct == 10.0  # 11 / 10 - 1


def test_equal_averages_keep_the_current_regime():
    signal = signal_on(CLOSES, 7)
    assert (signal.ma_short, signal.ma_long) == (10.0, 10.0)
    assert (signal.state, signal.since, signal.pct) == (State.HOLD, DAYS[5], -10.0)


def test_death_cross_after_a_tie_is_a_sell():
    signal = signal_on(CLOSES, 8)
    assert (signal.state, signal.ma_short, signal.ma_long) == (State.SELL, 8.0, 9.0)
    assert (signal.since, signal.days, signal.pct) == (DAYS[8], 0, 0.0)


def test_empty_counts_from_the_sell_day():
    signal = signal_on(CLOSES, 9)
    assert (signal.state, signal.since, signal.days) == (State.EMPTY, DAYS[8], 1)
    assert signal.pct == 7.14  # 7.5 / 7 - 1


def test_empty_before_any_cross_has_no_since():
    signal = signal_on(CLOSES, 4)
    assert signal.state == State.EMPTY
    assert (signal.since, signal.days, signal.pct) == (None, None, None)


def test_averages_that_never_differed_are_empty_without_a_since():
    signal = signal_on([5.0] * 10, 9)
    assert (signal.state, signal.ma_short, signal.ma_long, signal.since) == (State.EMPTY, 5.0, 5.0, None)


def test_a_fund_without_a_bar_on_the_day_is_no_data_saying_why():
    assert signal_on([*CLOSES[:9], None], 9) == Signal(State.NO_DATA, note=MISSING_BAR)  # suspended
    assert signal_on([None] * 10, 9).note == NOT_TRADING  # not listed yet, or delisted


def test_fewer_than_long_plus_one_bars_is_insufficient_history():
    signal = signal_on([None] * 7 + [9, 8, 8.5], 9)  # listed 3 bars ago; needs 4
    assert (signal.state, signal.note, signal.close, signal.ma_short) == (
        State.INSUFFICIENT_HISTORY, "3 bars; the strategy needs 4", 8.5, 8.25,
    )  # fmt: skip
    assert signal_on([None] * 6 + [9, 9, 8, 8.5], 9).state != State.INSUFFICIENT_HISTORY  # 4 bars: enough


def test_missing_adjustment_factor_is_no_data_naming_the_day():
    signal = signal_on(CLOSES, 9, factors=[1.0] * 6 + [np.nan] + [1.0] * 3)
    assert (signal.state, signal.close, signal.ma_short) == (State.NO_DATA, 7.5, None)
    assert signal.note == f"no usable adjustment factor on {DAYS[6]}"


def test_split_does_not_fake_a_death_cross():
    params = RuleParams()  # 11 / 22
    rising = [2.0 + 0.01 * i for i in range(30)]
    # A 2-for-1 split on bar 25: the raw close halves and the cumulative factor doubles.
    closes = [c if i < 25 else round(c / 2, 3) for i, c in enumerate(rising)]
    factors = [1.0 if i < 25 else 2.0 for i in range(30)]
    assert signal_on(closes, 29, params=params).state in (State.SELL, State.EMPTY)  # raw closes would say so
    adjusted = signal_on(closes, 29, factors, params)
    assert adjusted.state == State.HOLD
    # Forward-adjusted: history is scaled to the latest factor, so the averages sit near today's price.
    assert adjusted.ma_short == pytest.approx(np.mean([c / 2 for c in rising[-11:]]), abs=0.002)


def test_window_too_short_for_the_search_is_refused():
    with pytest.raises(ValueError, match="window=100"):
        RuleParams(window=100)
    with pytest.raises(ValueError, match="short < long"):
        RuleParams(short=22, long=11)
