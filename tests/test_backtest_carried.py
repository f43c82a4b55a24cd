"""The backtest carried day to day: run in pieces, each from the state the piece before stored (through the
IO manager's Parquet files) and the trades it published, it gives every byte a run from the start gives;
a day held back from publication leaves no trace; and an independent reference agrees with it on
generated funds with splits, suspensions, a late listing and held-back days."""

import datetime as dt
import itertools
import tempfile

import dagster as dg
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alchemy_pipeline.defs.io_manager import LocalParquetIOManager
from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.signals.fast_path import classify, compute_indicators
from alchemy_pipeline.domain.signals.rule import RuleParams
from tests.backtest_reference import check_document, check_trades, reference
from tests.conftest import BUNDLED_DAYS, vendor_tables

DAYS = [d.date() for d in pd.bdate_range("2024-01-01", periods=80)]
RULE = {"name": "double_ma", "short": 11, "long": 22}
STATE = dg.AssetKey("etf_backtest")


@st.composite
def markets(draw):
    """A few funds' random bars and signals: late listings, suspensions, splits; and some days held back."""
    n_days = draw(st.integers(8, len(DAYS)))
    rows = []
    codes = [f"51{i:04d}.SH" for i in range(draw(st.integers(1, 4)))]
    for code in codes:
        listed = draw(st.integers(0, n_days // 2))
        price, factor = draw(st.floats(0.5, 5.0)), 1.0
        for i in range(listed, n_days):
            if draw(st.integers(0, 5)) == 0:
                continue  # suspended
            if draw(st.integers(0, 25)) == 0:
                price, factor = price / 2, factor * 2  # a 1:2 split
            price = round(max(0.05, price * (1 + draw(st.floats(-0.08, 0.08)))), 3)
            open_ = round(price * (1 + draw(st.floats(-0.02, 0.02))), 3)
            state = draw(st.sampled_from(["BUY", "SELL", "HOLD", "EMPTY", "BUY", "SELL", "NO_DATA"]))
            rows.append((code, pd.Timestamp(DAYS[i]), open_, price, factor, state))
    frame = pd.DataFrame(rows, columns=["ts_code", "trade_date", "open", "close", "adj_factor", "state"])
    # A fund of the universe may never trade at all.
    universe = pd.DataFrame({"ts_code": [*codes, "159999.SZ"], "name": [f"基金{c}" for c in [*codes, "159999.SZ"]]})
    held_back = set(draw(st.lists(st.sampled_from(DAYS[:n_days]), max_size=3)))
    cuts = sorted(set(draw(st.lists(st.integers(1, n_days - 1), min_size=1, max_size=3))))
    return frame, universe, DAYS[:n_days], held_back, cuts


def carried_in_pieces(frame, universe, days, held_back, cuts, settings_, store):
    """Each piece of days run as etf_backtest runs it: from the state stored for the day before, with the
    trades published so far kept up to the piece's first day. Every document, and the trades at the end."""
    state = bt.BacktestState.empty(settings_, universe, "fp")
    documents, published, frames = [], {}, []
    for first, end in itertools.pairwise([0, *cuts, len(days)]):
        piece = days[first:end]
        if first:
            stored = store.read_if_stored(STATE, days[first - 1].isoformat())
            state = bt.BacktestState.from_frame(stored, settings_, universe, "fp")
        kept = {code: bt.closed_before(trades, piece[0]) for code, trades in published.items()}
        assert all(len(kept.get(c, [])) == f.strategy.closed for c, f in zip(state.codes, state.funds, strict=True))
        run = bt.carry(state, bt.bars_by_day(frame, frame, state.codes, piece), piece, held_back)
        store.write(STATE, run.frame, [d.isoformat() for d in piece])
        documents += bt.documents(run, RULE)
        published = bt.trade_lists(run, kept)
        frames.append(run.frame)
    return documents, published, pd.concat(frames, ignore_index=True)


@settings(max_examples=40, deadline=None)
@given(markets(), st.sampled_from(["next_open", "close"]))
def test_a_backtest_carried_in_pieces_is_the_backtest_from_the_start(market, execution):
    frame, universe, days, held_back, cuts = market
    settings_ = bt.BacktestSettings(start=days[0], cash=20_000, execution=execution, slippage_bps=3)
    whole = bt.run_backtest(frame, frame, universe, settings_, days, held_back, "fp")
    with tempfile.TemporaryDirectory() as root:
        documents, trades, frames = carried_in_pieces(
            frame, universe, days, held_back, cuts, settings_, LocalParquetIOManager(base_dir=root)
        )
    pd.testing.assert_frame_equal(frames, whole.frame)
    assert documents == list(bt.documents(whole, RULE))
    assert trades == bt.trade_lists(whole, {})
    # Sums in universe order: the portfolio is the same whatever order the bars came in.
    shuffled = frame.sample(frac=1, random_state=1)
    reordered = bt.run_backtest(shuffled, shuffled, universe, settings_, days, held_back, "fp")
    assert list(bt.documents(reordered, RULE)) == documents


def one_fund(bars):
    """(day index, open, close, signal) of 510300.SH, factor 1."""
    frame = pd.DataFrame(
        [("510300.SH", pd.Timestamp(DAYS[i]), o, c, 1.0, s) for i, o, c, s in bars],
        columns=["ts_code", "trade_date", "open", "close", "adj_factor", "state"],
    )
    return frame, pd.DataFrame({"ts_code": ["510300.SH"], "name": ["沪深300ETF"]})


def test_a_held_back_day_is_no_bar_its_order_waits_and_it_stores_the_day_befores_state():
    frame, universe = one_fund(
        [(0, 1.0, 1.0, "EMPTY"), (1, 1.0, 1.0, "BUY"), (2, 0.5, 0.5, "HOLD"), (3, 1.2, 1.3, "HOLD")]
    )
    settings_ = bt.BacktestSettings(start=DAYS[0], cash=10_000)
    run = bt.run_backtest(frame, frame, universe, settings_, DAYS[:4], {DAYS[2]})
    (trade,) = bt.trade_lists(run, {})["510300.SH"]
    # The BUY of day 1 fills at the open of the next published bar (day 3), not at day 2's broken 0.5.
    assert (trade["entry_day"], trade["entry_price"]) == (DAYS[3].isoformat(), 1.2)
    assert [d["as_of"] for d in bt.documents(run, RULE)] == [DAYS[i].isoformat() for i in (0, 1, 3)]
    rows = run.frame[run.frame["ts_code"] == "510300.SH"].drop(columns="trade_date").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows.iloc[[2]].reset_index(drop=True), rows.iloc[[1]].reset_index(drop=True))
    # Nothing of day 2 in the figures either: its 50% fall is no drawdown.
    last = list(bt.documents(run, RULE))[-1]
    assert last["funds"][0]["buy_and_hold"]["max_drawdown"] > -0.01


def test_a_stored_state_of_other_settings_or_funds_is_not_carried_on():
    frame, universe = one_fund([(0, 1.0, 1.0, "BUY"), (1, 1.0, 1.1, "HOLD")])
    settings_ = bt.BacktestSettings(start=DAYS[0], cash=10_000)
    run = bt.run_backtest(frame, frame, universe, settings_, DAYS[:2], fingerprint_="old")
    with pytest.raises(bt.StateError, match="other settings, rule or universe"):
        bt.BacktestState.from_frame(run.frame.tail(2), settings_, universe, "new")
    with pytest.raises(bt.StateError, match="no state was stored"):
        bt.BacktestState.from_frame(pd.DataFrame(), settings_, universe, "old")
    # The fingerprint names what the figures depend on: each of these changes it.
    base = bt.fingerprint(settings_, RULE, ["510300.SH"], 2)
    assert len({
        base,
        bt.fingerprint(bt.BacktestSettings(start=DAYS[0], cash=10_000, commission=0.0003), RULE, ["510300.SH"], 2),
        bt.fingerprint(bt.BacktestSettings(start=DAYS[1], cash=10_000), RULE, ["510300.SH"], 2),
        bt.fingerprint(settings_, {**RULE, "short": 10}, ["510300.SH"], 2),
        bt.fingerprint(settings_, RULE, ["510300.SH", "159915.SZ"], 2),
        bt.fingerprint(settings_, RULE, ["510300.SH"], 3),
    }) == 6  # fmt: skip


FUNDS = ["510300.SH", "159915.SZ", "512880.SH", "513500.SH", "588000.SH", "510500.SH"]
START, END = dt.date(2021, 1, 4), dt.date(2023, 6, 30)


def generated_market():
    """Six funds' demo prices over 2.5 years with the rule's signals: one lists late, one is suspended for a
    fortnight, one splits 1:2 while the strategy may hold it; and two days held back."""
    tables = vendor_tables(FUNDS, "2019-06-03", END.isoformat())
    prices = tables["fund_daily"].merge(tables["fund_adj"], on=["ts_code", "trade_date"])
    prices["trade_date"] = pd.to_datetime(prices["trade_date"], format="%Y%m%d")
    late = (prices["ts_code"] == "588000.SH") & (prices["trade_date"] < pd.Timestamp("2022-03-01"))
    gap = (prices["ts_code"] == "513500.SH") & prices["trade_date"].between("2022-06-06", "2022-06-17")
    prices = prices[~late & ~gap].reset_index(drop=True)
    split = (prices["ts_code"] == "512880.SH") & (prices["trade_date"] >= pd.Timestamp("2022-06-15"))
    for column in ("open", "high", "low", "close"):
        prices.loc[split, column] = (prices.loc[split, column] / 2).round(3)
    prices.loc[split, "adj_factor"] *= 2
    sessions = BUNDLED_DAYS.calendar.sessions("2019-06-03", END)
    days = [d for d in sessions if d >= START]
    universe = pd.DataFrame({"ts_code": FUNDS, "name": FUNDS})
    params = RuleParams()
    signals = classify(compute_indicators(prices, sessions, days, params), universe, days, params)
    return prices, signals, universe, days


def test_an_independent_reference_agrees_on_generated_funds_with_splits_suspensions_and_held_back_days():
    prices, signals, universe, days = generated_market()
    held_back = {dt.date(2022, 4, 6), dt.date(2022, 11, 15)}
    settings_ = bt.BacktestSettings(start=START)
    run = bt.run_backtest(prices, signals, universe, settings_, days, held_back)
    documents = list(bt.documents(run, RULE))
    assert {d["as_of"] for d in documents}.isdisjoint(d.isoformat() for d in held_back)
    merged = prices.merge(signals[["ts_code", "trade_date", "state"]], on=["ts_code", "trade_date"])
    merged = merged[merged["trade_date"].dt.date.between(START, END) & ~merged["trade_date"].dt.date.isin(held_back)]
    usable = merged[(merged["open"] > 0) & (merged["close"] > 0) & (merged["adj_factor"] > 0)]
    bars = {
        code: [(d.date(), o, c, f, s) for d, o, c, f, s in rows[["trade_date", "open", "close", "adj_factor", "state"]]
               .sort_values("trade_date").itertuples(index=False)]
        for code, rows in usable.groupby("ts_code")
    }  # fmt: skip
    model = {**settings_.as_json(), "start": START}
    mismatches = []
    for document in [*documents[::20], documents[-1]]:
        check_document(document, reference(bars, FUNDS, model, dt.date.fromisoformat(document["as_of"])), mismatches)
    final = reference(bars, FUNDS, model, END)
    for code, trades in bt.trade_lists(run, {}).items():
        check_trades(code, trades, final["funds"][code]["trades"], mismatches)
    assert not mismatches, mismatches[:10]
    # Worth checking: trades happened, across the split too, with gains and losses.
    closed = [t for f in final["funds"].values() if f for t in f["trades"] if "exit_day" in t]
    assert len(closed) > 40
    assert any(t["entry_day"] < dt.date(2022, 6, 15) < t["exit_day"] for t in final["funds"]["512880.SH"]["trades"])


def test_documents_of_consecutive_runs_written_in_worker_processes_are_the_run_from_the_starts():
    # etf_backtest carries a long range a year at a time and writes its documents in worker processes meanwhile.
    prices, signals, universe, days = generated_market()
    held_back = {dt.date(2022, 4, 6)}
    settings_ = bt.BacktestSettings(start=START)
    whole = bt.run_backtest(prices, signals, universe, settings_, days, held_back)
    cut = days.index(dt.date(2022, 7, 1))
    state, runs = bt.BacktestState.empty(settings_, universe, ""), []
    for piece in (days[:cut], days[cut:]):
        runs.append(bt.carry(state, bt.bars_by_day(prices, signals, state.codes, piece), piece, held_back))
        state = runs[-1].state
    only = set(days[::3])
    in_workers = list(bt.runs_document_files(runs, RULE, only, in_processes=True))
    assert in_workers == list(bt.document_files(whole, RULE, only))
    assert len(in_workers) == len(only - held_back) > 50
