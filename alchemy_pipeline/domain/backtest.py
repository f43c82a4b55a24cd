"""The backtest: every fund's published BUY and SELL days traded with China ETF costs, against holding it.

The model (the README's "The backtest" says it for users):

- A signal published for day D fills at the open of the fund's next bar after D (``next_open``; a
  suspended fund waits), or at D's own close (``close``, optimistic: the close is known only once it is
  over). Long only, all in on BUY, all out on SELL; a BUY while in and a SELL while out do nothing. Only a
  BUY inside the period enters: a regime running at its start is not entered.
- Fills are at real traded prices, moved against the trader by the slippage. Once bought, a position
  follows the forward-adjusted price (``shares * factor / factor at entry``), so splits, consolidations and
  distributions neither look like crashes nor vanish. A buy takes the whole lots the cash pays for, the
  commission ``max(rate x value, minimum)`` included; ETFs pay no stamp duty; idle cash earns nothing.
- Buy-and-hold buys at the open of the fund's first bar in the period, with the same lots and costs.
- Equity is marked at each of the fund's bar closes; an open position at the end is valued at the last
  close, without an exit fee. The portfolio is one sleeve per fund of the universe, each with the same
  starting cash (kept idle until the fund's first bar), and its equity is the sum of the sleeves.

Everything is computed a bar at a time, in order, and the figures as of day D read nothing after D: a day's
figures are the same whichever run computed them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
from array import array
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.strategy import State

NEXT_OPEN, CLOSE = "next_open", "close"
EXECUTIONS = (NEXT_OPEN, CLOSE)
# Trading days in a year, to annualise daily volatility and Sharpe ratios.
TRADING_DAYS_PER_YEAR = 244
DAYS_PER_YEAR = 365.25
PRICE_COLUMNS = ["ts_code", "trade_date", "open", "close", "adj_factor"]
SIGNAL_COLUMNS = ["ts_code", "trade_date", "state"]
# The code of the portfolio's rows in the figures table (no fund's code looks like it).
PORTFOLIO = "PORTFOLIO"


@dataclass(frozen=True)
class BacktestSettings:
    start: dt.date
    execution: str = NEXT_OPEN
    cash: float = 100_000.0
    commission: float = 0.00025
    min_commission: float = 5.0
    slippage_bps: float = 0.0
    lot: int = 100

    def __post_init__(self):
        if self.execution not in EXECUTIONS:
            raise ValueError(f"execution={self.execution!r}: use one of {', '.join(EXECUTIONS)}")

    def fee(self, value: float) -> float:
        return max(self.commission * value, self.min_commission)

    def as_json(self) -> dict:
        return {
            "execution": self.execution,
            "cash": self.cash,
            "commission": self.commission,
            "min_commission": self.min_commission,
            "slippage_bps": self.slippage_bps,
            "lot": self.lot,
        }


@dataclass
class Trade:
    """One round trip; the exit fields stay None while it is open."""

    signal_day: dt.date
    entry_day: dt.date
    entry_price: float  # paid per share, slippage included
    shares: int
    entry_factor: float
    entry_fee: float
    exit_signal_day: dt.date | None = None
    exit_day: dt.date | None = None
    exit_price: float | None = None  # received per share, slippage included
    proceeds: float | None = None  # the value sold, before its fee
    exit_fee: float = 0.0

    @property
    def cost(self) -> float:
        return self.shares * self.entry_price

    def value(self, factor: float, price: float) -> float:
        """What the position is worth at ``price`` on a bar whose adjustment factor is ``factor``."""
        return self.shares * (factor / self.entry_factor) * price

    def net_return(self, value: float | None = None) -> float:
        """Net of fees: of the exit, or of an open position worth ``value`` (marked without an exit fee)."""
        got = self.proceeds - self.exit_fee if value is None else value
        return got / (self.cost + self.entry_fee) - 1


@dataclass
class Sleeve:
    """One fund's cash, simulated bar by bar: its equity at every bar's close and its trades."""

    equity: np.ndarray
    in_market: np.ndarray  # held at the bar's close
    fees: np.ndarray  # paid up to and including the bar
    trades: list[Trade]


class _Book:
    """The cash and the position of one sleeve while it is simulated."""

    def __init__(self, settings: BacktestSettings):
        self.settings = settings
        self.cash = settings.cash
        self.fees = 0.0
        self.position: Trade | None = None
        self.trades: list[Trade] = []

    def buy(self, signal_day: dt.date, day: dt.date, price: float, factor: float) -> None:
        s = self.settings
        paid = price * (1 + s.slippage_bps / 10_000)
        lots = int(self.cash // (paid * s.lot * (1 + s.commission))) + 1
        while lots > 0 and lots * s.lot * paid + s.fee(lots * s.lot * paid) > self.cash:
            lots -= 1
        if lots == 0:
            return  # not one lot affordable: the cash stays idle
        shares = lots * s.lot
        fee = s.fee(shares * paid)
        self.cash -= shares * paid + fee
        self.fees += fee
        self.position = Trade(signal_day, day, paid, shares, factor, fee)
        self.trades.append(self.position)

    def sell(self, signal_day: dt.date, day: dt.date, price: float, factor: float) -> None:
        s, trade = self.settings, self.position
        received = price * (1 - s.slippage_bps / 10_000)
        proceeds = trade.value(factor, received)
        fee = s.fee(proceeds)
        self.cash += proceeds - fee
        self.fees += fee
        trade.exit_signal_day, trade.exit_day, trade.exit_price = signal_day, day, received
        trade.proceeds, trade.exit_fee = proceeds, fee
        self.position = None

    def equity(self, factor: float, close: float) -> float:
        return self.cash + (self.position.value(factor, close) if self.position else 0.0)


@dataclass(frozen=True)
class FundBars:
    """One fund's usable bars in the period, in day order, with the signal published for each day."""

    days: list[dt.date]
    opens: np.ndarray
    closes: np.ndarray
    factors: np.ndarray
    states: list[str]


def follow_signals(bars: FundBars, settings: BacktestSettings) -> Sleeve:
    """The strategy's sleeve: the signals traded as the module says."""
    book = _Book(settings)
    pending: tuple[str, dt.date] | None = None
    equity, in_market, fees = [], [], []
    for day, open_, close, factor, state in zip(
        bars.days, bars.opens.tolist(), bars.closes.tolist(), bars.factors.tolist(), bars.states, strict=True
    ):
        if pending is not None:  # the order of the fund's previous bar fills at this open
            side, signal_day = pending
            (book.buy if side == State.BUY else book.sell)(signal_day, day, open_, factor)
            pending = None
        if (state == State.BUY and book.position is None) or (state == State.SELL and book.position is not None):
            if settings.execution == CLOSE:
                (book.buy if state == State.BUY else book.sell)(day, day, close, factor)
            else:
                pending = (state, day)
        equity.append(book.equity(factor, close))
        in_market.append(book.position is not None)
        fees.append(book.fees)
    return Sleeve(np.array(equity), np.array(in_market, dtype=bool), np.array(fees), book.trades)


def buy_and_hold(bars: FundBars, settings: BacktestSettings) -> Sleeve:
    """The benchmark's sleeve: bought at the open of the fund's first bar, held to the end."""
    book = _Book(settings)
    if bars.days:
        book.buy(bars.days[0], bars.days[0], float(bars.opens[0]), float(bars.factors[0]))
    factors, closes = bars.factors.tolist(), bars.closes.tolist()
    equity = [book.equity(f, c) for f, c in zip(factors, closes, strict=True)]
    held = book.position is not None
    return Sleeve(np.array(equity), np.full(len(equity), held), np.full(len(equity), book.fees), book.trades)


@dataclass(frozen=True)
class RunningStats:
    """Figures of an equity series as of each of its points (each reads only the points up to it). Arrays, not
    lists: a large universe holds millions of points."""

    total_return: np.ndarray
    max_drawdown: np.ndarray
    peak_index: np.ndarray  # of the worst drawdown so far; -1: the starting cash
    trough_index: np.ndarray  # -1: no drawdown yet
    volatility: np.ndarray  # NaN before the second point
    sharpe: np.ndarray  # NaN too while the returns have not varied


def running_stats(equity: np.ndarray, start_value: float) -> RunningStats:
    """Returns of each point over the one before (the first over the starting value); the drawdown from the
    highest point so far, the starting value included; the sample standard deviation of the returns
    (Welford's running form), annualised with ``TRADING_DAYS_PER_YEAR``; the risk-free rate 0."""
    n = len(equity)
    stats = RunningStats(*(np.full(n, np.nan) for _ in range(2)), *(np.full(n, -1) for _ in range(2)),
                         *(np.full(n, np.nan) for _ in range(2)))  # fmt: skip
    peak, peak_i, worst, worst_peak, worst_trough = start_value, -1, 0.0, -1, -1
    previous, count, mean, m2 = start_value, 0, 0.0, 0.0
    annual = math.sqrt(TRADING_DAYS_PER_YEAR)
    for i, value in enumerate(equity.tolist()):
        r = value / previous - 1
        previous, count = value, count + 1
        delta = r - mean
        mean += delta / count
        m2 += delta * (r - mean)
        if value > peak:
            peak, peak_i = value, i
        drawdown = value / peak - 1
        if drawdown < worst:
            worst, worst_peak, worst_trough = drawdown, peak_i, i
        stats.total_return[i] = value / start_value - 1
        stats.max_drawdown[i] = worst
        stats.peak_index[i], stats.trough_index[i] = worst_peak, worst_trough
        if count > 1:
            sd = math.sqrt(m2 / (count - 1))
            stats.volatility[i] = sd * annual
            if sd:
                stats.sharpe[i] = mean / sd * annual
    return stats


# Returns over less than a year are not annualised (as the GIPS standards require): a week's gain would
# read as thousands of percent a year.
MIN_DAYS_TO_ANNUALISE = 365


def cagr(total_return: float, first_day: dt.date, as_of: dt.date) -> float | None:
    """Compound annual growth over the calendar days from ``first_day`` to ``as_of``; None under a year."""
    days = (as_of - first_day).days
    if days < MIN_DAYS_TO_ANNUALISE:
        return None
    if total_return <= -1:
        return -1.0
    try:
        growth = math.exp(math.log1p(total_return) * DAYS_PER_YEAR / days) - 1
    except OverflowError:
        return None
    return growth


def calmar(growth: float | None, max_drawdown: float) -> float | None:
    return None if growth is None or max_drawdown >= 0 else growth / -max_drawdown


def _number(value: float, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


FRACTION_DIGITS = 6
PRICE_DIGITS = 4
MONEY_DIGITS = 2


def _day(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def equity_figures(
    stats: RunningStats, i: int, days: list[dt.date], first_day: dt.date, as_of: dt.date
) -> dict[str, float | str | None]:
    """The figures every equity curve gets, as of its point ``i`` (the last on or before ``as_of``)."""
    total, worst = float(stats.total_return[i]), float(stats.max_drawdown[i])
    growth = cagr(total, first_day, as_of)
    peak, trough = int(stats.peak_index[i]), int(stats.trough_index[i])
    return {
        "total_return": _number(total, FRACTION_DIGITS),
        "cagr": _number(growth, FRACTION_DIGITS),
        "max_drawdown": _number(worst, FRACTION_DIGITS),
        "max_drawdown_peak": None if trough < 0 else _day(days[peak] if peak >= 0 else first_day),
        "max_drawdown_trough": None if trough < 0 else _day(days[trough]),
        "volatility": _number(float(stats.volatility[i]), FRACTION_DIGITS),
        "sharpe": _number(float(stats.sharpe[i]), FRACTION_DIGITS),
        "calmar": _number(calmar(growth, worst), FRACTION_DIGITS),
    }


def trade_json(trade: Trade, open_value: float | None = None) -> dict:
    """A trade as published; an open one (exit fields None) with its return marked at ``open_value``."""
    closed = trade.exit_day is not None and open_value is None
    return {
        "signal_day": _day(trade.signal_day),
        "entry_day": _day(trade.entry_day),
        "entry_price": _number(trade.entry_price, PRICE_DIGITS),
        "exit_signal_day": _day(trade.exit_signal_day) if closed else None,
        "exit_day": _day(trade.exit_day) if closed else None,
        "exit_price": _number(trade.exit_price, PRICE_DIGITS) if closed else None,
        "shares": trade.shares,
        "fees": _number(trade.entry_fee + (trade.exit_fee if closed else 0.0), MONEY_DIGITS),
        "return": _number(trade.net_return(None if closed else open_value), FRACTION_DIGITS),
    }


def _win_rate(wins: int, closed: int) -> float | None:
    return _number(wins / closed, FRACTION_DIGITS) if closed else None


class FundBacktest:
    """One fund's two sleeves over its bars in the period, their running figures, and the figures as of a day."""

    def __init__(self, ts_code: str, name: str, bars: FundBars, settings: BacktestSettings):
        self.ts_code, self.name, self.bars = ts_code, name, bars
        self.strategy, self.hold = follow_signals(bars, settings), buy_and_hold(bars, settings)
        self.strategy_stats = running_stats(self.strategy.equity, settings.cash)
        self.hold_stats = running_stats(self.hold.equity, settings.cash)
        self.bars_in_market = np.cumsum(self.strategy.in_market)
        trades = self.strategy.trades
        self._entries = [t.entry_day for t in trades]
        # Exits come in the order of the trades, each after the one before: in order too.
        closed = [t for t in trades if t.exit_day is not None]
        self._exits = [t.exit_day for t in closed]
        # Of the first k closed trades, how many gained.
        self._wins = [0, *itertools.accumulate(t.net_return() > 0 for t in closed)]

    def last_bar(self, as_of: dt.date) -> int:
        """The index of the fund's last bar on or before ``as_of``; -1 before its first."""
        return bisect.bisect_right(self.bars.days, as_of) - 1

    def trades_as_of(self, as_of: dt.date) -> tuple[int, int, Trade | None]:
        """How many trades were closed by ``as_of`` and how many of them gained, and the one open then (None
        if out of the market)."""
        entered = bisect.bisect_right(self._entries, as_of)
        closed = bisect.bisect_right(self._exits, as_of)
        return closed, self._wins[closed], (self.strategy.trades[entered - 1] if entered > closed else None)

    def figures(self, as_of: dt.date) -> dict:
        """The fund's entry of the backtest as of ``as_of``: null figures before its first bar."""
        i = self.last_bar(as_of)
        entry = {"ts_code": self.ts_code, "name": self.name, "first_day": None}
        if i < 0:
            return {**entry, "strategy": None, "buy_and_hold": None, "open_trade": None}
        days, first = self.bars.days, self.bars.days[0]
        closed, wins, open_trade = self.trades_as_of(as_of)
        strategy = equity_figures(self.strategy_stats, i, days, first, as_of)
        strategy.update(
            trades=closed + (open_trade is not None),
            win_rate=_win_rate(wins, closed),
            exposure=_number(float(self.bars_in_market[i]) / (i + 1), FRACTION_DIGITS),
            fees=_number(float(self.strategy.fees[i]), MONEY_DIGITS),
        )
        return {
            **entry,
            "first_day": _day(first),
            "strategy": strategy,
            "buy_and_hold": equity_figures(self.hold_stats, i, days, first, as_of),
            "open_trade": None if open_trade is None else trade_json(open_trade, self._marked(open_trade, i)),
        }

    def _marked(self, trade: Trade, i: int) -> float:
        return trade.value(float(self.bars.factors[i]), float(self.bars.closes[i]))

    def trades_json(self) -> list[dict]:
        """Every trade to the fund's last bar, an open one marked at its close."""
        if not self.bars.days:
            return []
        closed, _, open_trade = self.trades_as_of(self.bars.days[-1])
        listed = [trade_json(t) for t in self.strategy.trades[:closed]]
        if open_trade is not None:
            listed.append(trade_json(open_trade, self._marked(open_trade, len(self.bars.days) - 1)))
        return listed


def fund_bars(prices: pd.DataFrame, signals: pd.DataFrame, start: dt.date, end: dt.date) -> dict[str, FundBars]:
    """Each fund's usable bars from ``start`` to ``end`` with its signal: a bar without a positive open, close
    and adjustment factor is no bar (its day's signal is NO_DATA; a fill waits for the next usable bar)."""
    span = prices[(prices["trade_date"] >= pd.Timestamp(start)) & (prices["trade_date"] <= pd.Timestamp(end))]
    usable = span[(span["open"] > 0) & (span["close"] > 0) & (span["adj_factor"] > 0)]
    merged = usable.merge(signals[SIGNAL_COLUMNS], on=["ts_code", "trade_date"], how="left")
    merged = merged.sort_values(["ts_code", "trade_date"], kind="stable")
    out = {}
    for code, rows in merged.groupby("ts_code", sort=False):
        out[code] = FundBars(
            days=list(rows["trade_date"].dt.date),
            opens=rows["open"].to_numpy(float),
            closes=rows["close"].to_numpy(float),
            factors=rows["adj_factor"].to_numpy(float),
            states=rows["state"].fillna(State.NO_DATA).tolist(),
        )
    return out


EMPTY_BARS = FundBars([], np.array([]), np.array([]), np.array([]), [])


@dataclass
class Backtest:
    """Every fund of the universe (in its order) and the equal-weight portfolio of their sleeves."""

    settings: BacktestSettings
    funds: list[FundBacktest]
    days: list[dt.date]  # the portfolio's: every day with a bar of some fund
    strategy_equity: np.ndarray
    hold_equity: np.ndarray
    strategy_stats: RunningStats
    hold_stats: RunningStats

    def portfolio(self, as_of: dt.date) -> dict:
        i = bisect.bisect_right(self.days, as_of) - 1
        if i < 0:
            return {"first_day": None, "strategy": None, "buy_and_hold": None}
        first = self.days[0]
        strategy = equity_figures(self.strategy_stats, i, self.days, first, as_of)
        closed, wins, trades, bars, held, fees = 0, 0, 0, 0, 0, 0.0
        for fund in self.funds:
            last = fund.last_bar(as_of)
            if last < 0:
                continue
            done, won, open_trade = fund.trades_as_of(as_of)
            closed, wins = closed + done, wins + won
            trades += done + (open_trade is not None)
            bars += last + 1
            held += int(fund.bars_in_market[last])
            fees += float(fund.strategy.fees[last])
        strategy.update(
            trades=trades,
            win_rate=_win_rate(wins, closed),
            exposure=_number(held / bars, FRACTION_DIGITS),
            fees=_number(fees, MONEY_DIGITS),
        )
        return {
            "first_day": _day(first),
            "strategy": strategy,
            "buy_and_hold": equity_figures(self.hold_stats, i, self.days, first, as_of),
        }


def sleeves_sum(funds: list[FundBacktest], sleeve: str, days: list[dt.date], cash: float) -> np.ndarray:
    """The portfolio's equity on ``days``: each fund's sleeve at its last bar on or before the day (its cash
    before its first), added fund after fund in universe order."""
    when = np.array(days, dtype="datetime64[D]")
    total = np.zeros(len(days))
    for fund in funds:
        equity = getattr(fund, sleeve).equity
        last = np.searchsorted(np.array(fund.bars.days, dtype="datetime64[D]"), when, "right") - 1
        total += np.where(last >= 0, equity[np.maximum(last, 0)] if len(equity) else cash, cash)
    return total


def run_backtest(
    prices: pd.DataFrame, signals: pd.DataFrame, universe: pd.DataFrame, settings: BacktestSettings, end: dt.date
) -> Backtest:
    """The backtest from ``settings.start`` to ``end`` of every fund in ``universe`` (``ts_code``, ``name``)."""
    bars = fund_bars(prices, signals, settings.start, end)
    funds = [
        FundBacktest(code, name, bars.get(code, EMPTY_BARS), settings)
        for code, name in zip(universe["ts_code"], universe["name"], strict=True)
    ]
    days = sorted({d for fund in funds for d in fund.bars.days})
    start_value = settings.cash * len(funds)
    strategy = sleeves_sum(funds, "strategy", days, settings.cash)
    hold = sleeves_sum(funds, "hold", days, settings.cash)
    return Backtest(
        settings,
        funds,
        days,
        strategy,
        hold,
        running_stats(strategy, start_value),
        running_stats(hold, start_value),
    )


def backtest_document(backtest: Backtest, as_of: dt.date, strategy: dict) -> dict:
    """The published backtest as of ``as_of`` (``backtests/YYYY-MM-DD.json``): figures, not trade lists."""
    return {
        "as_of": as_of.isoformat(),
        "start": backtest.settings.start.isoformat(),
        "strategy": strategy,
        "settings": backtest.settings.as_json(),
        "portfolio": {k: v for k, v in backtest.portfolio(as_of).items() if k != "first_day"},
        "funds": [fund.figures(as_of) for fund in backtest.funds],
    }


COMMON_METRICS = [
    "total_return",
    "cagr",
    "max_drawdown",
    "max_drawdown_peak",
    "max_drawdown_trough",
    "volatility",
    "sharpe",
    "calmar",
]
STRATEGY_METRICS = [*COMMON_METRICS, "trades", "win_rate", "exposure", "fees"]
# The figures the asset's table keeps per fund and day (the published documents hold them all): what the
# reports' summaries read and the UI previews.
TABLE_FIGURES = [
    *(("strategy", m) for m in ("total_return", "cagr", "max_drawdown", "sharpe", "trades", "win_rate", "exposure")),
    ("strategy", "fees"),
    *(("buy_and_hold", m) for m in ("total_return", "cagr", "max_drawdown", "sharpe")),
]
TEXT_COLUMNS = ["ts_code", "name", "trade_date", "first_day"]
FIGURE_COLUMNS = [*TEXT_COLUMNS, "start", "execution", *(f"{s}_{m}" for s, m in TABLE_FIGURES)]
PORTFOLIO_NAME = "等权组合"


class FigureTable:
    """The documents' figures as a table, per day the portfolio's row (ts_code PORTFOLIO) then each fund's,
    kept as columns of numbers while the documents are made: a decade of a large universe is millions of
    rows."""

    def __init__(self):
        self.text: dict[str, list] = {column: [] for column in TEXT_COLUMNS}
        self.numbers = {f"{sleeve}_{metric}": array("d") for sleeve, metric in TABLE_FIGURES}
        self.terms = {"start": None, "execution": None}

    def add(self, document: dict) -> None:
        self.terms = {"start": document["start"], "execution": document["settings"]["execution"]}
        portfolio = {"ts_code": PORTFOLIO, "name": PORTFOLIO_NAME, "first_day": None, **document["portfolio"]}
        for entry in (portfolio, *document["funds"]):
            for column in TEXT_COLUMNS:
                self.text[column].append(document["as_of"] if column == "trade_date" else entry[column])
            for sleeve, metric in TABLE_FIGURES:
                value = None if entry[sleeve] is None else entry[sleeve][metric]
                self.numbers[f"{sleeve}_{metric}"].append(math.nan if value is None else value)

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {**self.text, **{name: np.frombuffer(values) for name, values in self.numbers.items()}},
            columns=[*TEXT_COLUMNS, *self.numbers],
        )
        frame["trade_date"] = pd.to_datetime(frame["trade_date"])
        frame = frame.assign(**self.terms)
        return frame[FIGURE_COLUMNS]
