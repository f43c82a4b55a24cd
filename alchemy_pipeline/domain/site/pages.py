"""The published site's pages: each day's page and the front page (a sortable table of every fund), the
history, the rules, and one page per fund with its charts' data.

Pages are plain HTML that reads well with JavaScript off; ``static/site.js`` sorts the tables, shows when a
page was published (the file's own Last-Modified time, so that re-running a day rewrites identical bytes)
and draws the charts with TradingView's Lightweight Charts, served from the site itself.
"""

from __future__ import annotations

import bisect
import functools
import html
import json
from importlib import resources

from alchemy_pipeline.domain.backtest import PORTFOLIO, PORTFOLIO_NAME
from alchemy_pipeline.domain.signals.rule import State
from alchemy_pipeline.domain.site.feed import FEED_KEY, FEED_TITLE
from alchemy_pipeline.domain.site.report import (
    BACKTEST_UNAVAILABLE,
    EXECUTION_LABELS,
    STATE_LABELS,
    backtest_line,
    render_text,
    report_json,
    report_sections,
)

CHARTS_LIBRARY = "lightweight-charts.standalone.production.js"
# Served from the site itself, with the library's licence and notice (Apache-2.0).
STATIC_FILES = [CHARTS_LIBRARY, "lightweight-charts.LICENSE.txt", "site.js"]
STATE_ORDER = [State.BUY, State.SELL, State.HOLD, State.EMPTY, State.INSUFFICIENT_HISTORY, State.NO_DATA]

_STYLE = """
:root{--up:#c8102e;--down:#0a7d32;--muted:#59636e;--line:#d8dee4}
*{box-sizing:border-box}
body{font-family:-apple-system,"PingFang SC","Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif;
margin:0 auto;padding:1rem;max-width:64rem;color:#1b1f24;background:#fff;line-height:1.5}
h1{font-size:1.3rem;margin:.5rem 0}h2{font-size:1.1rem;margin-top:1.5rem;border-bottom:1px solid var(--line)}
nav.site{display:flex;flex-wrap:wrap;gap:.4rem 1rem;font-size:.95rem;border-bottom:1px solid var(--line);
padding-bottom:.4rem}
.meta{color:var(--muted);font-size:.9rem}.pager{display:flex;justify-content:space-between;gap:1rem}
.notice{background:#fff3cd;border:1px solid #e0c36a;padding:.5rem;border-radius:4px;font-weight:bold}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:.9rem;font-variant-numeric:tabular-nums}
td,th{padding:.3rem .4rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
td:first-child,th:first-child,td.names{text-align:left;white-space:normal}
th[data-sort]{cursor:pointer}
th button{font:inherit;font-weight:bold;background:none;border:0;padding:0;cursor:pointer;color:inherit}
th[aria-sort=ascending] button::after{content:" ▲"}th[aria-sort=descending] button::after{content:" ▼"}
.code{color:var(--muted);font-size:.8rem;display:block}
.BUY{color:#fff;background:var(--up)}.SELL{color:#fff;background:var(--down)}.HOLD{color:var(--up)}
.EMPTY{color:var(--down)}.NO_DATA,.INSUFFICIENT_HISTORY{color:var(--muted)}
.state{display:inline-block;padding:0 .35rem;border-radius:3px}
.up{color:var(--up)}.down{color:var(--down)}
.chart{height:22rem;margin:.5rem 0}.chart.tall{height:28rem}.chart.short{height:16rem}
table.months td{padding:.2rem .3rem}.p1{background:#fbe5e8}.p2{background:#f5bcc4}.p3{background:#ec8796}
.n1{background:#e2f3e7}.n2{background:#b5dfc1}.n3{background:#7cc594}
figure.heatmap{margin:1rem 0}figcaption{font-size:.85rem;color:var(--muted)}
.ranges button{margin-right:.3rem}
form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}input[type=email]{flex:1 1 12rem;padding:.5rem;
font-size:1rem}button{padding:.3rem .8rem;font-size:1rem}
#subscribe-funds{flex-basis:100%}#subscribe-funds fieldset{border:0;padding:0;margin:0;display:flex;flex-wrap:wrap;
gap:.2rem 1rem}
#subscribe-funds label.fund{white-space:nowrap;font-size:.9rem}
#subscribe-status[data-state=ok]{color:#0a7d32}#subscribe-status[data-state=error]{color:#b00020}
footer{margin-top:2rem;font-size:.8rem;color:var(--muted)}
@media (max-width:40rem){body{padding:.5rem}table{font-size:.78rem}td,th{padding:.25rem}.wide{display:none}}
"""
_DISCLAIMER = "本站信号由公开规则机械生成, 仅供研究参考, 不构成投资建议。过往表现不代表未来收益。"


def static_files() -> dict[str, bytes]:
    """The site's static files (``static/<name>``) as shipped in this package."""
    folder = resources.files("alchemy_pipeline") / "site_static"
    return {name: (folder / name).read_bytes() for name in STATIC_FILES}


def page_html(title: str, body: str, root: str, scripts: tuple[str, ...] = ("site.js",)) -> str:
    """A page at ``root`` (the relative path back to the site's top, "" or "../"), with the site's links."""
    nav = (
        f'<nav class="site"><a href="{root}index.html">最新信号</a><a href="{root}history.html">历史</a>'
        f'<a href="{root}funds/{PORTFOLIO}.html">组合回测</a><a href="{root}rules.html">规则与说明</a></nav>'
    )
    tags = "".join(f'<script src="{root}static/{name}" defer></script>' for name in scripts)
    return (
        '<!doctype html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n<link rel="icon" href="data:,">\n'
        f'<link rel="alternate" type="application/atom+xml" title="{FEED_TITLE}" href="{root}{FEED_KEY}">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n{tags}\n</head>\n<body>\n{nav}\n"
        f'<main>{body}</main>\n<footer>{_DISCLAIMER} <a href="{root}rules.html#disclaimer">说明</a></footer>\n'
        "</body>\n</html>\n"
    )


def number_cell(value, digits: int, suffix: str = "") -> tuple[str, str]:
    """A cell's text and its sort key."""
    if value is None:
        return "-", ""
    return f"{value:.{digits}f}{suffix}", repr(value)


def percent_cell(fraction) -> tuple[str, str]:
    return ("-", "") if fraction is None else (f"{fraction * 100:.1f}%", repr(fraction))


def cell(text: str, key: str, css: str = "") -> str:
    return escaped_cell(html.escape(text), html.escape(key), css)


def escaped_cell(text: str, key: str, css: str = "") -> str:
    """``cell`` of a text and key already safe in HTML, as the numbers and dates of ``number_cell`` and
    ``percent_cell`` are: a day page of 1,500 funds has some 15,000 cells."""
    return f'<td{f" class={css!r}" if css else ""} data-v="{key}">{text}</td>'


def _sign_class(value) -> str:
    return "" if not value else ("up" if value > 0 else "down")


def _annual(figures: dict | None) -> tuple[str, str]:
    """A sleeve's rate a year, or under a year its return marked as not annualised."""
    if figures is None:
        return "-", ""
    if figures["cagr"] is not None:
        return percent_cell(figures["cagr"])
    text, key = percent_cell(figures["total_return"])
    return f"{text}(累计)", key


def header_cells(columns: list[tuple[str, str, str]]) -> str:
    return "".join(
        f'<th{f" class={css!r}" if css else ""} data-sort="{kind}"><button type="button">{label}</button></th>'
        for label, kind, css in columns
    )


SLEEVES = ("strategy", "buy_and_hold")
TABLE_COLUMNS = [
    ("基金", "text", ""),
    ("状态", "number", ""),
    ("收盘", "number", ""),
    ("短均线", "number", "wide"),
    ("长均线", "number", "wide"),
    ("信号日", "text", "wide"),
    ("天数", "number", ""),
    ("涨跌", "number", ""),
    ("策略年化", "number", ""),
    ("持有年化", "number", ""),
]


def signal_table(report: dict, root: str) -> str:
    """Every fund of the day in one table: its state, prices, the current signal and its backtest. Written a
    column at a time: a day of 1,500 funds has 15,000 cells, and a decade of days is rendered in a backfill."""
    entries = report["signals"]
    backtest = {f["ts_code"]: f for f in (report.get("backtest") or {}).get("funds", [])}
    traded = [backtest.get(entry["ts_code"]) for entry in entries]
    columns = [
        [_fund_cell(entry["ts_code"], entry["name"], root) for entry in entries],
        [_state_cell(entry["state"]) for entry in entries],
        _number_cells([entry["close"] for entry in entries], 3),
        _number_cells([entry["ma_short"] for entry in entries], 3, "wide"),
        _number_cells([entry["ma_long"] for entry in entries], 3, "wide"),
        [escaped_cell(entry["since"] or "-", entry["since"] or "", "wide") for entry in entries],
        _number_cells([entry["days"] for entry in entries], 0),
        _number_cells([entry["pct"] for entry in entries], 2, signed=True, suffix="%"),
        *(
            [escaped_cell(*_annual(t and t[s]), _sign_class(t and t[s]["total_return"])) for t in traded]
            for s in SLEEVES
        ),
    ]
    rows = "".join(f"<tr>{''.join(cells)}</tr>" for cells in zip(*columns, strict=True))
    return (
        f'<div class="scroll"><table class="sortable signals"><thead><tr>{header_cells(TABLE_COLUMNS)}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def _number_cells(values: list, digits: int, css: str = "", signed: bool = False, suffix: str = "") -> list[str]:
    """``escaped_cell(*number_cell(value, digits, suffix), css)`` of each value, its class the value's sign
    when ``signed``."""
    opening = {c: f'<td{f" class={c!r}" if c else ""} data-v="' for c in {css, "up", "down", ""}}
    return [
        f'{opening[css]}">-</td>'
        if value is None
        else f'{opening[_sign_class(value) if signed else css]}{value!r}">{value:.{digits}f}{suffix}</td>'
        for value in values
    ]


@functools.cache
def _fund_cell(code: str, name: str, root: str) -> str:
    """A fund's cell, the same on every day's page: written once per fund."""
    name = html.escape(name)
    return (
        f'<td data-v="{name}"><a href="{root}funds/{html.escape(code)}.html">{name}</a>'
        f'<span class="code">{html.escape(code)}</span></td>'
    )


@functools.cache
def _state_cell(state: str) -> str:
    return (
        f'<td data-v="{STATE_ORDER.index(State(state))}"><span class="state {state}">'
        f"{STATE_LABELS[State(state)]}</span></td>"
    )


def _day_summary(report: dict, root: str) -> str:
    """The day's notice, its counts and the portfolio's backtest line above the table."""
    params = report["strategy"]
    counts = {state: 0 for state in STATE_ORDER}
    for entry in report["signals"]:
        counts[State(entry["state"])] += 1
    parts = []
    if report.get("notice"):
        parts.append(f'<p class="notice" role="alert">{html.escape(report["notice"])}</p>')
    parts.append(
        f"<p>{params['short']}日与{params['long']}日简单均线, 前复权收盘价: "
        + ", ".join(f"{STATE_LABELS[s]} {counts[s]}" for s in STATE_ORDER if counts[s])
        + "。点击表头排序。</p>"
    )
    if report.get("backtest"):
        summary = report["backtest"]
        line = backtest_line(PORTFOLIO_NAME, summary["portfolio"])
        parts.append(
            f"<p>回测(自{summary['start']}起, {EXECUTION_LABELS[summary['execution']]}, 扣除佣金) "
            f'<a href="{root}funds/{PORTFOLIO}.html">{html.escape(line)}</a></p>'
        )
    elif "backtest" in report:
        parts.append(f"<p>{html.escape(BACKTEST_UNAVAILABLE)}</p>")
    return "\n".join(parts)


def _neighbours(day: str, days: list[str]) -> tuple[str | None, str | None]:
    """The published days before and after ``day`` in ``days`` (sorted)."""
    i = bisect.bisect_left(days, day)
    after = i + 1 if i < len(days) and days[i] == day else i
    return (days[i - 1] if i > 0 else None), (days[after] if after < len(days) else None)


def _dated(day: str) -> str:
    return f'<p class="meta">数据日期 {day} · <span data-published>发布时间见页面文件</span></p>'


def render_day_page(report: dict, days: list[str]) -> str:
    """A day's page (``reports/YYYY-MM-DD.html``), with links to the published days around it in ``days``."""
    day = report["trade_date"]
    before, after = _neighbours(day, days)
    pager = (
        '<p class="pager">'
        + (f'<a rel="prev" href="{before}.html">← {before}</a>' if before else "<span></span>")
        + (f'<a rel="next" href="{after}.html">{after} →</a>' if after else "<span></span>")
        + "</p>"
    )
    title = f"双均线策略交易信号 {day}"
    body = f"<h1>{title}</h1>{_dated(day)}{pager}\n{_day_summary(report, '../')}\n{signal_table(report, '../')}"
    return page_html(title, body, "../")


def render_files(report: dict, days: list[str]) -> dict[str, bytes]:
    """A day's published files by suffix: text, page and JSON (the JSON last: it marks the day as
    published), each fund's line formatted once."""
    return {
        ".txt": render_text(report, report_sections(report)).encode("utf-8"),
        ".html": render_day_page(report, days).encode("utf-8"),
        ".json": report_json(report),
    }


_SUBSCRIBE_FORM = """<section aria-labelledby="subscribe-title"><h2 id="subscribe-title">邮件订阅</h2>
<form id="subscribe-form" action="{url}" method="post"><label for="subscribe-email">电子邮箱</label>
<input id="subscribe-email" name="email" type="email" required maxlength="254" autocomplete="email"
placeholder="name@example.com"> <button type="submit">订阅</button>
<details id="subscribe-funds"><summary>只关注部分基金 (默认全部 {count} 只, 每日发送)</summary>
<p>只勾选部分基金时, 仅在其中有基金出现买入或卖出信号的交易日发送 (最多 {most} 只)。</p>
<fieldset><legend>关注的基金</legend>{boxes}</fieldset></details></form>
<p id="subscribe-status" role="status" aria-live="polite"></p>
<p>每个交易日收盘后发送一封邮件; 订阅后请点击确认邮件中的链接。已订阅的邮箱再次提交即修改关注列表。</p></section>"""
# The subscription Lambda's limit of funds in one watchlist.
MAX_WATCHED_FUNDS = 50
_SUBSCRIBE_OFF = """<section aria-labelledby="subscribe-title"><h2 id="subscribe-title">邮件订阅</h2>
<p id="subscribe-off">本站未配置订阅接口。部署到 AWS 时 (ALCHEMY_ENV=aws), 将 ALCHEMY_SUBSCRIBE_URL 设为订阅 API 的地址,
此处即显示订阅表单; 见 deploy/README.md。</p></section>"""


def _subscribe_form(url: str, funds: list[dict]) -> str:
    """The form, with a box per fund, all ticked: a visitor who leaves them all gets every day."""
    boxes = "".join(
        f'<label class="fund"><input type="checkbox" name="funds" value="{html.escape(f["ts_code"])}" checked> '
        f"{html.escape(f['name'])} ({html.escape(f['ts_code'])})</label>"
        for f in funds
    )
    return _SUBSCRIBE_FORM.format(url=html.escape(url), count=len(funds), most=MAX_WATCHED_FUNDS, boxes=boxes)


def render_index(latest: dict, days: list[str], subscribe_url: str | None = None) -> str:
    """The front page: the newest day's table, and the subscribe form where a subscription endpoint exists
    (otherwise how to enable it)."""
    day = latest["trade_date"]
    before, _ = _neighbours(day, days)
    title = "双均线策略交易信号"
    form = _subscribe_form(subscribe_url, latest["signals"]) if subscribe_url else _SUBSCRIBE_OFF
    body = (
        f'<h1>{title}</h1><h2 id="latest">最新: <a href="reports/{day}.html">{day}</a></h2>{_dated(day)}'
        + (f'<p class="pager"><a rel="prev" href="reports/{before}.html">← {before}</a></p>' if before else "")
        + f"\n{_day_summary(latest, '')}\n{signal_table(latest, '')}\n{form}"
        + f'\n<p><a href="history.html">全部 {len(days)} 个交易日的历史</a></p>'
    )
    return page_html(title, body, "")


def history_entry(report: dict) -> dict:
    """A day's line in the history: the funds that crossed that day."""
    crossed = {State.BUY: [], State.SELL: []}
    for entry in report["signals"]:
        if entry["state"] in crossed:
            crossed[State(entry["state"])].append({"ts_code": entry["ts_code"], "name": entry["name"]})
    return {"trade_date": report["trade_date"], "buy": crossed[State.BUY], "sell": crossed[State.SELL]}


def history_json(entries: list[dict]) -> bytes:
    """``{"days": [...], "crosses": [...]}``, both newest first: every published day, and its crosses."""
    ordered = sorted(entries, key=lambda e: e["trade_date"], reverse=True)
    days = ",\n".join(f"    {json.dumps(e['trade_date'])}" for e in ordered)
    crosses = ",\n".join(f"    {json.dumps(e, ensure_ascii=False)}" for e in ordered)
    return f'{{\n  "days": [\n{days}\n  ],\n  "crosses": [\n{crosses}\n  ]\n}}\n'.encode()


def _names(funds: list[dict], state: State) -> str:
    return "、".join(
        f'<a class="state {state}" href="funds/{html.escape(f["ts_code"])}.html">{html.escape(f["name"])}</a>'
        for f in funds
    )


def render_history(entries: list[dict]) -> str:
    """Every published day, newest first, with its counts of BUY and SELL and the funds that crossed."""
    rows = "".join(
        f'<tr><td><a href="reports/{e["trade_date"]}.html">{e["trade_date"]}</a></td>'
        f'<td data-v="{len(e["buy"])}">{len(e["buy"])}</td><td data-v="{len(e["sell"])}">{len(e["sell"])}</td>'
        f'<td class="names">{_names(e["buy"], State.BUY)} {_names(e["sell"], State.SELL)}</td></tr>'
        for e in sorted(entries, key=lambda e: e["trade_date"], reverse=True)
    )
    columns = [("交易日", "text", ""), ("可买", "number", ""), ("可卖", "number", ""), ("发生交叉的基金", "text", "")]
    body = (
        f"<h1>历史信号</h1><p>{len(entries)} 个交易日, 最新在前。</p>"
        f'<div class="scroll"><table class="sortable history"><thead><tr>{header_cells(columns)}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )
    return page_html("历史信号", body, "")


def _lab_section(lab: dict | None) -> str:
    if lab is None:
        return "<p>尚未发布参数扫描: 在 Dagster 中物化 <code>ma_sweep</code> 资产后, 这里链接它的结果。</p>"
    standing = lab["portfolio"]
    production, robust = standing["production"], standing["robustness"]
    pairs = lab["settings"]["grid"]["pairs"]
    lines = [f"{lab['start']} 至 {lab['end']}, 样本外自 {lab['split_day']} 起, 共 {pairs} 组长度。"]
    if production is not None:
        lines.append(
            f"等权组合中当前参数 {production['short']}/{production['long']} 的样本外夏普排名第 "
            f"{production['out_of_sample_rank'] or '-'} / {standing['ranked']['out_of_sample']}"
            + (f", 稳健度 {robust['share']:.0%}" if robust and robust["share"] is not None else "")
            + "。"
        )
    return (
        '<p>均线长度是否只是拟合了过去? <a href="lab/latest/index.html">参数实验室</a>'
        f"对一组长度逐一回测, 分样本内与样本外, 并以热力图展示。最近一次: {' '.join(lines)}</p>"
    )


def render_rules(rule: dict, backtest: dict | None, lab: dict | None = None) -> str:
    """The rule, the data, the backtest's assumptions and costs (from ``backtest``, the newest published
    backtest document, when there is one), the newest parameter sweep (``lab``, its headline), the charts'
    credits and the disclaimer."""
    short, long = rule["short"], rule["long"]
    costs = "<p>尚未发布回测。</p>"
    if backtest is not None:
        terms = backtest["settings"]
        costs = (
            f"<ul><li>自 {backtest['start']} 起, 每只基金 {terms['cash']:,.0f} 元, 闲置现金不计利息; 等权组合为各基金的"
            "资金之和, 晚上市的基金在上市前保持现金。</li>"
            f"<li>成交: {EXECUTION_LABELS[terms['execution']]}; 停牌则顺延至下一根K线。只做多, 全仓进出, 回测开始时已"
            "在进行的持仓不追入。</li>"
            f"<li>成本: 佣金 {terms['commission']:.4%}, 每笔最低 {terms['min_commission']:g} 元, 无印花税; 滑点 "
            f"{terms['slippage_bps']:g} 个基点, 对交易者不利; 每手 {terms['lot']} 份, 只买整手。</li>"
            "<li>持仓按复权因子跟随拆分、合并与分红; 期末未平仓位按最后收盘价计值, 不计卖出费用。</li>"
            "<li>买入持有: 在回测期内基金第一根K线的开盘买入并一直持有, 整手与费用相同。</li>"
            "<li>不足一年不计算年化收益; 年化收益计算至基金最后一根K线。</li>"
            "<li>回测逐日延续: 每日在前一交易日的状态上加入当日行情与信号; 参数、规则或基金列表改变时从 "
            f"{backtest['start']} 起全部重算 (指纹 {backtest.get('fingerprint', '-')})。</li></ul>"
        )
    body = f"""<h1>规则与说明</h1>
<h2 id="rule">交易规则</h2>
<p>每个交易日收盘后, 对每只基金取截至当日300个交易日的日线, 以当日复权因子前复权收盘价, 计算 {short} 日与 {long} 日简单
移动平均 (TA-Lib SMA, 保留3位小数)。</p>
<ul><li><span class="state BUY">可买</span> 金叉: 当日短均线高于长均线, 前一根K线短均线不高于长均线。</li>
<li><span class="state SELL">可卖</span> 死叉: 当日短均线低于长均线, 前一根K线短均线不低于长均线。</li>
<li><span class="state HOLD">持仓</span> / <span class="state EMPTY">空仓</span>:
最近一次交叉为金叉 / 死叉; 两均线相等时沿用上次不相等时的状态。
表中"信号日"为该次交叉的日期, "天数"为至今的自然日数, "涨跌"为信号日以来前复权收盘价的涨跌幅。</li>
<li>无数据: 当日无行情 (停牌、未上市、退市) 或复权因子不可用; 数据不足: 上市不足 {long + 1} 根K线。</li></ul>
<p>颜色按A股习惯: 红色为涨、买, 绿色为跌、卖。</p>
<h2 id="data">数据来源</h2>
<p>Tushare Pro 的基金日线 (fund_daily) 与复权因子 (fund_adj), 每个交易日 18:00 (北京时间) 后获取;
交易日历为上海证券交易所日历 (exchange-calendars, 以 Tushare trade_cal 补充)。
某日行情不合规则或缺数据的基金过多时, 当日报告暂缓发布。</p>
<h2 id="backtest">回测的假设与成本</h2>
{costs}
<p>回测只使用已发布的信号: 暂缓发布的日子 (行情不合规则或缺数据的基金过多) 在回测中视同无K线,
不成交、不计值, 当日的委托顺延至下一个已发布的交易日。某日的指标只读取当日及以前的数据。
若当日回测计算失败, 报告照常发布, 只是不含回测部分。</p>
<h3 id="tearsheet">风险与交易统计的定义</h3>
<p>每只基金与组合的页面给出最新交易日的下列指标 (backtests/tearsheets/&lt;代码&gt;.json), 均由基金每根已发布K线收盘时的
净值计算, 日收益率为当日净值除以前一根K线净值减1 (第一根K线相对于初始资金), 与波动率、夏普比率所用的日收益率相同:</p>
<ul><li>索提诺比率: 日收益率均值除以下行偏差 (日收益率与0取小后的平方的均值再开方), 乘以 √244, 无风险利率为0。</li>
<li>月度与年度收益: 该月 (年) 最后一根K线的净值除以上一月 (年) 最后一根K线的净值减1, 第一个月 (年) 相对于初始资金。</li>
<li>最深的回撤: 净值低于此前最高点 (含初始资金) 的区间中最深的五个, 给出高点、低点、回到高点之日 (未恢复为空) 与
高点至恢复 (或至最新交易日) 的自然日数。</li>
<li>滚动夏普比率: 每月最后一根K线上, 以截至该K线的244根K线的日收益率计算 (样本标准差, 乘以 √244); 不足244根时为空。</li>
<li>交易统计 (已平仓交易, 扣除费用): 盈亏比为盈利交易收益率之和除以亏损交易收益率之和的绝对值; 每笔期望收益为平均收益率;
平均持有交易日为买入日至卖出日之间的K线数的均值; 最佳与最差交易为最高与最低收益率。组合合并所有基金的交易。</li>
<li>贝塔: 策略与买入持有日收益率的样本协方差除以买入持有日收益率的样本方差;
阿尔法: (策略平均日收益率 − 贝塔 × 持有平均日收益率) × 244。</li></ul>
<p>每日净值与交易记录可下载为 CSV (backtests/csv/, UTF-8 带BOM, 可直接用表格软件打开)。</p>
<h2 id="lab">参数实验室</h2>
{_lab_section(lab)}
<h2 id="charts">图表</h2>
<p>图表由 <a href="https://www.tradingview.com/">TradingView</a> 的 Lightweight Charts™ 绘制 (Apache-2.0,
<a href="static/lightweight-charts.LICENSE.txt">许可与声明</a>), 由本站提供, 不加载第三方资源。
关闭 JavaScript 时表格照常可读。</p>
<h2 id="disclaimer">免责声明</h2>
<p>{_DISCLAIMER} 数据可能有误或延迟;
回测忽略了冲击成本、申赎与税费等, 实际交易结果会不同。请独立判断并自行承担风险。</p>"""
    return page_html("规则与说明", body, "")
