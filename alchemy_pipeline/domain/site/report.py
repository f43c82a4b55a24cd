"""The published report: its JSON contract and its text (and the email's version of it).

The JSON document is the source of truth; the text (the seed's wording, in Chinese), the email and the
pages (``site.py``) are rendered from it, so a notification or a page never disagrees with the data.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest import PORTFOLIO, PORTFOLIO_NAME
from alchemy_pipeline.domain.numbers import python_round
from alchemy_pipeline.domain.signals.rule import RuleParams, State
from alchemy_pipeline.infrastructure.frames import by_trade_date

SECTION_RULE = "#########################################"
SECTIONS = [
    (State.BUY, "可买标的"),
    (State.SELL, "可卖标的"),
    (State.HOLD, "持仓标的"),
    (State.EMPTY, "空仓标的"),
]
NO_DATA_SECTION = "无数据标的"
STATE_LABELS = {
    State.BUY: "可买",
    State.SELL: "可卖",
    State.HOLD: "持仓",
    State.EMPTY: "空仓",
    State.NO_DATA: "无数据",
    State.INSUFFICIENT_HISTORY: "数据不足",
}


def date_texts(values: pd.Series) -> list[str | None]:
    days = pd.to_datetime(values).to_numpy("datetime64[D]")
    text = np.datetime_as_string(days, unit="D").astype(object)
    text[np.isnat(days)] = None
    return text.tolist()


def distinct_days(dates: pd.Series) -> list[str]:
    """The days of a column of timestamps, each once and in order, as text: each day formatted once, not once
    per row (a decade of 1,500 funds is millions of rows and 2,431 days)."""
    return date_texts(pd.Series(np.unique(dates.to_numpy("datetime64[D]"))))


def texts(values: pd.Series) -> list:
    # Through a NumPy object array: iterating an Arrow-backed string column value by value is far slower.
    return values.to_numpy(dtype=object).tolist()


def _none_where(values: np.ndarray, missing: np.ndarray) -> list:
    """The values as Python numbers, None where ``missing``."""
    listed = values.tolist()
    for i in np.flatnonzero(missing).tolist():
        listed[i] = None
    return listed


def rounded(values: pd.Series, digits: int) -> list[float | None]:
    """Python's round of each value, as the report has always been rounded; a missing value None."""
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    return _none_where(python_round(numbers, digits), np.isnan(numbers))


def _integers(values: pd.Series) -> list[int | None]:
    return _none_where(values.to_numpy(dtype="float64", na_value=0).astype(np.int64), values.isna().to_numpy())


# Days of reports built at a time: a long range never holds every day's report in memory at once.
REPORT_BATCH_DAYS = 16


def day_batches(signals: pd.DataFrame, days_per_batch: int = REPORT_BATCH_DAYS) -> Iterator[pd.DataFrame]:
    """The signals in consecutive slices of whole days, oldest first, rows of a day in their order."""
    signals = by_trade_date(signals)
    dates = signals["trade_date"].to_numpy()
    days = np.unique(dates)
    bounds = [*dates.searchsorted(days[::days_per_batch], side="left").tolist(), len(dates)]
    for start, end in itertools.pairwise(bounds):
        yield signals.iloc[start:end]


def build_reports(
    signals: pd.DataFrame, params: RuleParams, notice: str | None = None, backtests: dict[str, dict] | None = None
) -> Iterator[dict]:
    """The report document of each day in ``signals``, oldest first, with one entry per fund of the
    universe in universe order (the order of the rows within each day), and the day's backtest summary
    from ``backtests`` (by day) where it has one. Built a batch of days at a time."""
    for batch in day_batches(signals):
        yield from _batch_reports(batch, params, notice, backtests or {})


def _batch_reports(
    signals: pd.DataFrame, params: RuleParams, notice: str | None, backtests: dict[str, dict]
) -> Iterator[dict]:
    columns = {
        "ts_code": texts(signals["ts_code"]),
        "name": texts(signals["name"]),
        "state": texts(signals["state"]),
        "close": rounded(signals["close"], 3),
        "ma_short": rounded(signals["ma_short"], 3),
        "ma_long": rounded(signals["ma_long"], 3),
        "since": date_texts(signals["since"]),
        "days": _integers(signals["days"]),
        "pct": rounded(signals["pct"], 2),
        "note": [v if isinstance(v, str) else None for v in texts(signals["note"])],
    }
    entries = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    start = 0
    for day, count in pd.Series(date_texts(signals["trade_date"])).value_counts(sort=False).sort_index().items():
        report = {
            "trade_date": day,
            "strategy": params.described(),
            "notice": notice,
        }
        if day in backtests:
            report["backtest"] = backtests[day]
        report["signals"] = entries[start : start + count]
        yield report
        start += count


def build_report(
    signals: pd.DataFrame, params: RuleParams, notice: str | None = None, backtests: dict[str, dict] | None = None
) -> dict:
    """The report document for one day."""
    reports = list(build_reports(signals, params, notice, backtests))
    if len(reports) != 1:
        raise ValueError(f"a report covers exactly one day, these signals cover {len(reports)}")
    return reports[0]


# One encoder for every value: json.dumps with options builds a new one per call.
_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def document_json(document: dict, rows_key: str) -> bytes:
    """A document with each of its ``rows_key`` entries on one line (``indent=`` would give each field a
    line of its own)."""
    head = [f"  {_json(key)}: {_json(value)}" for key, value in document.items() if key != rows_key]
    rows = ",\n".join(f"    {_json(row)}" for row in document[rows_key])
    return ("{\n" + ",\n".join([*head, f"  {_json(rows_key)}: [\n{rows}\n  ]"]) + "\n}\n").encode("utf-8")


def report_json(report: dict) -> bytes:
    """The report with one fund per line."""
    return document_json(report, "signals")


def list_json(rows: list[dict]) -> bytes:
    """A list with one entry per line."""
    return ("[\n" + ",\n".join(f"  {_json(row)}" for row in rows) + "\n]\n" if rows else "[]\n").encode("utf-8")


def _fmt(value, digits: int) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"  # value != value: NaN


def signal_line(entry: dict, params: dict) -> str:
    """One fund's line, in the seed's wording."""
    who = f"{entry['name']}({entry['ts_code']})"
    state = entry["state"]
    # HOLD and EMPTY first: they are most funds on most days, and a long backfill formats millions of lines.
    if state == State.HOLD or state == State.EMPTY:
        since = entry["since"]
        if since is None:
            if state == State.HOLD:
                return f"{who}持有, 回看期内未出现金叉"
            return f"{who}空仓, 回看期内未出现死叉"
        pct = _fmt(entry["pct"], 2)
        if state == State.HOLD:
            return f"{who}于{since}日买入, 持有{entry['days']}天, 盈利{pct}%"
        return f"{who}于{since}日卖出, 空仓{entry['days']}天, 空仓期涨幅{pct}%"
    if state == State.BUY or state == State.SELL:
        verb = "可买" if state == State.BUY else "可卖"
        return (
            f"{who}{verb}, 收盘价{_fmt(entry['close'], 3)}, {params['short']}日均线{_fmt(entry['ma_short'], 3)}, "
            f"{params['long']}日均线{_fmt(entry['ma_long'], 3)}"
        )
    if state == State.INSUFFICIENT_HISTORY:
        return f"{who}上市交易日不足, 无法计算{params['long']}日均线"
    return f"{who}当日无行情数据"


def report_sections(report: dict) -> list[tuple[State, str, list[tuple[str, str]]]]:
    """The report's sections in order, each with its (state, line) entries; the last gathers the funds
    without a signal. Each fund's line is formatted once, for every rendering."""
    params = report["strategy"]
    grouped: dict[str, list[tuple[str, str]]] = {state: [] for state, _ in SECTIONS}
    others: list[tuple[str, str]] = []
    for entry in report["signals"]:
        grouped.get(entry["state"], others).append((entry["state"], signal_line(entry, params)))
    return [(state, title, grouped[state]) for state, title in SECTIONS] + [(State.NO_DATA, NO_DATA_SECTION, others)]


EXECUTION_LABELS = {"next_open": "信号次日开盘成交", "close": "信号当日收盘成交(偏乐观)"}
# A day whose backtest failed is published all the same (its JSON's backtest is null), saying so.
BACKTEST_UNAVAILABLE = "回测: 今日暂不可用(计算失败, 信号不受影响)"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}"


def backtest_line(who: str, figures: dict) -> str:
    """One fund's (or the portfolio's) strategy against holding it: a year's rate, or, over less than a year,
    the return (not annualised)."""
    strategy, hold = figures["strategy"], figures["buy_and_hold"]
    if strategy["cagr"] is not None and hold["cagr"] is not None:
        return f"{who}: 策略年化{_percent(strategy['cagr'])}%, 持有年化{_percent(hold['cagr'])}%"
    return (
        f"{who}: 策略累计{_percent(strategy['total_return'])}%, 持有累计{_percent(hold['total_return'])}%"
        "(不足一年, 未年化)"
    )


def backtest_lines(summary: dict) -> list[str]:
    """The backtest's block: its terms, the portfolio's line, then each fund with a trade."""
    title = f"回测(自{summary['start']}起, {EXECUTION_LABELS[summary['execution']]}, 扣除佣金)"
    lines = [backtest_line(PORTFOLIO_NAME, summary["portfolio"])]
    lines += [backtest_line(f"{f['name']}({f['ts_code']})", f) for f in summary["funds"]]
    return [f"{title}:", *lines]


def render_text(report: dict, sections: list | None = None, fund_url: Callable[[str], str] | None = None) -> str:
    """The text report; with ``fund_url``, the email's version: each BUY and SELL fund followed by the link to
    its page, and of the backtest only the portfolio's line."""
    params = report["strategy"]
    lines = [f"双均线策略交易信号 {report['trade_date']} ({params['short']}日/{params['long']}日均线)"]
    if report.get("notice"):
        lines.append(report["notice"])
    lines.append("")
    *signalled, (_, no_data_title, others) = sections or report_sections(report)
    blocks = [[f"{title}:", *(line for _, line in entries)] for _, title, entries in signalled]
    if fund_url is not None:
        for block, (state, _, _) in zip(blocks, signalled, strict=True):
            if state in (State.BUY, State.SELL):
                codes = [e["ts_code"] for e in report["signals"] if e["state"] == state]
                block[1:] = [f"{line}\n  {fund_url(code)}" for line, code in zip(block[1:], codes, strict=True)]
    if others:
        blocks.append([f"{no_data_title}:", *(line for _, line in others)])
    if report.get("backtest"):
        backtest = backtest_lines(report["backtest"])
        blocks.append(backtest if fund_url is None else [f"{backtest[0]} {backtest[1]}"])
    elif "backtest" in report:
        blocks.append([BACKTEST_UNAVAILABLE])
    for i, block in enumerate(blocks):
        if i:
            lines.append(SECTION_RULE)
        lines.extend(block)
    return "\n".join(lines) + "\n"


def backtest_summaries(summaries: pd.DataFrame) -> dict[str, dict]:
    """Each day's backtest summary for its report, from the backtest's report table (``report_table``):
    the portfolio's and every traded fund's return, a year's rate and in all."""

    def numbers(column: str) -> list[float | None]:
        values = summaries[column].to_numpy(float)
        return _none_where(values, np.isnan(values))

    columns = zip(
        texts(summaries["ts_code"]),
        texts(summaries["name"]),
        date_texts(summaries["trade_date"]),
        texts(summaries["start"]),
        texts(summaries["execution"]),
        (summaries["strategy_trades"].to_numpy(float) > 0).tolist(),
        *(
            numbers(f"{sleeve}_{metric}")
            for sleeve in ("strategy", "buy_and_hold")
            for metric in ("total_return", "cagr")
        ),
        strict=True,
    )
    by_day: dict[str, dict] = {}
    # Each row's figures written out, not looped over sleeves and metrics: a decade of 1,500 funds is millions of rows.
    for code, name, day, start, execution, traded, total, cagr, hold_total, hold_cagr in columns:
        if code == PORTFOLIO:
            figures = _figures(total, cagr, hold_total, hold_cagr)
            by_day[day] = {"start": start, "execution": execution, "portfolio": figures, "funds": []}
        elif traded:
            by_day[day]["funds"].append({"ts_code": code, "name": name, **_figures(total, cagr, hold_total, hold_cagr)})
    return by_day


def _figures(total: float | None, cagr: float | None, hold_total: float | None, hold_cagr: float | None) -> dict:
    """A fund's (or the portfolio's) returns in all and a year's rate, of the strategy and of holding it."""
    return {
        "strategy": {"total_return": total, "cagr": cagr},
        "buy_and_hold": {"total_return": hold_total, "cagr": hold_cagr},
    }
