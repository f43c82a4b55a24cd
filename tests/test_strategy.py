"""The strategy rule on cases worked out by hand (short=2, long=3 unless said otherwise)."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import talib

from alchemy_pipeline.domain import strategy, workers
from alchemy_pipeline.domain.strategy import FUNDS_PER_TASK, StrategyParams, classify, compute_indicators

SMALL = StrategyParams(short=2, long=3, window=254)
DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(0, 40)]  # calendar days stand in for sessions


def prices(closes: dict[str, list[float | None]], factors: dict[str, list[float]] | None = None) -> pd.DataFrame:
    rows = []
    for code, series in closes.items():
        for i, close in enumerate(series):
            if close is None:  # no bar that day (suspension)
                continue
            factor = factors[code][i] if factors and code in factors else 1.0
            rows.append({"ts_code": code, "trade_date": pd.Timestamp(DAYS[i]), "close": close, "adj_factor": factor})
    return pd.DataFrame(rows)


def signals_on(table: pd.DataFrame, index: int, params: StrategyParams = SMALL, funds=None) -> dict:
    funds = funds or sorted(table["ts_code"].unique())
    universe = pd.DataFrame({"ts_code": funds, "name": [f"fund {c}" for c in funds]})
    sessions = DAYS[: index + 1]
    indicators = compute_indicators(table, sessions, [DAYS[index]], params)
    result = classify(indicators, universe, [DAYS[index]], params)
    return {row.ts_code: row._asdict() for row in result.itertuples(index=False)}


# SMA2 / SMA3 by hand for these closes:
#   i:      0     1     2     3     4      5      6      7      8      9
#   close: 10     9     8     7     8     10     11      9      7    7.5
#   sma2:   -   9.5   8.5   7.5   7.5    9.0   10.5   10.0    8.0   7.25
#   sma3:   -     -   9.0   8.0  7.667  8.333  9.667  10.0    9.0   7.833
CLOSES = [10, 9, 8, 7, 8, 10, 11, 9, 7, 7.5]


def test_golden_cross_is_a_buy_on_the_day_it_fires():
    signal = signals_on(prices({"A": CLOSES}), 5)["A"]
    assert signal["state"] == "BUY"
    assert (signal["ma_short"], signal["ma_long"], signal["close"]) == (9.0, 8.333, 10.0)
    assert signal["since"] == pd.Timestamp(DAYS[5])  # the cross day itself, not the day before
    assert (signal["days"], signal["pct"]) == (0, 0.0)


def test_hold_counts_from_the_buy_day():
    signal = signals_on(prices({"A": CLOSES}), 6)["A"]
    assert signal["state"] == "HOLD"
    assert signal["since"] == pd.Timestamp(DAYS[5])
    assert signal["days"] == 1
    assert signal["pct"] == 10.0  # 11 / 10 - 1


def test_equal_averages_keep_the_current_regime():
    signal = signals_on(prices({"A": CLOSES}), 7)["A"]
    assert (signal["ma_short"], signal["ma_long"]) == (10.0, 10.0)
    assert signal["state"] == "HOLD"
    assert signal["since"] == pd.Timestamp(DAYS[5])
    assert signal["pct"] == -10.0


def test_death_cross_after_a_tie_is_a_sell():
    signal = signals_on(prices({"A": CLOSES}), 8)["A"]
    assert signal["state"] == "SELL"
    assert (signal["ma_short"], signal["ma_long"]) == (8.0, 9.0)
    assert (signal["since"], signal["days"], signal["pct"]) == (pd.Timestamp(DAYS[8]), 0, 0.0)


def test_empty_counts_from_the_sell_day():
    signal = signals_on(prices({"A": CLOSES}), 9)["A"]
    assert signal["state"] == "EMPTY"
    assert signal["since"] == pd.Timestamp(DAYS[8])
    assert signal["days"] == 1
    assert signal["pct"] == 7.14  # 7.5 / 7 - 1


def test_empty_before_any_cross_has_no_since():
    signal = signals_on(prices({"A": CLOSES}), 4)["A"]
    assert signal["state"] == "EMPTY"
    assert pd.isna(signal["since"]) and pd.isna(signal["days"]) and pd.isna(signal["pct"])


def test_fund_without_a_bar_on_the_day_is_no_data():
    table = prices({"A": CLOSES, "B": [*CLOSES[:9], None]})
    signals = signals_on(table, 9)
    assert signals["B"]["state"] == "NO_DATA"
    assert signals["A"]["state"] == "EMPTY"  # the other fund is unaffected


def test_fund_not_in_the_vendor_data_at_all_is_no_data():
    signals = signals_on(prices({"A": CLOSES}), 9, funds=["A", "Z"])
    assert signals["Z"]["state"] == "NO_DATA"


def test_fewer_than_long_plus_one_bars_is_insufficient_history():
    table = prices({"A": CLOSES, "NEW": [None] * 7 + [9, 8, 8.5]})  # listed 3 bars ago; needs 4
    signals = signals_on(table, 9)
    assert signals["NEW"]["state"] == "INSUFFICIENT_HISTORY"
    table = prices({"A": CLOSES, "NEW": [None] * 6 + [9, 9, 8, 8.5]})  # 4 bars: enough
    assert signals_on(table, 9)["NEW"]["state"] != "INSUFFICIENT_HISTORY"


def test_missing_adjustment_factor_is_no_data_with_the_reason():
    table = prices({"A": CLOSES}, {"A": [1.0] * 6 + [np.nan] + [1.0] * 3})
    signal = signals_on(table, 9)["A"]
    assert signal["state"] == "NO_DATA"
    assert "adjustment factor" in signal["note"]


def test_split_does_not_fake_a_death_cross():
    params = StrategyParams()  # 11 / 22
    rising = [2.0 + 0.01 * i for i in range(30)]
    # A 2-for-1 split on bar 25: the raw close halves and the cumulative factor doubles.
    closes = [c if i < 25 else round(c / 2, 3) for i, c in enumerate(rising)]
    factors = [1.0 if i < 25 else 2.0 for i in range(30)]
    adjusted = signals_on(prices({"A": closes}, {"A": factors}), 29, params)["A"]
    raw = signals_on(prices({"A": closes}), 29, params)["A"]
    assert raw["state"] in ("SELL", "EMPTY")  # what a moving average of raw closes would say
    assert adjusted["state"] == "HOLD"
    # Forward-adjusted: history is scaled to the latest factor, so the averages sit near today's price.
    assert adjusted["ma_short"] == pytest.approx(np.mean([c / 2 for c in rising[-11:]]), abs=0.002)


def test_signals_do_not_depend_on_where_a_range_starts():
    rng = np.random.default_rng(7)
    n = 700
    sessions = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    closes = np.round(3 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 3)
    factors = np.where(np.arange(n) > 400, 1.37, 1.0)
    table = pd.DataFrame(
        {"ts_code": "A", "trade_date": pd.to_datetime(sessions), "close": closes, "adj_factor": factors}
    )
    params = StrategyParams()
    days = sessions[320:]
    in_one_range = compute_indicators(table, sessions, days, params)
    for start in (320, 333, 500, 690):
        # A backfill starting later sees only the history its window needs.
        first_needed = start - params.window + 1
        later = compute_indicators(table.iloc[first_needed:], sessions[first_needed:], sessions[start:], params)
        expected = in_one_range[in_one_range["trade_date"] >= pd.Timestamp(sessions[start])].reset_index(drop=True)
        pd.testing.assert_frame_equal(later, expected, check_exact=True)


def test_averages_are_ta_libs_over_each_days_own_window_bit_for_bit():
    # All days are computed at once; each must equal TA-Lib run on that day's window alone, including
    # windows cut short by a late listing and holed by suspensions, across a factor change.
    rng = np.random.default_rng(11)
    n = 520
    sessions = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    traded = (np.arange(n) >= 30) & (rng.random(n) > 0.05)
    closes = np.round(2 * np.exp(np.cumsum(rng.normal(0, 0.012, n))), 3)
    factors = np.where(np.arange(n) > 250, 2.118, 1.0)
    table = pd.DataFrame(
        {"ts_code": "A", "trade_date": pd.to_datetime(sessions), "close": closes, "adj_factor": factors}
    )[traded]
    params = StrategyParams()
    result = compute_indicators(table, sessions, sessions, params).set_index("trade_date")
    for i in [30, 31, 40, 52, 260, 330, 519]:
        if not traded[i]:
            continue
        window = table[(table["trade_date"] > pd.Timestamp(sessions[max(0, i - params.window)]))
                       & (table["trade_date"] <= pd.Timestamp(sessions[i]))]  # fmt: skip
        adjusted = window["close"].to_numpy() * window["adj_factor"].to_numpy() / window["adj_factor"].iloc[-1]
        row = result.loc[pd.Timestamp(sessions[i])]
        for column, period in (("ma_short", params.short), ("ma_long", params.long)):
            expected = np.round(talib.SMA(adjusted, period), 3)[-1]
            assert (np.isnan(expected) and np.isnan(row[column])) or row[column] == expected, (i, column)


def test_crosses_older_than_the_recent_columns_are_found_in_the_whole_window(monkeypatch):
    # The latest crosses are first looked for in the last RECENT_COLUMNS days of each window: with that
    # narrowed to 2 days, nearly every day's crosses are older and found by the search of the whole window.
    rng = np.random.default_rng(5)
    n = 600
    sessions = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    closes = np.round(3 * np.exp(np.cumsum(rng.normal(0, 0.015, n))), 3)
    table = pd.DataFrame({"ts_code": "A", "trade_date": pd.to_datetime(sessions), "close": closes, "adj_factor": 1.0})
    params = StrategyParams()
    usual = compute_indicators(table, sessions, sessions[300:], params)
    monkeypatch.setattr(strategy, "RECENT_COLUMNS", 2)
    narrowed = compute_indicators(table, sessions, sessions[300:], params)
    assert usual["last_buy_date"].notna().all() and usual["last_sell_date"].notna().all()
    assert (usual["trade_date"] - usual[["last_buy_date", "last_sell_date"]].min(axis=1)).dt.days.max() > 2
    pd.testing.assert_frame_equal(narrowed, usual, check_exact=True)


def test_window_too_short_for_the_search_is_refused():
    with pytest.raises(ValueError, match="window=100"):
        StrategyParams(window=100)
    with pytest.raises(ValueError, match="short < long"):
        StrategyParams(short=22, long=11)


def test_worker_processes_compute_the_same_indicators(monkeypatch):
    # Many funds (more than one worker's share), late listings, suspensions and a factor change each.
    rng = np.random.default_rng(5)
    n = 400
    sessions = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    funds = [f"{510000 + i}.SH" for i in range(3 * FUNDS_PER_TASK)]
    tables = []
    for k, code in enumerate(funds):
        traded = (np.arange(n) >= k) & (rng.random(n) > 0.03)
        tables.append(pd.DataFrame({
            "ts_code": code, "trade_date": pd.to_datetime(sessions),
            "close": np.round(2 * np.exp(np.cumsum(rng.normal(0, 0.012, n))), 3),
            "adj_factor": np.where(np.arange(n) > 100 + k, 1.5, 1.0),
        })[traded])  # fmt: skip
    table = pd.concat(tables, ignore_index=True)
    days = sessions[200:]
    monkeypatch.setattr(workers, "MIN_ROWS_FOR_WORKERS", len(table))
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 2)
    by_workers = compute_indicators(table, sessions, days, StrategyParams())
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 1)
    here = compute_indicators(table, sessions, days, StrategyParams())
    assert set(by_workers["ts_code"]) == set(funds)
    pd.testing.assert_frame_equal(by_workers, here, check_exact=True)


def test_a_long_range_is_classified_in_batches_to_the_same_signals(monkeypatch):
    rng = np.random.default_rng(3)
    n = 360
    sessions = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    table = pd.concat([
        pd.DataFrame({"ts_code": code, "trade_date": pd.to_datetime(sessions),
                      "close": np.round(3 * np.exp(np.cumsum(rng.normal(0, 0.02, n))), 3), "adj_factor": 1.0})
        for code in ("A", "B", "C")
    ])  # fmt: skip
    universe = pd.DataFrame({"ts_code": ["C", "A", "B", "D"], "name": ["c", "a", "b", "not listed"]})
    days = sessions[20:]
    indicators = compute_indicators(table, sessions, days, SMALL)
    whole = classify(indicators, universe, days, SMALL)
    monkeypatch.setattr(strategy, "CLASSIFY_BATCH_DAYS", 7)
    batched = classify(indicators.sample(frac=1, random_state=1), universe, days, SMALL)  # any row order
    assert len(whole) == len(days) * len(universe) and set(whole["state"]) >= {"BUY", "SELL", "NO_DATA"}
    pd.testing.assert_frame_equal(batched, whole, check_exact=True)


def test_a_fund_twice_on_one_day_in_the_indicators_is_refused_by_name():
    table = prices({"A": CLOSES, "B": CLOSES})
    indicators = compute_indicators(table, DAYS[:10], [DAYS[9]], SMALL)
    doubled = pd.concat([indicators, indicators[indicators["ts_code"] == "B"]], ignore_index=True)
    universe = pd.DataFrame({"ts_code": ["A", "B"], "name": ["a", "b"]})
    with pytest.raises(ValueError, match=f"more than one row for B on {DAYS[9].isoformat()}"):
        classify(doubled, universe, [DAYS[9]], SMALL)
