"""What the lab publishes: ``sweep.json`` (every pair of the portfolio and each fund, with its standing) and
``headline.json`` (the portfolio's standing: where the production pair ranks, whether the best pair held up,
how alike its neighbours are)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.lab.simulation import EQUITY_METRICS, PAIR_METRICS
from alchemy_pipeline.domain.lab.sweep import PERIODS, Sweep
from alchemy_pipeline.domain.numbers import python_round

# Robustness: the production pair's neighbours reach this far in each length, and count as alike when
# their out-of-sample Sharpe ratios are this close to its own.
NEIGHBOUR_REACH = 2
SHARPE_TOLERANCE = 0.2


def _pair(row: pd.Series, *columns: str) -> dict:
    return {"short": int(row["short"]), "long": int(row["long"]), **{c: _json_number(row[c]) for c in columns}}


def standing(rows: pd.DataFrame, production: tuple[int, int]) -> dict:
    """Where the production pair ranks by Sharpe ratio in and out of sample (1 the best; pairs without a
    Sharpe ratio are not ranked), how the best pair in sample did out of sample (it held up when it ranks in
    the top half there), and the robustness figure: the share of the production pair's neighbours (each
    length within ``NEIGHBOUR_REACH``; on the grid, short < long) whose out-of-sample Sharpe ratio is within
    ``SHARPE_TOLERANCE`` of its own (a neighbour without one is not alike)."""
    in_rank = rows["in_sample_sharpe"].rank(ascending=False, method="min")
    out_rank = rows["out_of_sample_sharpe"].rank(ascending=False, method="min")
    ranked = {"in_sample": int(in_rank.notna().sum()), "out_of_sample": int(out_rank.notna().sum())}
    is_production = (rows["short"] == production[0]) & (rows["long"] == production[1])
    result: dict = {"ranked": ranked, "production": None, "best_in_sample": None, "robustness": None}
    if is_production.any():
        i = rows.index[is_production][0]
        own = rows.at[i, "out_of_sample_sharpe"]
        result["production"] = {
            **_pair(rows.loc[i], "in_sample_sharpe", "out_of_sample_sharpe", "out_of_sample_cagr"),
            "in_sample_rank": _rank(in_rank[i]),
            "out_of_sample_rank": _rank(out_rank[i]),
        }
        near = (
            ((rows["short"] - production[0]).abs() <= NEIGHBOUR_REACH)
            & ((rows["long"] - production[1]).abs() <= NEIGHBOUR_REACH)
            & ~is_production
        )
        alike = int(((rows.loc[near, "out_of_sample_sharpe"] - own).abs() <= SHARPE_TOLERANCE).sum())
        result["robustness"] = {
            "neighbours": int(near.sum()),
            "alike": alike,
            "share": _json_number(alike / near.sum()) if near.any() and not math.isnan(own) else None,
            "reach": NEIGHBOUR_REACH,
            "sharpe_tolerance": SHARPE_TOLERANCE,
        }
    if ranked["in_sample"]:
        i = rows["in_sample_sharpe"].idxmax()
        rank = _rank(out_rank[i])
        result["best_in_sample"] = {
            **_pair(rows.loc[i], "in_sample_sharpe", "out_of_sample_sharpe", "out_of_sample_cagr"),
            "out_of_sample_rank": rank,
            "held_up": rank is not None and rank <= ranked["out_of_sample"] / 2,
        }
    return result


def _rank(value: float) -> int | None:
    return None if math.isnan(value) else int(value)


# Digits kept in the published JSON, as in the backtest's documents.
_DIGITS = {"fees": bt.MONEY_DIGITS, "trades": 0}


def _json_number(value, metric: str = "") -> float | int | None:
    if value is None or not math.isfinite(value):
        return None
    if metric == "trades":
        return int(value)
    return round(float(value), _DIGITS.get(metric, bt.FRACTION_DIGITS))


def _json_column(values: np.ndarray, metric: str) -> list:
    """A column as ``_json_number`` gives each value, a whole column at a time."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if metric == "trades":
        return [int(v) if ok else None for v, ok in zip(values.tolist(), finite.tolist(), strict=True)]
    rounded = python_round(np.where(finite, values, 0.0), _DIGITS.get(metric, bt.FRACTION_DIGITS))
    return [v if ok else None for v, ok in zip(rounded.tolist(), finite.tolist(), strict=True)]


def _pairs_json(rows: pd.DataFrame) -> list[dict]:
    periods = [
        [dict(zip(PAIR_METRICS, values, strict=True))
         for values in zip(*(_json_column(rows[f"{p}_{m}"].to_numpy(), m) for m in PAIR_METRICS), strict=True)]
        for p in PERIODS
    ]  # fmt: skip
    return [
        {"short": short, "long": long, **dict(zip(PERIODS, figures, strict=True))}
        for short, long, *figures in zip(rows["short"].tolist(), rows["long"].tolist(), *periods, strict=True)
    ]


def _hold_json(row: pd.Series) -> dict:
    return {p: {m: _json_number(row[f"{p}_{m}"]) for m in EQUITY_METRICS} for p in PERIODS}


def sweep_settings(sweep: Sweep) -> dict:
    return {
        **sweep.settings.as_json(),
        "in_sample": sweep.in_sample,
        "grid": sweep.grid.as_json(),
        "production": {"short": sweep.production[0], "long": sweep.production[1]},
        "walk_forward_folds": sweep.folds,
        "averages": "simple averages of the forward-adjusted close, exact and rounded half up to 3 decimals, as "
        "production computes them",
    }


def headline(sweep: Sweep) -> dict:
    """The sweep's summary: its period and settings, and the portfolio's standing (``standing``)."""
    p = sweep.period
    return {
        "start": p.start.isoformat(),
        "end": p.end.isoformat(),
        "split_day": p.split_day.isoformat(),
        "settings": sweep_settings(sweep),
        "portfolio": standing(sweep.rows(bt.PORTFOLIO), sweep.production),
    }


def sweep_document(sweep: Sweep) -> dict:
    """``sweep.json``: every pair's figures for the portfolio and each fund, buy-and-hold's, the standings
    and the walk-forward."""
    holds = {row["ts_code"]: row for _, row in sweep.buy_and_hold.iterrows()}
    entries = []
    for code, rows in sweep.table.groupby("ts_code", sort=False):
        entries.append(
            {
                "ts_code": code,
                "name": rows["name"].iloc[0],
                "standing": standing(rows, sweep.production),
                "buy_and_hold": _hold_json(holds[code]),
                "walk_forward": sweep.walk_forward.get(code),
                "pairs": _pairs_json(rows),
            }
        )
    portfolio, funds = entries[0], entries[1:]
    return {
        **{k: v for k, v in headline(sweep).items() if k != "portfolio"},
        "portfolio": {k: v for k, v in portfolio.items() if k not in ("ts_code", "name")},
        "funds": funds,
    }
