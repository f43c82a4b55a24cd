// Alchemy's pages: sortable tables, the publication time, the subscribe form and the fund pages' charts.
// Every page reads well without this script; it only adds to them.
(function () {
  "use strict";
  var UP = "#c8102e", DOWN = "#0a7d32", MUTED = "#8c959f";

  function each(selector, action) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), action);
  }

  // Tables sort by a column on a click anywhere in its header cell (again: the other way); the label is a
  // button, so the keyboard sorts too (its click reaches the cell). Blank cells stay last.
  function sortKey(cell, kind) {
    var value = cell.getAttribute("data-v");
    if (value === null) value = cell.textContent;
    if (value === "") return null;
    return kind === "number" ? parseFloat(value) : value;
  }
  each("table.sortable", function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, column) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        var kind = th.getAttribute("data-sort");
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = sortKey(a.cells[column], kind), y = sortKey(b.cells[column], kind);
          if (x === null || y === null) return (x === null) - (y === null);
          var order = kind === "number" ? x - y : String(x).localeCompare(String(y), "zh-CN");
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });

  // The page's own Last-Modified time: the page's bytes stay those of its data, whenever it is re-run.
  var published = new Date(document.lastModified);
  if (!isNaN(published)) {
    each("[data-published]", function (element) {
      element.textContent = "发布于 " + published.toLocaleString("zh-CN", {timeZone: "Asia/Shanghai", hour12: false}) +
        " (北京时间)";
    });
  }

  var form = document.getElementById("subscribe-form");
  if (form) {
    var email = document.getElementById("subscribe-email");
    var status = document.getElementById("subscribe-status");
    var boxes = Array.prototype.slice.call(form.querySelectorAll('input[name="funds"]'));
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var ticked = boxes.filter(function (box) { return box.checked; }).map(function (box) { return box.value; });
      if (!ticked.length) {
        status.dataset.state = "error";
        status.textContent = "请至少勾选一只基金 (全部勾选即每日发送)。";
        return;
      }
      // Every fund ticked is no watchlist: every day, whatever crosses.
      var request = {email: email.value.trim()};
      if (ticked.length < boxes.length) request.funds = ticked;
      status.dataset.state = "busy";
      status.textContent = "正在提交…";
      fetch(form.action, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify(request)
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
  }

  // A heatmap cell's figure: in its tooltip on hover, and under the map on a tap or click (phones have no hover).
  each("figure.heatmap", function (figure) {
    var shown = document.createElement("p");
    shown.className = "cell-value";
    shown.setAttribute("aria-live", "polite");
    figure.appendChild(shown);
    figure.addEventListener("click", function (event) {
      var title = event.target.querySelector && event.target.querySelector("title");
      if (title) shown.textContent = title.textContent;
    });
  });

  var embedded = document.getElementById("fund-data");
  if (!embedded || !window.LightweightCharts) return;
  var fund = JSON.parse(embedded.textContent);
  var LC = window.LightweightCharts;
  var series = fund.series, dates = series.dates;
  var charts = {};

  function points(values, scale) {
    return dates.map(function (day, i) {
      var value = values[i], factor = scale ? scale[i] : 1;
      return value === null || factor === null ? {time: day} : {time: day, value: value * factor};
    });
  }
  function chart(id, precision) {
    return LC.createChart(document.getElementById(id), {
      autoSize: true,
      layout: {attributionLogo: true, fontFamily: getComputedStyle(document.body).fontFamily},
      localization: {locale: "zh-CN", priceFormatter: function (p) { return p.toFixed(precision); }},
      rightPriceScale: {borderVisible: false},
      timeScale: {borderVisible: false}
    });
  }

  if (series.close) {
    // Forward-adjusted to the newest factor: each day's close and averages times its factor over the last.
    var last = null;
    series.factor.forEach(function (f) { if (f !== null) last = f; });
    var scale = series.factor.map(function (f) { return f === null ? null : f / last; });
    var price = chart("price-chart", 3);
    var close = price.addSeries(LC.LineSeries, {color: "#1b1f24", lineWidth: 2, title: "收盘"});
    close.setData(points(series.close, scale));
    price.addSeries(LC.LineSeries, {color: "#d29922", lineWidth: 1, title: fund.strategy.short + "日"})
      .setData(points(series.ma_short, scale));
    price.addSeries(LC.LineSeries, {color: "#2f6fde", lineWidth: 1, title: fund.strategy.long + "日"})
      .setData(points(series.ma_long, scale));
    var markers = [];
    series.state.forEach(function (state, i) {
      if (state === "BUY") markers.push({time: dates[i], position: "belowBar", color: UP, shape: "arrowUp", text: "买"});
      if (state === "SELL") markers.push({time: dates[i], position: "aboveBar", color: DOWN, shape: "arrowDown", text: "卖"});
    });
    charts.price = price;
    charts.priceMarkers = LC.createSeriesMarkers(close, markers);
  }

  if (series.strategy_equity) {
    var equity = chart("equity-chart", 3);
    var drawdown = function (values) {
      var peak = null;
      return values.map(function (v) {
        if (v === null) return null;
        peak = peak === null ? v : Math.max(peak, v);
        return v / peak - 1;
      });
    };
    equity.addSeries(LC.LineSeries, {color: UP, lineWidth: 2, title: "策略"}).setData(points(series.strategy_equity));
    equity.addSeries(LC.LineSeries, {color: MUTED, lineWidth: 2, title: "持有"}).setData(points(series.hold_equity));
    equity.addSeries(LC.AreaSeries, {lineColor: UP, topColor: "rgba(200,16,46,0.05)", bottomColor: "rgba(200,16,46,0.3)",
      lineWidth: 1, title: "策略回撤", invertFilledArea: true}, 1).setData(points(drawdown(series.strategy_equity)));
    equity.addSeries(LC.LineSeries, {color: MUTED, lineWidth: 1, title: "持有回撤"}, 1)
      .setData(points(drawdown(series.hold_equity)));
    var panes = equity.panes();
    panes[0].setStretchFactor(2);
    panes[1].setStretchFactor(1);
    charts.equity = equity;
  }

  if (fund.tearsheet && document.getElementById("rolling-sharpe-chart")) {
    // One point a month; the whole history shown, whatever range the charts above show.
    var rolling = chart("rolling-sharpe-chart", 2);
    var monthly = function (sheet) {
      return sheet.rolling_sharpe.map(function (p) { return p.value === null ? {time: p.day} : {time: p.day, value: p.value}; });
    };
    rolling.addSeries(LC.LineSeries, {color: UP, lineWidth: 2, title: "策略"}).setData(monthly(fund.tearsheet.strategy));
    rolling.addSeries(LC.LineSeries, {color: MUTED, lineWidth: 2, title: "持有"}).setData(monthly(fund.tearsheet.buy_and_hold));
    rolling.timeScale().fitContent();
    charts.rollingSharpe = rolling;
  }

  // The last year at first; the buttons show the last 3 years or the whole history (then drag or zoom).
  function showYears(years) {
    var end = dates[dates.length - 1];
    Object.keys(charts).forEach(function (name) {
      if (name === "rollingSharpe") return;
      var timeScale = charts[name].timeScale && charts[name].timeScale();
      if (!timeScale) return;
      if (!years) return timeScale.fitContent();
      var from = new Date(end);
      from.setFullYear(from.getFullYear() - years);
      var start = from.toISOString().slice(0, 10);
      timeScale.setVisibleRange({from: start < dates[0] ? dates[0] : start, to: end});
    });
  }
  each("[data-years]", function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { showYears(parseInt(button.getAttribute("data-years"), 10)); });
  });
  if (dates.length) showYears(1);
  window.alchemyCharts = charts;
})();
