"""An independent reference of the backtest, written apart from ``alchemy_pipeline.domain.backtest``.

Plain Python, no NumPy, another shape: one pass per fund with a position held as adjusted units that
grow with the factor day by day, lots counted up one at a time, figures computed at the end from the whole
equity list with ``statistics``. It reads the documented model (docs/backtest.md), not the pipeline's code.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections import deque


def fee(value: float, s: dict) -> float:
    return max(s["commission"] * value, s["min_commission"])


def lots_affordable(price: float, cash: float, s: dict) -> int:
    lots = 0
    while (lots + 1) * s["lot"] * price + fee((lots + 1) * s["lot"] * price, s) <= cash:
        lots += 1
    return lots


def simulate(bars: list[tuple], s: dict, follow: bool) -> tuple[list[float], list[bool], list[dict], float]:
    """``bars``: (day, open, close, factor, state) in day order. The equity at each close, whether held at
    each close, the trades, and the fees paid. ``follow`` False: buy at the first open and hold."""
    cash, units, fees, trades = s["cash"], 0.0, 0.0, []
    order, last_factor = None, None
    equity, held = [], []
    slip = s["slippage_bps"] / 10_000

    def buy(signal_day, day, price):
        nonlocal cash, units, fees
        paid = price * (1 + slip)
        lots = lots_affordable(paid, cash, s)
        if lots:
            shares = lots * s["lot"]
            f = fee(shares * paid, s)
            cash -= shares * paid + f
            fees += f
            units = float(shares)
            trades.append({"signal_day": signal_day, "entry_day": day, "entry_price": paid, "shares": shares,
                           "entry_fee": f, "paid": shares * paid + f})  # fmt: skip

    def sell(signal_day, day, price):
        nonlocal cash, units, fees
        got = units * price * (1 - slip)
        f = fee(got, s)
        cash += got - f
        fees += f
        trades[-1].update(exit_signal_day=signal_day, exit_day=day, exit_price=price * (1 - slip), exit_fee=f,
                          received=got - f)  # fmt: skip
        units = 0.0

    for n, (day, open_, close, factor, state) in enumerate(bars):
        if units and last_factor is not None:
            units *= factor / last_factor  # splits and distributions: more units, same value
        last_factor = factor
        if not follow and n == 0:
            buy(day, day, open_)
        if follow and order is not None:
            side, signal_day = order
            buy(signal_day, day, open_) if side == "BUY" else sell(signal_day, day, open_)
            order = None
        if follow and ((state == "BUY" and not units) or (state == "SELL" and units)):
            if s["execution"] == "close":
                buy(day, day, close) if state == "BUY" else sell(day, day, close)
            else:
                order = (state, day)
        equity.append(cash + units * close)
        held.append(units > 0)
    if trades and "exit_day" not in trades[-1]:
        trades[-1]["open_value"] = units * bars[-1][2]
    return equity, held, trades, fees


def curve_figures(days: list[dt.date], equity: list[float], start_value: float, as_of: dt.date) -> dict:
    values = [start_value, *equity]
    returns = [b / a - 1 for a, b in itertools.pairwise(values)]
    total = equity[-1] / start_value - 1
    span = (days[-1] - days[0]).days  # to the last bar: a fund suspended since is not growing at a rate
    growth = None if span < 365 else (1 + total) ** (365.25 / span) - 1
    worst, peak, peak_day, worst_days = 0.0, start_value, days[0], (None, None)
    for day, value in zip(days, equity, strict=True):
        if value > peak:
            peak, peak_day = value, day
        if value / peak - 1 < worst:
            worst, worst_days = value / peak - 1, (peak_day, day)
    sd = statistics.stdev(returns) if len(returns) > 1 else None
    return {
        "total_return": total,
        "cagr": growth,
        "max_drawdown": worst,
        "max_drawdown_peak": worst_days[0],
        "max_drawdown_trough": worst_days[1],
        "volatility": None if sd is None else sd * math.sqrt(244),
        "sharpe": None if not sd else statistics.mean(returns) / sd * math.sqrt(244),
        "calmar": None if growth is None or worst == 0 else growth / -worst,
    }


def trade_return(trade: dict) -> float:
    got = trade["received"] if "exit_day" in trade else trade["open_value"]
    return got / trade["paid"] - 1


def reference(bars_by_fund: dict[str, list[tuple]], codes: list[str], s: dict, as_of: dt.date) -> dict:
    """Every fund's figures and trades as of ``as_of`` and the equal-weight portfolio's figures."""
    funds, curves = {}, {}
    for code in codes:
        bars = [b for b in bars_by_fund.get(code, []) if s["start"] <= b[0] <= as_of]
        if not bars:
            funds[code] = None
            continue
        days = [b[0] for b in bars]
        out = {"first_day": days[0], "days": days}
        for name, follow in (("strategy", True), ("buy_and_hold", False)):
            equity, held, trades, fees = simulate(bars, s, follow)
            out[name] = curve_figures(days, equity, s["cash"], as_of)
            out[name + "_equity"] = equity
            curves.setdefault(name, {})[code] = dict(zip(days, equity, strict=True))
            if follow:
                closed = [t for t in trades if "exit_day" in t]
                out["trades"] = trades
                out["strategy"].update(
                    trades=len(trades),
                    win_rate=sum(trade_return(t) > 0 for t in closed) / len(closed) if closed else None,
                    exposure=sum(held) / len(held),
                    fees=fees,
                )
        funds[code] = out
    every_day = sorted({d for code in codes if funds[code] for d in funds[code]["days"]})
    portfolio = {}
    for name in ("strategy", "buy_and_hold"):
        latest = {code: s["cash"] for code in codes}  # a sleeve's equity at its last close so far
        pending = {code: deque(sorted(curves.get(name, {}).get(code, {}).items())) for code in codes}
        totals = []
        for day in every_day:
            for code in codes:
                while pending[code] and pending[code][0][0] <= day:
                    latest[code] = pending[code].popleft()[1]
            totals.append(sum(latest[code] for code in codes))
        portfolio[name] = curve_figures(every_day, totals, s["cash"] * len(codes), as_of)
    traded = [funds[c] for c in codes if funds[c]]
    closed = [t for f in traded for t in f["trades"] if "exit_day" in t]
    portfolio["strategy"].update(
        trades=sum(f["strategy"]["trades"] for f in traded),
        win_rate=sum(trade_return(t) > 0 for t in closed) / len(closed) if closed else None,
        exposure=sum(f["strategy"]["exposure"] * len(f["days"]) for f in traded) / sum(len(f["days"]) for f in traded),
        fees=sum(f["strategy"]["fees"] for f in traded),
    )
    return {"funds": funds, "portfolio": portfolio}


def agree(got, want, where: str, mismatches: list) -> None:
    """Notes in ``mismatches`` a published figure that is not the reference's, within its rounding."""
    if isinstance(want, dt.date):
        want = want.isoformat()
    if isinstance(want, float) and got is not None:
        # The published figures are rounded: fractions to 6 places, prices to 4, money (fees) to 2.
        if abs(got - want) > (0.0051 if where.endswith("fees") else 1e-5 * max(1.0, abs(want))):
            mismatches.append((where, got, want))
    elif got != want:
        mismatches.append((where, got, want))


def check_document(document: dict, want: dict, mismatches: list) -> None:
    """A published backtest document against ``reference`` as of its day."""
    day = document["as_of"]
    for sleeve in ("strategy", "buy_and_hold"):
        for metric, value in want["portfolio"][sleeve].items():
            agree(document["portfolio"][sleeve][metric], value, f"{day} portfolio {sleeve} {metric}", mismatches)
    for fund in document["funds"]:
        expected = want["funds"][fund["ts_code"]]
        if expected is None:
            agree(fund["first_day"], None, f"{day} {fund['ts_code']} first_day", mismatches)
            continue
        for sleeve in ("strategy", "buy_and_hold"):
            for metric, value in expected[sleeve].items():
                agree(fund[sleeve][metric], value, f"{day} {fund['ts_code']} {sleeve} {metric}", mismatches)
        agree(fund["first_day"], expected["first_day"], f"{day} {fund['ts_code']} first_day", mismatches)


def check_trades(code: str, published: list[dict], trades: list[dict], mismatches: list) -> None:
    """A fund's published trades against the reference's."""
    if len(published) != len(trades):
        mismatches.append((f"{code} trades", len(published), len(trades)))
        return
    for got, t in zip(published, trades, strict=True):
        closed = "exit_day" in t
        want = {
            "signal_day": t["signal_day"], "entry_day": t["entry_day"], "entry_price": t["entry_price"],
            "exit_signal_day": t.get("exit_signal_day"), "exit_day": t.get("exit_day"),
            "exit_price": t.get("exit_price"), "shares": t["shares"],
            "fees": t["entry_fee"] + (t["exit_fee"] if closed else 0.0), "return": trade_return(t),
        }  # fmt: skip
        for key, value in want.items():
            agree(got[key], value, f"{code} trade {t['entry_day']} {key}", mismatches)
