"""What the backtest publishes: each day's document (``backtests/YYYY-MM-DD.json``) and each fund's trades."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest.engine import (
    FRACTION_DIGITS,
    MONEY_DIGITS,
    PRICE_DIGITS,
    BacktestSettings,
    Trade,
)
from alchemy_pipeline.domain.backtest.state import BacktestState, CarriedRun, day_texts, number_day
from alchemy_pipeline.domain.backtest.statistics import METRICS, STRATEGY_METRICS, state_metrics
from alchemy_pipeline.domain.numbers import python_round
from alchemy_pipeline.infrastructure.workers import map_in_processes

# Days whose documents are written at a time: a day of 1,500 funds is some 40,000 numbers, a megabyte of text.
# 8 rather than 32 halves what each worker and the chunks in flight hold, at the same speed (RESULTS.md).
DOCUMENT_DAYS_AT_A_TIME = 8
_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_NULL = "null"
# A fund before its first bar in the backtest.
_NOT_STARTED = '"first_day": null, "strategy": null, "buy_and_hold": null, "open_trade": null'


def document_files(run: CarriedRun, rule: dict, only: set[dt.date] | None = None) -> Iterator[tuple[str, bytes]]:
    """The published backtest of each day the run traded (of those, ``only`` these, when given): its day and
    the bytes of ``backtests/YYYY-MM-DD.json``, the settings and fingerprint, the portfolio's figures and each
    fund's on a line of its own, with its open trade marked at its last bar (``runs_document_files``)."""
    return runs_document_files([run], rule, only)


def runs_document_files(
    runs: Iterable[CarriedRun], rule: dict, only: set[dt.date] | None = None, in_processes: bool = False
) -> Iterator[tuple[str, bytes]]:
    """``document_files`` of consecutive runs, each taken only when its days' documents are next to be
    written, so that a long chain is carried a stretch at a time while its documents are written; in worker
    processes when ``in_processes`` (a decade of 1,500 funds is some 100 million numbers to write).

    Written from the state table's columns, a few days at a time, as ``json`` writes each value (as Python
    dicts, a decade of them took minutes). The layout is the reports' (``site.report.document_json``), which
    ``tests/test_backtest_fast_path.py`` holds it to."""

    def chunks() -> Iterator[tuple[pd.DataFrame, list[dt.date], _Layout]]:
        for run in runs:
            days = [d for d in run.traded_days if only is None or d in only]
            layout = _Layout.of(run.state, rule)
            dates = run.frame["trade_date"].to_numpy()  # in day order
            for first in range(0, len(days), DOCUMENT_DAYS_AT_A_TIME):
                some = days[first : first + DOCUMENT_DAYS_AT_A_TIME]
                start = dates.searchsorted(np.datetime64(some[0]), "left")
                span = run.frame.iloc[start : dates.searchsorted(np.datetime64(some[-1]), "right")]
                # A copy, not a view: a view in flight would keep the run's whole table alive beside the next.
                yield span[span["trade_date"].isin(pd.to_datetime(some))].copy(), some, layout
            del run  # before the next run is carried

    rendered = map_in_processes(_chunk_files, chunks()) if in_processes else map(_chunk_files, chunks())
    return itertools.chain.from_iterable(rendered)


@dataclass(frozen=True)
class _Layout:
    """What every document of a run repeats: the settings, its head and each fund's name fields."""

    settings: BacktestSettings
    head: str
    names: list[str]

    @classmethod
    def of(cls, state: BacktestState, rule: dict) -> _Layout:
        settings = state.settings
        head = (
            f'  "start": {_json(settings.start.isoformat())},\n  "strategy": {_json(rule)},\n'
            f'  "settings": {_json(settings.as_json())},\n  "fingerprint": {_json(state.fingerprint)},\n'
        )
        names = [f'"ts_code": {_json(c)}, "name": {_json(n)}' for c, n in zip(state.codes, state.names, strict=True)]
        return cls(settings, head, names)


def _chunk_files(chunk: tuple[pd.DataFrame, list[dt.date], _Layout]) -> list[tuple[str, bytes]]:
    """The documents of a few consecutive days, from their rows of the state table (run in a worker process)."""
    states, days, layout = chunk
    table = state_metrics(states, layout.settings)
    strategy, hold, open_trades = (
        _sleeve_texts(table, "strategy"),
        _sleeve_texts(table, "buy_and_hold"),
        _open_trade_texts(table),
    )
    firsts = _day_json(table["first_day"])
    names = layout.names
    per_day = len(names) + 1
    files = []
    for d, day in enumerate(days):
        p = d * per_day
        if firsts[p] == _NULL:
            portfolio = '{"strategy": null, "buy_and_hold": null}'
        else:
            portfolio = f'{{"strategy": {strategy[p]}, "buy_and_hold": {hold[p]}}}'
        funds = ",\n".join(
            f'    {{{names[j]}, "first_day": {firsts[i]}, "strategy": {strategy[i]}, '
            f'"buy_and_hold": {hold[i]}, "open_trade": {open_trades[i]}}}'
            if firsts[i] != _NULL
            else f"    {{{names[j]}, {_NOT_STARTED}}}"
            for j, i in enumerate(range(p + 1, p + per_day))
        )
        text = (
            f'{{\n  "as_of": "{day.isoformat()}",\n{layout.head}  "portfolio": {portfolio},\n'
            f'  "funds": [\n{funds}\n  ]\n}}\n'
        )
        files.append((day.isoformat(), text.encode("utf-8")))
    return files


def documents(run: CarriedRun, rule: dict, only: set[dt.date] | None = None) -> Iterator[dict]:
    """The documents of ``document_files``, as a reader of the site gets them."""
    return (json.loads(data) for _, data in document_files(run, rule, only))


def _day_json(numbers: np.ndarray) -> list[str]:
    """Day numbers as ``json`` writes their ISO dates, null where there is none (NaN); each date written once."""
    numbers = np.asarray(numbers, float)
    unique, at = np.unique(numbers, return_inverse=True)
    texts = np.array([_NULL if t is None else f'"{t}"' for t in day_texts(unique)], dtype=object)
    return texts[at.reshape(-1)].tolist()


def _number_texts(values: np.ndarray, digits: int) -> list[str]:
    """Numbers rounded to ``digits`` as ``json`` writes them (``float.__repr__``), null where not finite."""
    finite = np.isfinite(values)
    texts = list(map(float.__repr__, python_round(np.where(finite, values, 0.0), digits).tolist()))
    for i in np.flatnonzero(~finite).tolist():
        texts[i] = _NULL
    return texts


def _sleeve_texts(table: pd.DataFrame, sleeve: str) -> list[str]:
    """A sleeve's figures on each row, as a JSON object in the order of its metrics."""
    metrics = STRATEGY_METRICS if sleeve == "strategy" else METRICS
    columns = []
    for metric in metrics:
        values = table[f"{sleeve}_{metric}"].to_numpy(float)
        if metric.startswith("max_drawdown_"):
            columns.append(_day_json(values))
        elif metric == "trades":
            columns.append(list(map(str, values.astype("int64").tolist())))
        else:
            columns.append(_number_texts(values, MONEY_DIGITS if metric == "fees" else FRACTION_DIGITS))
    template = "{" + ", ".join(f'"{metric}": %s' for metric in metrics) + "}"
    return [template % row for row in zip(*columns, strict=True)]


def _open_trade_texts(table: pd.DataFrame) -> list[str]:
    """Each row's open trade as a JSON object (its exit fields null, its return marked at the fund's last
    bar), null without one."""
    held = (table["strategy_shares"].to_numpy() > 0).tolist()
    signal, entry = _day_json(table["strategy_signal_day"]), _day_json(table["strategy_entry_day"])
    price = _number_texts(table["strategy_entry_price"].to_numpy(float), PRICE_DIGITS)
    shares = list(map(str, table["strategy_shares"].to_numpy(float).astype("int64").tolist()))
    fees = _number_texts(table["strategy_entry_fee"].to_numpy(float), MONEY_DIGITS)
    returns = _number_texts(table["open_return"].to_numpy(float), FRACTION_DIGITS)
    template = (
        '{"signal_day": %s, "entry_day": %s, "entry_price": %s, "exit_signal_day": null, "exit_day": null, '
        '"exit_price": null, "shares": %s, "fees": %s, "return": %s}'
    )
    return [
        template % row[1:] if row[0] else _NULL
        for row in zip(held, signal, entry, price, shares, fees, returns, strict=True)
    ]


def trade_json(trade: Trade) -> dict:
    """A closed trade as published (days are day numbers)."""
    return {
        "signal_day": number_day(trade.signal_day).isoformat(),
        "entry_day": number_day(trade.entry_day).isoformat(),
        "entry_price": round(trade.entry_price, PRICE_DIGITS),
        "exit_signal_day": number_day(trade.exit_signal_day).isoformat(),
        "exit_day": number_day(trade.exit_day).isoformat(),
        "exit_price": round(trade.exit_price, PRICE_DIGITS),
        "shares": trade.shares,
        "fees": round(trade.entry_fee + trade.exit_fee, MONEY_DIGITS),
        "return": round(trade.net_return(), FRACTION_DIGITS),
    }


def closed_before(trades: list[dict], day: dt.date) -> list[dict]:
    """Of a fund's published trades, those closed before ``day``: what a run from ``day`` on keeps."""
    return [t for t in trades if t["exit_day"] is not None and t["exit_day"] < day.isoformat()]


def trade_lists(run: CarriedRun, kept: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Every fund's trades after the run: those ``kept`` from before it, those it closed, then the open one
    marked at the fund's last bar."""
    last = run.frame[run.frame["trade_date"] == run.frame["trade_date"].max()]
    open_trades = map(json.loads, _open_trade_texts(state_metrics(last, run.state.settings)))
    opens = dict(zip(last["ts_code"], open_trades, strict=True))
    return {
        code: [
            *kept.get(code, []),
            *(trade_json(t) for t in run.closed_trades[code]),
            *([opens[code]] if opens[code] else []),
        ]
        for code in run.state.codes
    }
