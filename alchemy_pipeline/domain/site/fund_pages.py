"""Each fund's page (``funds/<ts_code>.html``) and its charts' data (``funds/<ts_code>.json``), and the same
for the backtest's equal-weight portfolio (``funds/PORTFOLIO.*``, equity only).

A fund's data is its published days as columns: each day's close, adjustment factor, averages, state and %
change as its report published them, and the backtest's equity of both sleeves as a growth of 1. A run
merges its days into the stored data (its days replace the same days), so a page is rendered once per run
whatever the run's length, and holds exactly the days published.
"""

from __future__ import annotations

import bisect
import html
import json

import pandas as pd

from alchemy_pipeline.domain.backtest import PORTFOLIO, PORTFOLIO_NAME
from alchemy_pipeline.domain.signals.rule import State
from alchemy_pipeline.domain.site.pages import CHARTS_LIBRARY, page_html
from alchemy_pipeline.domain.site.report import EXECUTION_LABELS, STATE_LABELS, date_texts, rounded, texts
from alchemy_pipeline.infrastructure.frames import slices_by_code

EQUITY_DIGITS = 6


def _equity(total_return: pd.Series) -> list[float | None]:
    return rounded(1 + total_return.astype(float), EQUITY_DIGITS)


SERIES_KEYS = ["ts_code", "trade_date"]
EQUITY_COLUMNS = ["strategy_total_return", "buy_and_hold_total_return"]


def series_rows(
    signals: pd.DataFrame, factors: pd.DataFrame | None = None, summaries: pd.DataFrame | None = None
) -> pd.DataFrame:
    """What the funds' data take from published days, one row per fund and day in code and day order: the
    ``signals``' figures, the prices' adjustment ``factors`` and the backtest's equity from its ``summaries``
    (with the portfolio's rows). A run's are the rows of each stretch of its days (``RunSeries``)."""
    frame = signals[[*SERIES_KEYS, "name", "state", "close", "ma_short", "ma_long", "pct"]]
    if factors is not None:
        frame = frame.merge(factors[[*SERIES_KEYS, "adj_factor"]], on=SERIES_KEYS, how="left")
    if summaries is not None:
        equity = summaries[[*SERIES_KEYS, *EQUITY_COLUMNS]]
        equity = equity[equity["trade_date"].isin(frame["trade_date"].unique())]
        frame = frame.merge(equity, on=SERIES_KEYS, how="left")
        frame = pd.concat([frame, equity[equity["ts_code"] == PORTFOLIO]], ignore_index=True)
    frame = frame.sort_values(SERIES_KEYS, kind="stable", ignore_index=True)
    # Categories, not a Python string per row: a decade of 1,500 funds is 3.6 million rows of each (600 MB).
    return frame.astype({column: "category" for column in ("ts_code", "name", "state")})


class RunSeries:
    """The new days of every fund's data (and the portfolio's), by code, from the ``series_rows`` of each of a
    run's stretches of days. A fund's rows are taken out when its page is written: a decade of 1,500 funds'
    series as Python lists is a gigabyte, and a fund's page needs only its own; nor are the stretches joined,
    which would hold the decade twice."""

    def __init__(self, stretches: list[pd.DataFrame]):
        self._stretches = stretches
        self.has_equity = all(EQUITY_COLUMNS[0] in rows for rows in stretches)
        ends = [rows["trade_date"].max() for rows in stretches if len(rows)]
        self.last_day = str(max(ends).date()) if ends else None
        # Each fund's rows are one slice of each stretch (sorted by code and day).
        self._rows: dict[str, list[tuple[int, slice]]] = {}
        for i, rows in enumerate(stretches):
            for code, rows_of_code in slices_by_code(rows["ts_code"]).items():
                self._rows.setdefault(code, []).append((i, rows_of_code))

    def codes(self) -> list[str]:
        """The funds (and the portfolio) with new days, in the order of the run's first stretch that has them."""
        return list(self._rows)

    def rows(self, code: str) -> pd.DataFrame:
        """A fund's ``series_rows`` of every stretch, in day order."""
        pieces = [self._stretches[i].iloc[rows] for i, rows in self._rows[code]]
        return pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True)


def fund_new_days(code: str, rows: pd.DataFrame, has_equity: bool) -> dict:
    """A fund's new days from its ``series_rows`` (``RunSeries``): ``{"name", "series": {"dates", ...}}``."""
    if code == PORTFOLIO:
        return {
            "name": PORTFOLIO_NAME,
            "series": {
                "dates": date_texts(rows["trade_date"]),
                "strategy_equity": _equity(rows["strategy_total_return"]),
                "hold_equity": _equity(rows["buy_and_hold_total_return"]),
            },
        }
    series = {
        "dates": date_texts(rows["trade_date"]),
        "close": rounded(rows["close"], 3),
        "factor": rounded(rows["adj_factor"], 6) if "adj_factor" in rows else [None] * len(rows),
        "ma_short": rounded(rows["ma_short"], 3),
        "ma_long": rounded(rows["ma_long"], 3),
        "state": texts(rows["state"]),
        "pct": rounded(rows["pct"], 2),
    }
    if has_equity:
        series["strategy_equity"] = _equity(rows["strategy_total_return"])
        series["hold_equity"] = _equity(rows["buy_and_hold_total_return"])
    return {"name": rows["name"].iloc[-1], "series": series}


def merge_series(stored: dict | None, new: dict) -> dict:
    """The stored days with ``new``'s days (consecutive published days) added, a day in both taken from
    ``new``, in date order. Only the stored days within ``new``'s span are looked at one by one: a daily run
    adds a day to a decade."""
    columns = [c for c in new if c != "dates"]
    if not stored:
        return {"dates": list(new["dates"]), **{c: list(new[c]) for c in columns}}
    dates = stored["dates"]
    kept = {c: stored.get(c, [None] * len(dates)) for c in columns}
    lo, hi = bisect.bisect_left(dates, new["dates"][0]), bisect.bisect_right(dates, new["dates"][-1])
    # A stored day inside the span that the run did not publish (held back this time) stays.
    rows = {dates[i]: [kept[c][i] for c in columns] for i in range(lo, hi)}
    rows.update((day, [new[c][i] for c in columns]) for i, day in enumerate(new["dates"]))
    span = sorted(rows)
    merged = {"dates": dates[:lo] + span + dates[hi:]}
    for k, c in enumerate(columns):
        merged[c] = kept[c][:lo] + [rows[d][k] for d in span] + kept[c][hi:]
    return merged


def fund_document(
    code: str,
    name: str,
    series: dict,
    strategy: dict,
    backtest: dict | None,
    trades: list,
    tearsheet: dict | None = None,
) -> dict:
    """A fund's published data: its series, and the backtest's figures as of its last day when ``backtest``
    (that day's published backtest document) is given, with the day's ``tearsheet``."""
    as_of = series["dates"][-1]
    figures = None
    if backtest is not None and backtest["as_of"] == as_of:
        if code == PORTFOLIO:
            figures = backtest["portfolio"]
        else:
            figures = next((f for f in backtest["funds"] if f["ts_code"] == code), None)
    terms = {"start": backtest["start"], **backtest["settings"]} if figures is not None else None
    return {
        "ts_code": code,
        "name": name,
        "as_of": as_of,
        "strategy": strategy,
        "backtest": terms,
        "figures": figures,
        "trades": trades,
        "tearsheet": tearsheet if figures is not None else None,
        "series": series,
    }


def document_bytes(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


_REPORTED = {State.HOLD, State.EMPTY}


def crosses(series: dict) -> list[dict]:
    """Every BUY and SELL day, newest first, with the regime it started: its last day, its length in
    trading days and its % change as the report of its last day published it."""
    states = series["state"]
    starts = [i for i, state in enumerate(states) if state in (State.BUY, State.SELL)]
    regimes = []
    for k, i in enumerate(starts):
        end = (starts[k + 1] if k + 1 < len(starts) else len(states)) - 1
        # The regime's last report: a day without data in it (a suspension) has no % change. Looked for from
        # the end: it is nearly always the regime's last day.
        last = next((j for j in range(end, i, -1) if states[j] in _REPORTED), i)
        regimes.append(
            {
                "day": series["dates"][i],
                "state": states[i],
                "close": series["close"][i],
                "last_day": series["dates"][last],
                "days": last - i + 1,
                "pct": series["pct"][last] if last > i else 0.0,
            }
        )
    return regimes[::-1]


FRACTIONS = {"total_return", "cagr", "max_drawdown", "volatility", "win_rate", "exposure"}
METRIC_LABELS = {
    "total_return": "累计收益",
    "cagr": "年化收益",
    "max_drawdown": "最大回撤",
    "max_drawdown_peak": "回撤起点",
    "max_drawdown_trough": "回撤低点",
    "volatility": "年化波动",
    "sharpe": "夏普比率",
    "calmar": "卡玛比率",
    "trades": "交易次数",
    "win_rate": "胜率",
    "exposure": "持仓时间占比",
    "fees": "费用(元)",
}


def _value(metric: str, value, digits: int = 2) -> str:
    """A figure as the tables show it: fractions as %, prices (``digits`` 3) as published."""
    if value is None:
        return "-"
    if metric in FRACTIONS:
        return f"{value * 100:.2f}%"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(css: str, headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _metrics(figures: dict) -> str:
    strategy, hold = figures["strategy"] or {}, figures["buy_and_hold"] or {}
    rows = [
        [METRIC_LABELS[m], _value(m, strategy.get(m)), _value(m, hold.get(m)) if m in hold else ""]
        for m in METRIC_LABELS
        if m in strategy or m in hold
    ]
    return _table("metrics", ["指标", "策略", "买入持有"], rows)


def _trades(trades: list[dict]) -> str:
    rows = [
        [
            t["signal_day"],
            t["entry_day"],
            _value("", t["entry_price"], 3),
            t["exit_signal_day"] or "-",
            t["exit_day"] or "持有中",
            _value("", t["exit_price"], 3),
            str(t["shares"]),
            _value("", t["fees"]),
            f'<span class="{"up" if (t["return"] or 0) > 0 else "down"}">{_value("total_return", t["return"])}</span>',
        ]
        for t in reversed(trades)
    ]
    headers = ["买入信号", "买入日", "买入价", "卖出信号", "卖出日", "卖出价", "份额", "费用", "收益率"]
    return _table("trades", headers, rows) if rows else "<p>回测期内没有交易。</p>"


SLEEVE_LABELS = {"strategy": "策略", "buy_and_hold": "买入持有"}
TEARSHEET_LABELS = {
    "sortino": "索提诺比率",
    "alpha": "阿尔法(年化)",
    "beta": "贝塔",
    "closed_trades": "已平仓交易",
    "profit_factor": "盈亏比",
    "expectancy": "每笔期望收益",
    "average_holding_days": "平均持有交易日",
    "best_trade": "最佳交易",
    "worst_trade": "最差交易",
}
TEARSHEET_FRACTIONS = {"alpha", "expectancy", "best_trade", "worst_trade"}


def _tearsheet_value(metric: str, value) -> str:
    if value is None:
        return "-"
    if metric in TEARSHEET_FRACTIONS:
        return f"{value * 100:.2f}%"
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def _month_cell(value: float | None) -> str:
    """A month's return, shaded by its size: red for a gain, green for a loss, as the market colours them."""
    if value is None:
        return "<td>-</td>"
    level = min(3, 1 + int(abs(value) / 0.04)) if value else 0
    shade = f' class="{"p" if value > 0 else "n"}{level}"' if level else ""
    shown = f"{value * 100:.1f}"
    return f"<td{shade}>{'0.0' if shown == '-0.0' else shown}</td>"


def _monthly_returns(sheet: dict) -> str:
    years = sorted(sheet["strategy"]["yearly_returns"], reverse=True)
    head = "".join(f"<th>{m}月</th>" for m in range(1, 13))
    rows = []
    for year in years:
        for k, sleeve in enumerate(SLEEVE_LABELS):
            months = sheet[sleeve]["monthly_returns"]
            cells = "".join(_month_cell(months.get(f"{year}-{m:02d}")) for m in range(1, 13))
            label = f"{year} {SLEEVE_LABELS[sleeve]}" if not k else SLEEVE_LABELS[sleeve]
            whole = _month_cell(sheet[sleeve]["yearly_returns"].get(year))
            rows.append(f"<tr><td>{label}</td>{cells}{whole}</tr>")
    return (
        f'<div class="scroll"><table class="months"><thead><tr><th>年份</th>{head}<th>全年</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _drawdowns(sheet: dict) -> str:
    rows = [
        [
            SLEEVE_LABELS[sleeve],
            e["peak"],
            e["trough"],
            e["recovery"] or "未恢复",
            f'<span class="down">{e["depth"] * 100:.2f}%</span>',
            str(e["days"]),
        ]
        for sleeve in SLEEVE_LABELS
        for e in sheet[sleeve]["drawdowns"]
    ]
    headers = ["", "高点", "低点", "恢复", "深度", "自然日"]
    return _table("drawdowns", headers, rows) if rows else "<p>回测期内没有回撤。</p>"


def _tearsheet(sheet: dict, code: str) -> list[str]:
    """The tearsheet's sections: its ratios and trade statistics, the monthly returns, the deepest drawdowns,
    the rolling Sharpe ratio's chart and the downloads."""
    strategy, hold, relative = sheet["strategy"], sheet["buy_and_hold"], sheet["relative"]
    rows = [[TEARSHEET_LABELS["sortino"], *(_tearsheet_value("sortino", s["sortino"]) for s in (strategy, hold))]]
    rows += [[TEARSHEET_LABELS[m], _tearsheet_value(m, relative[m]), ""] for m in ("alpha", "beta")]
    rows += [[TEARSHEET_LABELS[m], _tearsheet_value(m, strategy[m]), ""] for m in list(TEARSHEET_LABELS)[3:]]
    downloads = " · ".join(
        f'<a href="../backtests/{path}" download>{label}</a>'
        for path, label in (
            (f"csv/{code}.equity.csv", "每日净值 (CSV)"),
            (f"csv/{code}.trades.csv", "交易记录 (CSV)"),
            (f"tearsheets/{code}.json", "全部指标 (JSON)"),
        )
    )
    return [
        '<h2 id="tearsheet">风险与交易统计</h2>',
        f'<p class="meta">截至 {sheet["as_of"]}, 自回测开始; <a href="../rules.html#tearsheet">各指标的定义</a></p>',
        _table("metrics", ["指标", "策略", "买入持有"], rows),
        "<h2>月度收益 (%)</h2>",
        _monthly_returns(sheet),
        "<h2>最深的回撤</h2>",
        _drawdowns(sheet),
        "<h2>滚动夏普比率 (244个交易日)</h2>",
        NO_SCRIPT,
        '<div id="rolling-sharpe-chart" class="chart short"></div>',
        f'<p class="downloads">下载: {downloads}</p>',
    ]


def _crosses(series: dict) -> str:
    rows = [
        [
            r["day"],
            f'<span class="state {r["state"]}">{STATE_LABELS[State(r["state"])]}</span>',
            _value("", r["close"], 3),
            r["last_day"],
            str(r["days"]),
            _value("", r["pct"]) + "%",
        ]
        for r in crosses(series)
    ]
    headers = ["信号日", "信号", "收盘", "至", "交易日数", "区间涨跌"]
    return _table("crosses", headers, rows) if rows else "<p>已发布的交易日里没有出现交叉。</p>"


def _embedded(data: bytes) -> str:
    # "</" would end the script element early: JSON allows it escaped.
    text = data.decode("utf-8").replace("</", "<\\/")
    return f'<script type="application/json" id="fund-data">{text}</script>'


RANGES = '<p class="ranges">' + "".join(
    f'<button type="button" data-years="{years}" hidden>{label}</button>'
    for years, label in ((1, "近1年"), (3, "近3年"), (0, "全部"))
)
NO_SCRIPT = "<noscript><p>图表需要 JavaScript; 下方表格不需要。</p></noscript>"


def render_fund_page(document: dict, data: bytes) -> str:
    """A fund's page: the price with its averages and every cross, the strategy's equity against holding and
    their drawdowns, the backtest's figures and trades, and the signal history; the portfolio's page has
    the equity and figures only. ``data`` is the document as published (``document_bytes``), which the page
    carries for its charts: they draw from a page opened from disk too, where a browser fetches nothing."""
    series, code = document["series"], document["ts_code"]
    portfolio = code == PORTFOLIO
    title = f"{PORTFOLIO_NAME}回测" if portfolio else f"{document['name']}({code})"
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">数据截至 {document["as_of"]}</p>']
    if not portfolio:
        state = State(series["state"][-1])
        strategy = document["strategy"]
        parts.append(
            f'<p>最新: <span class="state {state}">{STATE_LABELS[state]}</span> '
            f"收盘 {_value('', series['close'][-1], 3)}"
            f" · 图中价格与{strategy['short']}日、{strategy['long']}日均线均按最新复权因子前复权; "
            '<span class="up">▲买</span> <span class="down">▼卖</span> 为信号日。</p>'
        )
        parts += ["<h2>价格与均线</h2>", RANGES + "</p>", NO_SCRIPT, '<div id="price-chart" class="chart"></div>']
    if "strategy_equity" in series:
        parts += [
            "<h2>策略净值与买入持有 (下方: 回撤)</h2>",
            *([RANGES + "</p>", NO_SCRIPT] if portfolio else []),
            '<div id="equity-chart" class="chart tall"></div>',
        ]
    terms = document["backtest"]
    if document["figures"] is not None:
        parts.append(
            f"<h2>回测指标</h2><p>自{terms['start']}起, {EXECUTION_LABELS[terms['execution']]}, "
            f"佣金{terms['commission']:.4%} (最低{terms['min_commission']:g}元), 滑点{terms['slippage_bps']:g}个基点, "
            f"每只基金{terms['cash']:,.0f}元; "
            '<a href="../rules.html#backtest">假设与成本</a></p>'
        )
        parts.append(_metrics(document["figures"]))
    if document["tearsheet"] is not None:
        parts += _tearsheet(document["tearsheet"], code)
    if not portfolio:
        parts += ["<h2>回测交易</h2>", _trades(document["trades"]), "<h2>信号历史</h2>", _crosses(series)]
    parts.append(_embedded(data))
    return page_html(title, "\n".join(parts), "../", (CHARTS_LIBRARY, "site.js"))


def fund_data_key(code: str) -> str:
    return f"funds/{code}.json"


def fund_page_key(code: str) -> str:
    return f"funds/{code}.html"
