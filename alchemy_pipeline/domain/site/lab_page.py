"""The parameter lab's page (``lab/<run>/index.html``): the portfolio's heatmaps of every pair of lengths,
the production pair marked, and each fund's standing. Static SVG drawn here: it reads without JavaScript
and from disk."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from alchemy_pipeline.domain.backtest import PORTFOLIO
from alchemy_pipeline.domain.site.pages import cell, header_cells, number_cell, page_html, percent_cell
from alchemy_pipeline.domain.site.report import EXECUTION_LABELS

# Red for high and green for low, as the site colours gains and losses.
_HIGH, _MID, _LOW = (200, 16, 46), (246, 248, 250), (10, 125, 50)
# The map's least cell size and its least size in all (SVG units); a small grid's cells grow to fill it.
_CELL_W, _CELL_H, _MAP_W, _MAP_H = 6, 10, 480, 220
_LEFT, _TOP, _BOTTOM = 28, 8, 30
HEATMAPS = [
    ("out_of_sample_sharpe", "样本外夏普比率", "{:.2f}"),
    ("out_of_sample_cagr", "样本外年化收益", "{:.1%}"),
]
# Under a year out of sample there is no CAGR (the backtest does not annualise): its return instead.
UNANNUALISED = ("out_of_sample_total_return", "样本外总收益 (不足一年, 不年化)", "{:.1%}")


def _colour(value: float, limit: float) -> str:
    if not np.isfinite(value):
        return "#ffffff"
    t = max(-1.0, min(1.0, value / limit)) if limit else 0.0
    end = _HIGH if t >= 0 else _LOW
    mixed = (round(m + (e - m) * abs(t)) for m, e in zip(_MID, end, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*mixed)


def heatmap_svg(rows: pd.DataFrame, column: str, label: str, fmt: str, production: tuple[int, int]) -> str:
    """Short (down) by long (across), each pair's cell coloured by ``column`` around 0 (the scale's ends are the
    largest magnitude on the grid), the production pair outlined; each cell's figure in its tooltip."""
    shorts, longs = sorted(rows["short"].unique()), sorted(rows["long"].unique())
    cell_w, cell_h = max(_CELL_W, _MAP_W // len(longs)), max(_CELL_H, _MAP_H // len(shorts))
    x = {n: _LEFT + i * cell_w for i, n in enumerate(longs)}
    y = {n: _TOP + i * cell_h for i, n in enumerate(shorts)}
    values = rows[column].to_numpy(float)
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if len(finite) else 0.0
    width, height = _LEFT + len(longs) * cell_w + 4, _TOP + len(shorts) * cell_h + _BOTTOM
    cells = []
    for short, long, value in zip(rows["short"].tolist(), rows["long"].tolist(), values.tolist(), strict=True):
        shown = fmt.format(value) if np.isfinite(value) else "-"
        cells.append(
            f'<rect x="{x[long]}" y="{y[short]}" width="{cell_w}" height="{cell_h}" fill="{_colour(value, limit)}">'
            f"<title>{short}/{long}: {shown}</title></rect>"
        )
    marks = []
    if production[0] in y and production[1] in x:
        px, py = x[production[1]], y[production[0]]
        marks.append(
            f'<rect class="production" x="{px - 1}" y="{py - 1}" width="{cell_w + 2}" height="{cell_h + 2}" '
            'fill="none" stroke="#000" stroke-width="2"/>'
        )
    ticks = [
        f'<text x="{x[n] + cell_w / 2}" y="{height - _BOTTOM + 12}" text-anchor="middle">{n}</text>'
        for n in longs
        if n % 10 == 0
    ] + [f'<text x="{_LEFT - 3}" y="{y[n] + cell_h - 1}" text-anchor="end">{n}</text>' for n in shorts if n % 5 == 0]
    axes = (
        f'<text x="{_LEFT + len(longs) * cell_w / 2}" y="{height - 4}" text-anchor="middle">长均线 (日)</text>'
        f'<text x="2" y="{_TOP - 1}" font-size="7">短</text>'
    )
    scale = f"-{fmt.format(limit)} (绿) … 0 … {fmt.format(limit)} (红)" if limit else ""
    return (
        f'<figure class="heatmap"><figcaption>{html.escape(label)}: 纵轴短均线, 横轴长均线; 黑框为当前参数 '
        f"{production[0]}/{production[1]}。色标 {html.escape(scale)}</figcaption>"
        f'<svg viewBox="0 0 {width} {height}" width="100%" style="max-width:{round(width * 1.5)}px" role="img" '
        f'aria-label="{html.escape(label)}" '
        f'font-size="8" data-metric="{column}">{"".join(cells)}{"".join(marks)}{"".join(ticks)}{axes}</svg></figure>'
    )


def _ranked(rank: int | None, ranked: int) -> str:
    return "-" if rank is None else f"第 {rank} / {ranked}"


def _headline_html(standing: dict, hold_sharpe: float | None) -> str:
    ranked = standing["ranked"]
    items = []
    production, best, robust = standing["production"], standing["best_in_sample"], standing["robustness"]
    if production is None:
        items.append("<li>当前参数不在本次网格中。</li>")
    else:
        pair = f"{production['short']}/{production['long']}"
        items.append(
            f"<li>当前参数 {pair}: 样本内夏普 {_sharpe(production['in_sample_sharpe'])}, 排名 "
            f"{_ranked(production['in_sample_rank'], ranked['in_sample'])}; 样本外夏普 "
            f"{_sharpe(production['out_of_sample_sharpe'])}, 排名 "
            f"{_ranked(production['out_of_sample_rank'], ranked['out_of_sample'])}。</li>"
        )
    if best is not None:
        verdict = "保持在前一半" if best["held_up"] else "未能保持在前一半"
        items.append(
            f"<li>样本内最优 {best['short']}/{best['long']} (夏普 {_sharpe(best['in_sample_sharpe'])}) 在样本外夏普 "
            f"{_sharpe(best['out_of_sample_sharpe'])}, 排名 "
            f"{_ranked(best['out_of_sample_rank'], ranked['out_of_sample'])}: {verdict}。</li>"
        )
    if robust is not None and robust["share"] is not None:
        items.append(
            f'<li>稳健度 <strong class="robustness">{robust["share"]:.0%}</strong>: '
            f"当前参数的 {robust['neighbours']} 个邻近组合 (两条均线各 ±{robust['reach']} 日) 中, "
            f"{robust['alike']} 个的样本外夏普与它相差不超过 "
            f"{robust['sharpe_tolerance']}。比例高是平台, 低是孤峰。</li>"
        )
    if hold_sharpe is not None:
        items.append(f"<li>对照: 买入持有的样本外夏普 {_sharpe(hold_sharpe)}。</li>")
    return f"<ul>{''.join(items)}</ul>"


def _sharpe(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


FUND_COLUMNS = [
    ("基金", "text", ""),
    ("当前参数样本外夏普", "number", ""),
    ("样本外排名", "number", ""),
    ("样本内最优", "text", "wide"),
    ("其样本外排名", "number", "wide"),
    ("稳健度", "number", ""),
    ("买入持有样本外夏普", "number", "wide"),
    ("前推选优样本外夏普", "number", "wide"),
    ("前推当前参数样本外夏普", "number", "wide"),
]


def _fund_rows(funds: list[dict], root: str) -> str:
    rows = []
    for fund in funds:
        standing = fund["standing"]
        production, best, robust = standing["production"], standing["best_in_sample"], standing["robustness"]
        hold = fund["buy_and_hold"]["out_of_sample"]["sharpe"]
        share = robust["share"] if robust else None
        walk = fund["walk_forward"]
        name = (
            f'<td class="names" data-v="{html.escape(fund["name"])}"><a href="{root}funds/{fund["ts_code"]}.html">'
            f'{html.escape(fund["name"])}</a><span class="code">{fund["ts_code"]}</span></td>'
        )
        rows.append(
            "<tr>"
            + name
            + cell(*number_cell(production and production["out_of_sample_sharpe"], 2))
            + cell(*number_cell(production and production["out_of_sample_rank"], 0))
            + cell(f"{best['short']}/{best['long']}" if best else "-", "", "wide")
            + cell(*number_cell(best and best["out_of_sample_rank"], 0), "wide")
            + cell(*percent_cell(share))
            + cell(*number_cell(hold, 2), "wide")
            + cell(*number_cell(walk["chosen"]["mean"], 2), "wide")
            + cell(*number_cell(walk["production"]["mean"], 2), "wide")
            + "</tr>"
        )
    return "".join(rows)


def _mean_sd(summary: dict) -> str:
    if summary["mean"] is None:
        return "-"
    sd = f" ± {summary['sd']:.2f}" if summary["sd"] is not None else ""
    return f"{summary['mean']:.2f}{sd} ({summary['folds_scored']} 折)"


def walk_forward_html(walk: dict, production: tuple[int, int]) -> str:
    """The portfolio's folds: each fold's days, the pair it chose and the out-of-sample Sharpe ratio of it and
    of the production pair; then their mean and sample standard deviation."""
    rows = []
    for k, fold in enumerate(walk["folds"], 1):
        chosen = fold["chosen"]
        rows.append(
            f"<tr><td>{k}</td><td>{fold['in_sample']['first']}–{fold['in_sample']['last']}</td>"
            f"<td>{fold['out_of_sample']['first']}–{fold['out_of_sample']['last']}</td>"
            f"<td>{chosen['short']}/{chosen['long']}</td>"
            f"<td>{_sharpe(fold['chosen_out_of_sample_sharpe'])}</td>"
            f"<td>{_sharpe(fold['production_out_of_sample_sharpe'])}</td></tr>"
            if chosen
            else f"<tr><td>{k}</td><td colspan=5>-</td></tr>"
        )
    head = (
        "<tr><th>折</th><th>样本内</th><th>样本外</th><th>样本内最优</th><th>其样本外夏普</th>"
        f"<th>{production[0]}/{production[1]} 样本外夏普</th></tr>"
    )
    summary = (
        f"<p>样本外夏普的均值 ± 样本标准差: 每折选出的参数 {_mean_sd(walk['chosen'])}; "
        f"当前参数 {production[0]}/{production[1]} {_mean_sd(walk['production'])}。</p>"
    )
    table = f'<table class="walk-forward"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<div class="scroll">{table}</div>{summary}'


def render_lab_page(document: dict, portfolio_rows: pd.DataFrame, root: str = "../../") -> str:
    """The page of one sweep (``sweep.json``'s ``document``; ``portfolio_rows``: the portfolio's pairs)."""
    terms = document["settings"]
    production = (terms["production"]["short"], terms["production"]["long"])
    grid = terms["grid"]
    portfolio = document["portfolio"]
    heatmaps = []
    for column, label, fmt in HEATMAPS:
        if column == "out_of_sample_cagr" and portfolio_rows[column].isna().all():
            column, label, fmt = UNANNUALISED
        heatmaps.append(heatmap_svg(portfolio_rows, column, label, fmt, production))
    body = f"""<h1>参数实验室: 均线长度扫描</h1>
<p class="meta">{document["start"]} 至 {document["end"]}; 样本内至 {document["split_day"]} 之前
(前 {terms["in_sample"]:.0%} 的交易日), 样本外自 {document["split_day"]} 起重新建仓。
网格: 短均线 {grid["short_from"]}–{grid["short_to"]}, 长均线 {grid["long_from"]}–{grid["long_to"]},
步长 {grid["step"]}, 共 {grid["pairs"]} 组。成本与回测相同: {EXECUTION_LABELS[terms["execution"]]},
佣金 {terms["commission"]:.4%} (每笔最低 {terms["min_commission"]:g} 元), 滑点 {terms["slippage_bps"]:g} 个基点,
每手 {terms["lot"]} 份。</p>
<h2>等权组合</h2>
{_headline_html(portfolio["standing"], portfolio["buy_and_hold"]["out_of_sample"]["sharpe"])}
{"".join(heatmaps)}
<h3 id="walk-forward">滚动前推检验 ({terms["walk_forward_folds"]} 折)</h3>
<p>把期间的交易日等分为 {terms["walk_forward_folds"] + 1} 段; 第 k 折以期初至第 k 段之前为样本内,
选出样本内夏普比率最高的参数, 再以第 k 段为样本外, 计算它与当前参数在这段时间里的夏普比率
(策略照常运行, 样本内建立的持仓延续)。一次切分可能碰巧,
多折的均值与离散度说明选择是否稳定。</p>
{walk_forward_html(portfolio["walk_forward"], production)}
<h2>各基金</h2>
<div class="scroll"><table class="sortable"><thead><tr>{header_cells(FUND_COLUMNS)}</tr></thead>
<tbody>{_fund_rows(document["funds"], root)}</tbody></table></div>
<h2>方法</h2>
<p>每组参数的信号与生产规则相同 (前复权收盘价的简单移动平均, 以整数精确计算并四舍五入到3位小数, 金叉买、死叉卖,
相等时沿用前状态), 按基金全部历史而非300日窗口求和, 结果与已发布的信号逐日相同。
每组参数按回测的规则与成本交易, 指标名称与回测相同。排名按夏普比率, 1 为最好。</p>
<p>数据: <a href="sweep.json">sweep.json</a> (每组参数的全部指标), <a href="sweep.parquet">sweep.parquet</a>。</p>"""
    return page_html("参数实验室", body, root)


def portfolio_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["ts_code"] == PORTFOLIO]
