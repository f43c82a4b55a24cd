"""The published report: its JSON contract and its text and HTML renderings.

The JSON document is the source of truth; the text (the seed's wording, in Chinese) and the pages are
rendered from it, so a notification or a page never disagrees with the data.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Iterator

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest import PORTFOLIO, PORTFOLIO_NAME
from alchemy_pipeline.domain.frames import by_trade_date
from alchemy_pipeline.domain.numbers import python_round
from alchemy_pipeline.domain.strategy import State, StrategyParams

STRATEGY_NAME = "double_ma"
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


def _dates(values: pd.Series) -> list[str | None]:
    days = pd.to_datetime(values).to_numpy("datetime64[D]")
    text = np.datetime_as_string(days, unit="D").astype(object)
    text[np.isnat(days)] = None
    return text.tolist()


def _texts(values: pd.Series) -> list:
    # Through a NumPy object array: iterating an Arrow-backed string column value by value is far slower.
    return values.to_numpy(dtype=object).tolist()


def _none_where(values: np.ndarray, missing: np.ndarray) -> list:
    """The values as Python numbers, None where ``missing``."""
    listed = values.tolist()
    for i in np.flatnonzero(missing).tolist():
        listed[i] = None
    return listed


def _numbers(values: pd.Series, digits: int) -> list[float | None]:
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
    signals: pd.DataFrame, params: StrategyParams, notice: str | None = None, backtests: dict[str, dict] | None = None
) -> Iterator[dict]:
    """The report document of each day in ``signals``, oldest first, with one entry per fund of the
    universe in universe order (the order of the rows within each day), and the day's backtest summary
    from ``backtests`` (by day) where it has one. Built a batch of days at a time."""
    for batch in day_batches(signals):
        yield from _batch_reports(batch, params, notice, backtests or {})


def _batch_reports(
    signals: pd.DataFrame, params: StrategyParams, notice: str | None, backtests: dict[str, dict]
) -> Iterator[dict]:
    columns = {
        "ts_code": _texts(signals["ts_code"]),
        "name": _texts(signals["name"]),
        "state": _texts(signals["state"]),
        "close": _numbers(signals["close"], 3),
        "ma_short": _numbers(signals["ma_short"], 3),
        "ma_long": _numbers(signals["ma_long"], 3),
        "since": _dates(signals["since"]),
        "days": _integers(signals["days"]),
        "pct": _numbers(signals["pct"], 2),
        "note": [v if isinstance(v, str) else None for v in _texts(signals["note"])],
    }
    entries = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    start = 0
    for day, count in pd.Series(_dates(signals["trade_date"])).value_counts(sort=False).sort_index().items():
        report = {
            "trade_date": day,
            "strategy": {"name": STRATEGY_NAME, "short": params.short, "long": params.long},
            "notice": notice,
        }
        if day in backtests:
            report["backtest"] = backtests[day]
        report["signals"] = entries[start : start + count]
        yield report
        start += count


def build_report(
    signals: pd.DataFrame, params: StrategyParams, notice: str | None = None, backtests: dict[str, dict] | None = None
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


def _sections(report: dict) -> list[tuple[State, str, list[tuple[str, str]]]]:
    """The report's sections in order, each with its (state, line) entries; the last gathers the funds
    without a signal. Each fund's line is formatted once, for every rendering."""
    params = report["strategy"]
    grouped: dict[str, list[tuple[str, str]]] = {state: [] for state, _ in SECTIONS}
    others: list[tuple[str, str]] = []
    for entry in report["signals"]:
        grouped.get(entry["state"], others).append((entry["state"], signal_line(entry, params)))
    return [(state, title, grouped[state]) for state, title in SECTIONS] + [(State.NO_DATA, NO_DATA_SECTION, others)]


EXECUTION_LABELS = {"next_open": "信号次日开盘成交", "close": "信号当日收盘成交(偏乐观)"}


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


def render_text(report: dict, sections: list | None = None) -> str:
    params = report["strategy"]
    lines = [f"双均线策略交易信号 {report['trade_date']} ({params['short']}日/{params['long']}日均线)"]
    if report.get("notice"):
        lines.append(report["notice"])
    lines.append("")
    *signalled, (_, no_data_title, others) = sections or _sections(report)
    blocks = [[f"{title}:", *(line for _, line in entries)] for _, title, entries in signalled]
    if others:
        blocks.append([f"{no_data_title}:", *(line for _, line in others)])
    if report.get("backtest"):
        blocks.append(backtest_lines(report["backtest"]))
    for i, block in enumerate(blocks):
        if i:
            lines.append(SECTION_RULE)
        lines.extend(block)
    return "\n".join(lines) + "\n"


_STYLE = """
body{font-family:-apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:0;
padding:1rem;max-width:48rem;margin-inline:auto;color:#1b1f24;background:#fff;line-height:1.5}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:1.5rem;border-bottom:1px solid #d0d7de}
.notice{background:#fff3cd;border:1px solid #e0c36a;padding:.5rem;border-radius:4px;font-weight:bold}
ul{padding-left:1.1rem}li{margin:.3rem 0}
.BUY{color:#b00020}.SELL{color:#0a7d32}.HOLD{color:#8a4b00}.EMPTY{color:#444}
table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{padding:.3rem;border-bottom:1px solid #eee;
text-align:left}
form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}input[type=email]{flex:1 1 12rem;padding:.5rem;
font-size:1rem}button{padding:.5rem 1rem;font-size:1rem}
#subscribe-status[data-state=ok]{color:#0a7d32}#subscribe-status[data-state=error]{color:#b00020}
@media (max-width:30rem){body{padding:.6rem}table{font-size:.8rem}}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _signals_html(report: dict, sections: list | None = None) -> str:
    parts = []
    if report.get("notice"):
        parts.append(f'<p class="notice" role="alert">{html.escape(report["notice"])}</p>')
    for state, title, entries in sections or _sections(report):
        lines = [html.escape(line) for _, line in entries]
        items = "".join(
            f'<li class="{state_of}">{line}</li>' for (state_of, _), line in zip(entries, lines, strict=True)
        )
        items = items or "<li>无</li>"
        parts.append(f'<section><h2 id="{state.value.lower()}">{title}</h2><ul>{items}</ul></section>')
    if report.get("backtest"):
        title, *lines = backtest_lines(report["backtest"])
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        parts.append(f'<section><h2 id="backtest">{html.escape(title.rstrip(":"))}</h2><ul>{items}</ul></section>')
    return "\n".join(parts)


def render_html(report: dict, sections: list | None = None) -> str:
    params = report["strategy"]
    title = f"双均线策略交易信号 {report['trade_date']}"
    body = (
        f"<main><h1>{html.escape(title)}</h1>"
        f"<p>{params['short']}日与{params['long']}日均线, 前复权收盘价</p>\n{_signals_html(report, sections)}\n"
        '<p><a href="../index.html">全部历史</a></p></main>'
    )
    return _page(title, body)


def render_files(report: dict) -> dict[str, bytes]:
    """A day's published files by suffix: text, page and JSON, each fund's line formatted once."""
    sections = _sections(report)
    return {
        ".txt": render_text(report, sections).encode("utf-8"),
        ".html": render_html(report, sections).encode("utf-8"),
        ".json": report_json(report),
    }


_SUBSCRIBE_SCRIPT = """
(function () {
  var form = document.getElementById("subscribe-form");
  var email = document.getElementById("subscribe-email");
  var status = document.getElementById("subscribe-status");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    status.dataset.state = "busy";
    status.textContent = "正在提交…";
    fetch(form.action, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({email: email.value.trim()})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        status.dataset.state = response.ok ? "ok" : "error";
        status.textContent = body.message || (response.ok ? "确认邮件已发送，请查收。" : "订阅失败，请稍后再试。");
      });
    }).catch(function () {
      status.dataset.state = "error";
      status.textContent = "网络错误，请稍后再试。";
    });
  });
})();
"""


def _subscribe_html(subscribe_url: str) -> str:
    return (
        '<section aria-labelledby="subscribe-title"><h2 id="subscribe-title">邮件订阅</h2>'
        f'<form id="subscribe-form" action="{html.escape(subscribe_url)}" method="post">'
        '<label for="subscribe-email">电子邮箱</label> '
        '<input id="subscribe-email" name="email" type="email" required maxlength="254" autocomplete="email" '
        'placeholder="name@example.com"> <button type="submit">订阅</button></form>'
        '<p id="subscribe-status" role="status" aria-live="polite"></p>'
        "<p>每个交易日收盘后发送一封邮件；订阅后请点击确认邮件中的链接。</p></section>"
        f"<script>{_SUBSCRIBE_SCRIPT}</script>"
    )


def render_index(latest: dict, days: list[str], subscribe_url: str | None = None) -> str:
    """The site's front page: the latest day's signals, every published day (newest first) and, where a
    subscription endpoint exists, the form that subscribes an email address without leaving the page."""
    title = "双均线策略交易信号"
    history = "".join(f'<li><a href="reports/{d}.html">{d}</a></li>' for d in sorted(days, reverse=True))
    day = latest["trade_date"]
    body = (
        f"<main><h1>{title}</h1>"
        f'<h2 id="latest">最新: <a href="reports/{day}.html">{day}</a></h2>\n'
        f"{_signals_html(latest)}\n"
        f"{_subscribe_html(subscribe_url) if subscribe_url else ''}\n"
        f'<section><h2 id="history">历史</h2><ul class="history">{history}</ul></section></main>'
    )
    return _page(title, body)


def history_json(days: list[str]) -> bytes:
    return (json.dumps({"days": sorted(days, reverse=True)}, indent=2) + "\n").encode("utf-8")


def backtest_summaries(figures: pd.DataFrame) -> dict[str, dict]:
    """Each day's backtest summary for its report, from the backtest's figures table (``etf_backtest``):
    the portfolio's and every traded fund's return, a year's rate and in all."""
    pairs = {
        (sleeve, metric): _none_where(values := figures[f"{sleeve}_{metric}"].to_numpy(float), np.isnan(values))
        for sleeve in ("strategy", "buy_and_hold")
        for metric in ("total_return", "cagr")
    }
    columns = zip(
        _texts(figures["ts_code"]),
        _texts(figures["name"]),
        _dates(figures["trade_date"]),
        _texts(figures["start"]),
        _texts(figures["execution"]),
        (figures["strategy_trades"].to_numpy(float) > 0).tolist(),
        *pairs.values(),
        strict=True,
    )
    summaries: dict[str, dict] = {}
    for code, name, day, start, execution, traded, *values in columns:
        pair = {"strategy": {}, "buy_and_hold": {}}
        for (sleeve, metric), value in zip(pairs, values, strict=True):
            pair[sleeve][metric] = value
        if code == PORTFOLIO:
            summaries[day] = {"start": start, "execution": execution, "portfolio": pair, "funds": []}
        elif traded:
            summaries[day]["funds"].append({"ts_code": code, "name": name, **pair})
    return summaries
