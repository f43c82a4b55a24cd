"""The published tearsheets held to an independent computation: quantstats (a benchmark and test extra, never
the pipeline's dependency) on the same daily equity, with its periods set to 244.

Where quantstats defines a figure otherwise, the comparison asks it the same question: its ``drawdown_details``
end an episode on its last day under water, where the tearsheet names the day back at the peak, so each
episode's depth and trough are read from quantstats' drawdown series between the published peak and
recovery. The first bar's return is from the starting cash in both. The trade statistics are defined on
trades and stay out of it.

``python -m benchmarks.tearsheet --data DIR --site DIR`` prints, per figure, the largest difference over every
fund and the portfolio of a published site (``DIR``s: the pipeline's data and site directories).
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest import PORTFOLIO, ledger
from alchemy_pipeline.infrastructure.storage import LocalBlobStore

PERIODS = 244
SLEEVES = ("strategy", "buy_and_hold")


def independent_figures(equity: pd.DataFrame, start_value: float) -> dict:
    """quantstats' figures of a ledger's rows (``day``, ``strategy``, ``buy_and_hold`` at each bar)."""
    import quantstats as qs

    index = pd.DatetimeIndex(pd.to_datetime(equity["day"]))
    figures = {}
    returns = {}
    for sleeve in SLEEVES:
        values = equity[sleeve].to_numpy(float)
        r = pd.Series(values / np.concatenate(([start_value], values[:-1])) - 1, index=index)
        returns[sleeve] = r
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rolling = qs.stats.rolling_sharpe(r, rolling_period=PERIODS, periods_per_year=PERIODS)
            drawdown = qs.stats.to_drawdown_series(r)
            figures[sleeve] = {
                "sortino": qs.stats.sortino(r, periods=PERIODS),
                "monthly_returns": qs.utils.group_returns(r, [r.index.year, r.index.month], compounded=True),
                "yearly_returns": qs.utils.group_returns(r, r.index.year, compounded=True),
                "rolling_sharpe": rolling,
                "drawdown": drawdown,
            }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        greeks = qs.stats.greeks(returns["strategy"], returns["buy_and_hold"], periods=PERIODS)
    figures["relative"] = {"alpha": float(greeks["alpha"]), "beta": float(greeks["beta"])}
    return figures


def _gap(published, independent) -> float:
    """The absolute difference, 0 when both have no value, infinite when only one has."""
    missing = published is None, independent is None or not math.isfinite(independent)
    if all(missing):
        return 0.0
    if any(missing):
        return math.inf
    return abs(published - independent)


def differences(sheet: dict, independent: dict) -> dict[str, float]:
    """Per figure, the largest absolute difference between a published tearsheet and quantstats'."""
    gaps: dict[str, float] = {}

    def note(name: str, gap: float) -> None:
        gaps[name] = max(gaps.get(name, 0.0), gap)

    for sleeve in SLEEVES:
        mine, theirs = sheet[sleeve], independent[sleeve]
        note("sortino", _gap(mine["sortino"], theirs["sortino"]))
        months = {f"{y}-{m:02d}": v for (y, m), v in theirs["monthly_returns"].items()}
        assert set(months) == set(mine["monthly_returns"]), "the same months"
        for key, value in mine["monthly_returns"].items():
            note("monthly_returns", _gap(value, months[key]))
        years = {str(y): v for y, v in theirs["yearly_returns"].items()}
        assert set(years) == set(mine["yearly_returns"]), "the same years"
        for key, value in mine["yearly_returns"].items():
            note("yearly_returns", _gap(value, years[key]))
        rolling = theirs["rolling_sharpe"]
        for point in mine["rolling_sharpe"]:
            note("rolling_sharpe", _gap(point["value"], float(rolling[pd.Timestamp(point["day"])])))
        drawdown = theirs["drawdown"]
        for episode in mine["drawdowns"]:
            stretch = drawdown[pd.Timestamp(episode["peak"]) : pd.Timestamp(episode["recovery"] or drawdown.index[-1])]
            note("drawdowns.depth", _gap(episode["depth"], float(stretch.min())))
            # At the published trough, quantstats' drawdown is its deepest (a flat stretch in cash at the bottom
            # holds the same value to the last bit in the ledger, not in quantstats' compounded series).
            note("drawdowns.trough", float(stretch[pd.Timestamp(episode["trough"])] - stretch.min()))
    for name in ("alpha", "beta"):
        note(name, _gap(sheet["relative"][name], independent["relative"][name]))
    return gaps


def compare_site(data: Path, site: Path) -> dict[str, float]:
    """The largest differences over every tearsheet a site publishes (funds and portfolio)."""
    bars = ledger.bars(ledger.read(LocalBlobStore(data)))
    gaps: dict[str, float] = {}
    sheets = sorted((site / "backtests" / "tearsheets").glob("*.json"))
    funds = len(sheets) - 1
    for path in sheets:
        sheet = json.loads(path.read_text("utf-8"))
        document = json.loads((site / "backtests" / f"{sheet['as_of']}.json").read_text("utf-8"))
        cash = document["settings"]["cash"] * (funds if sheet["ts_code"] == PORTFOLIO else 1)
        equity = bars[(bars["ts_code"] == sheet["ts_code"]) & (bars["day"] <= sheet["as_of"])]
        if equity.empty:
            continue
        for name, gap in differences(sheet, independent_figures(equity, cash)).items():
            gaps[name] = max(gaps.get(name, 0.0), gap)
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--site", type=Path, required=True)
    args = parser.parse_args()
    print("| figure | largest difference from quantstats |\n|---|---:|")
    for name, gap in compare_site(args.data, args.site).items():
        print(f"| {name} | {gap:.2e} |")


if __name__ == "__main__":
    main()
