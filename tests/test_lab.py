"""The parameter lab's sweep, held to the backtest engine run pair by pair, and its refusals."""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest

from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain import lab
from alchemy_pipeline.domain.backtest import ledger
from alchemy_pipeline.domain.signals.rule import State
from alchemy_pipeline.domain.site.lab_page import render_lab_page
from alchemy_pipeline.domain.site.publish import LAB_HEADLINE, publish_sweep
from alchemy_pipeline.infrastructure.storage import LocalBlobStore
from tests.site_fixture import demo_prices

CODES = ["510300.SH", "159915.SZ", "512880.SH"]
UNIVERSE = pd.DataFrame({"ts_code": [*CODES, "588000.SH"], "name": ["沪深300ETF", "创业板ETF", "证券ETF", "科创50ETF"]})
END = dt.date(2021, 12, 31)
START = dt.date(2019, 1, 2)
GRID = lab.Grid(3, 7, 8, 13)
THOUSANDTH = Decimal("0.001")


def lab_prices() -> pd.DataFrame:
    """Three demo funds from 2018 (each with a split or consolidation): one suspended for six weeks, one
    listed in mid-2020; the universe's fourth fund has no bar at all."""
    prices = demo_prices(CODES)
    prices = prices[(prices["trade_date"] >= "2018-01-01") & (prices["trade_date"] <= "2022-06-30")]
    suspended = (prices["ts_code"] == CODES[1]) & prices["trade_date"].between("2020-03-02", "2020-04-15")
    young = (prices["ts_code"] == CODES[2]) & (prices["trade_date"] < "2020-06-01")
    return prices[~suspended & ~young].reset_index(drop=True)


def plain_signals(prices: pd.DataFrame, short: int, long: int) -> pd.DataFrame:
    """The sweep's rule written out bar by bar in decimal arithmetic: on bar i, the averages of bars i and
    i - 1 of close x factor over factor i, rounded half up to 3 decimals; the signals the backtest engine is
    given for one pair."""
    frames = []
    for code, bars in prices.groupby("ts_code"):
        bars = bars.sort_values("trade_date")
        factors = [Decimal(str(f)) for f in bars["adj_factor"].tolist()]
        scaled = [Decimal(str(c)) * f for c, f in zip(bars["close"].tolist(), factors, strict=True)]

        def average(n: int, end: int, factor: Decimal, scaled=scaled) -> Decimal | None:
            if end < n - 1:
                return None
            return (sum(scaled[end - n + 1 : end + 1]) / (n * factor)).quantize(THOUSANDTH, rounding=ROUND_HALF_UP)

        states = [State.HOLD]
        for i in range(1, len(scaled)):
            now_a, now_b = average(short, i, factors[i]), average(long, i, factors[i])
            then_a, then_b = average(short, i - 1, factors[i]), average(long, i - 1, factors[i])
            if then_a is None or then_b is None:
                states.append(State.HOLD)
            elif now_a > now_b and not then_a > then_b:
                states.append(State.BUY)
            elif now_a < now_b and not then_a < then_b:
                states.append(State.SELL)
            else:
                states.append(State.HOLD)
        frames.append(pd.DataFrame({"ts_code": code, "trade_date": bars["trade_date"].to_numpy(), "state": states}))
    return pd.concat(frames, ignore_index=True)


def engine_figures(prices, signals, settings, first: dt.date, as_of: dt.date) -> dict[str, dict | None]:
    """The backtest engine's strategy figures of each fund and the portfolio, for one pair's signals and one
    part of the period."""
    run = bt.run_backtest(prices, signals, UNIVERSE, settings_from(settings, first), trading_days(prices, first, as_of))
    (document,) = bt.documents(run, {}, only={as_of})
    figures = {fund["ts_code"]: fund["strategy"] for fund in document["funds"]}
    figures[bt.PORTFOLIO] = document["portfolio"]["strategy"]
    return figures


def trading_days(prices: pd.DataFrame, first: dt.date, last: dt.date) -> list[dt.date]:
    days = sorted(d.date() for d in prices["trade_date"].unique())
    return [d for d in days if first <= d <= last]


def settings_from(settings: bt.BacktestSettings, start: dt.date) -> bt.BacktestSettings:
    return bt.BacktestSettings(**{**settings.__dict__, "start": start})


@pytest.mark.parametrize(
    "settings",
    [
        bt.BacktestSettings(start=START),
        bt.BacktestSettings(start=START, execution=bt.CLOSE, slippage_bps=5, commission=0.001, min_commission=20),
    ],
    ids=["next-open", "close-with-costs"],
)
def test_every_cell_is_the_backtest_engine_run_on_that_pair(settings):
    prices = lab_prices()
    sweep = lab.run_sweep(prices, UNIVERSE, GRID, settings, END, in_sample=0.6)
    period = sweep.period
    assert (period.start, period.end) == (dt.date(2019, 1, 2), END)
    parts = {
        "full": (period.start, period.end),
        "in_sample": (period.start, period.last_in_sample),
        "out_of_sample": (period.split_day, period.end),
    }
    assert len(sweep.table) == 5 * len(GRID.pairs()) == 5 * 30
    for short, long in GRID.pairs().tolist():
        cell = sweep.table[(sweep.table["short"] == short) & (sweep.table["long"] == long)].set_index("ts_code")
        signals = plain_signals(prices, short, long)
        for part, (first, as_of) in parts.items():
            want = engine_figures(prices, signals, settings, first, as_of)
            for code, figures in want.items():
                for metric in lab.PAIR_METRICS:
                    got = cell.at[code, f"{part}_{metric}"]
                    if figures is None or figures[metric] is None:
                        assert np.isnan(got), (short, long, part, code, metric)
                    else:
                        # The engine's figures are published rounded: 6 places (fees: 2), half a unit either way.
                        tolerance = 0.0051 if metric == "fees" else 5.1e-7
                        assert got == pytest.approx(figures[metric], abs=tolerance), (short, long, part, code, metric)
    # The fund without bars has none in any part; the young fund none in sample before its listing.
    assert sweep.table.loc[sweep.table["ts_code"] == "588000.SH", "full_total_return"].isna().all()
    assert sweep.rows(CODES[2])["full_trades"].gt(0).all()


def openings(signals: pd.DataFrame) -> int:
    """The BUYs that open a trade when every BUY's lot is affordable: those not following another BUY."""
    moves = signals.loc[signals["state"].isin([State.BUY, State.SELL]), "state"].tolist()
    return sum(m == State.BUY and (i == 0 or moves[i - 1] != State.BUY) for i, m in enumerate(moves))


def test_a_row_whose_cash_cannot_buy_a_lot_is_traded_as_the_engine_trades_it():
    # 3,000 CNY buys a lot of a 4-yuan fund only while the strategy has not lost much: some BUYs then open no
    # trade, which the fast path leaves to the engine.
    prices = lab_prices()
    prices = prices[prices["ts_code"] == CODES[0]]
    universe = UNIVERSE.head(1)
    settings = bt.BacktestSettings(start=START, cash=3_000, min_commission=5)
    # A lot costs about what the cash is (prices quoted in thousandths, as ever).
    fund = prices.assign(close=(prices["close"] * 7).round(3), open=(prices["open"] * 7).round(3))
    sweep = lab.run_sweep(fund, universe, GRID, settings, END)
    unaffordable = 0
    for short, long in GRID.pairs().tolist():
        signals = plain_signals(fund, short, long)
        run = bt.run_backtest(fund, signals, universe, settings, trading_days(fund, START, END))
        unaffordable += len(bt.trade_lists(run, {})[CODES[0]]) < openings(
            signals[signals["trade_date"] >= pd.Timestamp(START)]
        )
        cell = sweep.table[(sweep.table["short"] == short) & (sweep.table["long"] == long)].set_index("ts_code")
        got = cell.at[CODES[0], "full_total_return"]
        (document,) = bt.documents(run, {}, only={END})
        assert got == pytest.approx(document["funds"][0]["strategy"]["total_return"], abs=5e-7)
    assert unaffordable  # the case was reached


def test_in_sample_figures_never_read_a_price_after_the_split():
    prices = lab_prices()
    settings = bt.BacktestSettings(start=START)
    before = lab.run_sweep(prices, UNIVERSE, GRID, settings, END, in_sample=0.5)
    # Every price from the split day on is changed beyond recognition.
    later = prices["trade_date"] >= pd.Timestamp(before.period.split_day)
    scrambled = prices.copy()
    rng = np.random.default_rng(7)
    for column in ("open", "close"):
        scrambled.loc[later, column] = np.round(scrambled.loc[later, column] * rng.uniform(0.5, 1.5, later.sum()), 3)
    after = lab.run_sweep(scrambled, UNIVERSE, GRID, settings, END, in_sample=0.5)
    assert after.period.split_day == before.period.split_day
    in_sample = [c for c in before.table.columns if c.startswith("in_sample_")]
    pd.testing.assert_frame_equal(before.table[in_sample], after.table[in_sample])
    out_of_sample = [c for c in before.table.columns if c.startswith("out_of_sample_")]
    assert not before.table[out_of_sample].equals(after.table[out_of_sample])


@pytest.mark.parametrize(
    "grid, message",
    [
        (dict(short_from=20, short_to=30, long_from=10, long_to=20), "no pair has short < long"),
        (dict(short_from=1, short_to=5), "short_from=1: an average needs a length of 2 or more"),
        (dict(long_from=10, long_to=0), "long_to=0: an average needs a length of 2 or more"),
        (dict(step=0), "step=0"),
        (dict(short_from=9, short_to=5), "short_from=9 is after short_to=5"),
    ],
)
def test_a_grid_without_pairs_fails_naming_the_problem(grid, message):
    with pytest.raises(lab.GridError, match=message):
        lab.Grid(**grid)


def test_lengths_longer_than_the_history_fail_before_any_work():
    prices = lab_prices()
    prices = prices[prices["trade_date"].between("2021-06-01", str(END))]
    bars = prices.groupby("ts_code").size().max()
    with pytest.raises(
        lab.GridError, match=f"long=400 is longer than the history: the fund with the most bars has {bars}"
    ):
        lab.run_sweep(prices, UNIVERSE, lab.Grid(long_to=400), bt.BacktestSettings(start=dt.date(2021, 6, 1)), END)


@pytest.mark.parametrize("share, message", [(1.0, "between 0 and 1"), (0.001, "each part needs 2 or more")])
def test_an_in_sample_share_that_leaves_a_part_empty_fails(share, message):
    with pytest.raises(lab.GridError, match=message):
        lab.run_sweep(lab_prices(), UNIVERSE, GRID, bt.BacktestSettings(start=START), END, in_sample=share)


def standing_rows(sharpes: dict[tuple[int, int], tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"short": s, "long": n, "in_sample_sharpe": a, "out_of_sample_sharpe": b, "out_of_sample_cagr": 0.1}
         for (s, n), (a, b) in sharpes.items()]
    )  # fmt: skip


def test_robustness_is_the_share_of_neighbours_whose_out_of_sample_sharpe_is_close():
    grid = [(s, n) for s in range(8, 15) for n in range(19, 26)]
    # The production pair 1.0 out of sample; neighbours 1.15 where short is odd (close), 0.5 where even.
    sharpes = {pair: (0.3, 1.15 if pair[0] % 2 else 0.5) for pair in grid}
    sharpes[(11, 22)] = (0.9, 1.0)
    sharpes[(14, 25)] = (2.0, 0.4)  # the best in sample, near the bottom out of sample (outside the +-2 square)
    result = lab.standing(standing_rows(sharpes), (11, 22))
    # Neighbours: shorts 9..13 x longs 20..24 less the pair itself: 24; close: shorts 9, 11, 13 -> 15 less itself.
    assert result["robustness"] == {"neighbours": 24, "alike": 14, "share": round(14 / 24, 6), "reach": 2,
                                    "sharpe_tolerance": 0.2}  # fmt: skip
    assert result["production"]["in_sample_rank"] == 2
    assert result["production"]["out_of_sample_rank"] == 1 + sum(b > 1.0 for _, b in sharpes.values())
    assert result["best_in_sample"]["short"] == 14 and result["best_in_sample"]["held_up"] is False
    assert result["best_in_sample"]["out_of_sample_rank"] == len(grid)


def test_a_grid_without_the_production_pair_says_so():
    result = lab.standing(standing_rows({(3, 10): (1.0, 1.0), (4, 10): (0.5, 2.0)}), (11, 22))
    assert result["production"] is None and result["robustness"] is None
    assert result["best_in_sample"] == {
        "short": 3, "long": 10, "in_sample_sharpe": 1.0, "out_of_sample_sharpe": 1.0, "out_of_sample_cagr": 0.1,
        "out_of_sample_rank": 2, "held_up": False,
    }  # fmt: skip


def test_the_published_sweep_has_the_documented_layout_and_its_page(tmp_path):
    prices = lab_prices()
    sweep = lab.run_sweep(prices, UNIVERSE, lab.Grid(9, 12, 20, 24), bt.BacktestSettings(start=START), END)
    store = LocalBlobStore(tmp_path)
    written = publish_sweep(store, sweep, "run-1")
    for folder in ("lab/run-1", "lab/latest"):
        assert {f"{folder}/{name}" for name in ("sweep.parquet", "sweep.json", "headline.json", "index.html")} <= set(
            written
        )
    document = json.loads((tmp_path / "lab/latest/sweep.json").read_text("utf-8"))
    assert (tmp_path / "lab/run-1/sweep.json").read_bytes() == (tmp_path / "lab/latest/sweep.json").read_bytes()
    assert {"start", "end", "split_day", "settings", "portfolio", "funds"} <= set(document)
    assert document["settings"]["in_sample"] == 0.7 and document["settings"]["commission"] == 0.00025
    assert [f["ts_code"] for f in document["funds"]] == list(UNIVERSE["ts_code"])
    pair = document["portfolio"]["pairs"][0]
    assert set(pair) == {"short", "long", "full", "in_sample", "out_of_sample"}
    assert set(pair["out_of_sample"]) == set(lab.PAIR_METRICS)
    assert len(document["portfolio"]["pairs"]) == len(lab.Grid(9, 12, 20, 24).pairs()) == 20
    table = pd.read_parquet(tmp_path / "lab/latest/sweep.parquet")
    portfolio = table[table["ts_code"] == bt.PORTFOLIO].set_index(["short", "long"])
    assert pair["out_of_sample"]["sharpe"] == round(
        portfolio.at[(pair["short"], pair["long"]), "out_of_sample_sharpe"], 6
    )
    headline = json.loads(store.get(LAB_HEADLINE))
    assert headline["portfolio"]["production"]["short"] == 11
    page = (tmp_path / "lab/latest/index.html").read_text("utf-8")
    assert page == render_lab_page(document, portfolio.reset_index())
    assert page.count('class="production"') == 2  # both heatmaps mark 11/22
    assert page.count("<rect") == 2 * (20 + 1)
    assert 'href="../../funds/510300.SH.html"' in page and 'src="../../static/site.js"' in page
    # The walk-forward: per fund and for the portfolio, each fold's days, choice and scores, and their summary.
    assert document["settings"]["walk_forward_folds"] == lab.DEFAULT_FOLDS
    for entry in (document["portfolio"], *document["funds"]):
        assert len(entry["walk_forward"]["folds"]) == lab.DEFAULT_FOLDS
        assert set(entry["walk_forward"]) == {"folds", "chosen", "production"}
    walk = document["portfolio"]["walk_forward"]
    assert page.count("<tr><td>") >= lab.DEFAULT_FOLDS and 'class="walk-forward"' in page
    assert f"当前参数 11/22 {walk['production']['mean']:.2f} ± {walk['production']['sd']:.2f}" in page


def test_each_walk_forward_fold_chooses_the_best_in_sample_pair_and_scores_it_on_the_next_stretch():
    prices = lab_prices()
    settings = bt.BacktestSettings(start=START)
    sweep = lab.run_sweep(prices, UNIVERSE, GRID, settings, END, folds=3, production=(5, 10))
    days = [d.isoformat() for d in trading_days(prices, START, END)]
    code = CODES[1]  # suspended for six weeks: its bars are not the period's days
    # The engine's equity of every pair at each of the fund's bars, from the backtest's own states.
    equity = {}
    for short, long in GRID.pairs().tolist():
        run = bt.run_backtest(
            prices, plain_signals(prices, short, long), UNIVERSE, settings, trading_days(prices, START, END)
        )
        rows = ledger.bars(ledger.ledger_rows(run.frame))
        equity[(short, long)] = rows[rows["ts_code"] == code].set_index("day")["strategy"]
    bars = equity[(5, 10)].index.tolist()

    def sharpe(values: pd.Series, first: str, last: str) -> float:
        returns = (values / values.shift(1, fill_value=settings.cash) - 1)[
            (values.index >= first) & (values.index <= last)
        ]
        return float(returns.mean() / returns.std(ddof=1) * np.sqrt(244)) if returns.std(ddof=1) > 0 else np.nan

    walk = sweep.walk_forward[code]
    assert len(walk["folds"]) == 3
    for k, fold in enumerate(walk["folds"], 1):
        # Anchored: in sample from the period's start; out of sample the k-th of four equal stretches.
        assert fold["in_sample"]["first"] == days[0]
        assert fold["out_of_sample"]["first"] == days[len(days) * k // 4]
        assert fold["out_of_sample"]["last"] == days[len(days) * (k + 1) // 4 - 1]
        assert days.index(fold["in_sample"]["last"]) + 1 == days.index(fold["out_of_sample"]["first"])
        in_sample = {pair: sharpe(e, days[0], fold["in_sample"]["last"]) for pair, e in equity.items()}
        best = max(in_sample, key=lambda pair: (in_sample[pair], -list(in_sample).index(pair)))
        assert (fold["chosen"]["short"], fold["chosen"]["long"]) == best
        stretch = (fold["out_of_sample"]["first"], fold["out_of_sample"]["last"])
        assert fold["chosen_out_of_sample_sharpe"] == pytest.approx(sharpe(equity[best], *stretch), abs=5e-5)
        assert fold["production_out_of_sample_sharpe"] == pytest.approx(sharpe(equity[(5, 10)], *stretch), abs=5e-5)
    scored = [f["production_out_of_sample_sharpe"] for f in walk["folds"]]
    assert walk["production"] == {
        "folds_scored": 3,
        "mean": pytest.approx(np.mean(scored), abs=1e-4),
        "sd": pytest.approx(np.std(scored, ddof=1), abs=1e-4),
    }
    assert set(bars) <= set(days) and len(bars) < len(days)
    assert set(sweep.walk_forward) == {bt.PORTFOLIO, *CODES, "588000.SH"}
    assert all(f["chosen"] is None for f in sweep.walk_forward["588000.SH"]["folds"]), "a fund without bars"


@pytest.mark.parametrize(
    ("folds", "message"),
    [
        (0, "folds=0: walk-forward needs 1 fold or more"),
        (
            600,
            r"folds=600: the period.s \d+ trading days, cut into 601 stretches, leave fewer than 2 days in a stretch",
        ),
    ],
)
def test_a_walk_forward_the_period_cannot_hold_fails_naming_it(folds, message):
    with pytest.raises(lab.GridError, match=message):
        lab.run_sweep(lab_prices(), UNIVERSE, GRID, bt.BacktestSettings(start=START), END, folds=folds)
