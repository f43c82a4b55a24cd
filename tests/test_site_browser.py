"""The published web page in headless Chromium (Debian's chromium, driven by Playwright), served over
HTTP from the site directory, with its subscribe form posting to a local HTTP adapter of the Lambda that
talks to SNS in moto's server mode."""

import functools
import json
import os
import re
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from alchemy_pipeline.domain import lab
from alchemy_pipeline.domain.backtest import BacktestSettings
from alchemy_pipeline.domain.site.publish import publish_sweep
from alchemy_pipeline.infrastructure.storage import LocalBlobStore
from tests.site_fixture import FUNDS, demo_prices, publish_demo_site
from tests.test_subscribe_lambda import load_lambda

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
# Where the tests leave their screenshots (docs/development.md names it): looked at, not compared.
SCREENSHOTS = Path(os.environ.get("ALCHEMY_SCREENSHOTS", Path(__file__).parent.parent / "build" / "screenshots"))
DAYS = 400
LATEST = "2024-06-28"
FUND = "510300.SH"
SWEEP_GRID = lab.Grid(5, 15, 15, 30)


def serve(handler_class) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def lambda_adapter(app):
    """Turns each HTTP request into an API Gateway HTTP API (2.0) event for the handler."""

    class Adapter(BaseHTTPRequestHandler):
        def _relay(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8") if length else None
            event = {
                "version": "2.0",
                "rawPath": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "requestContext": {"http": {"method": self.command, "path": self.path}},
                "body": body,
                "isBase64Encoded": False,
            }
            answer = app.handler(event, None)
            payload = answer["body"].encode("utf-8")
            self.send_response(answer["statusCode"])
            for name, value in answer["headers"].items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_OPTIONS = do_GET = _relay

        def log_message(self, *args):
            pass

    return Adapter


@pytest.fixture
def site(aws, tmp_path, monkeypatch):
    class QuietFiles(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    files = serve(functools.partial(QuietFiles, directory=str(tmp_path)))
    origin = f"http://127.0.0.1:{files.server_address[1]}"
    topic = boto3.client("sns").create_topic(Name=f"page-{uuid.uuid4().hex[:8]}")["TopicArn"]
    monkeypatch.setenv("TOPIC_ARN", topic)
    monkeypatch.setenv("ALLOWED_ORIGIN", origin)
    monkeypatch.setenv("FUND_CODES", ",".join(FUNDS["ts_code"]))
    api = serve(lambda_adapter(load_lambda()))
    signals = publish_demo_site(tmp_path, DAYS, f"http://127.0.0.1:{api.server_address[1]}/subscribe")
    # An analyst's sweep of the same funds, published into the same site.
    start = signals["trade_date"].min().date()
    sweep = lab.run_sweep(
        demo_prices(FUNDS["ts_code"]),
        FUNDS,
        SWEEP_GRID,
        BacktestSettings(start=start),
        signals["trade_date"].max().date(),
    )
    publish_sweep(LocalBlobStore(tmp_path), sweep, "sweep-1")
    yield {"url": origin, "topic": topic, "dir": tmp_path, "signals": signals}
    files.shutdown()
    api.shutdown()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        yield context.new_page()
        browser.close()


def watch(page, origin: str) -> dict[str, list]:
    """The page's console errors, uncaught exceptions and requests to anywhere but the site."""
    seen = {"errors": [], "outside": []}
    page.on("console", lambda message: message.type == "error" and seen["errors"].append(message.text))
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    page.on("request", lambda request: request.url.startswith(origin) or seen["outside"].append(request.url))
    return seen


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_every_page_fits_a_phone_draws_without_errors_and_asks_nothing_of_other_sites(site, page):
    seen = watch(page, site["url"])
    day = site["signals"]["trade_date"].iloc[0].strftime("%Y-%m-%d")
    for path in ["index.html", f"reports/{day}.html", "history.html", "rules.html", f"funds/{FUND}.html",
                 "funds/PORTFOLIO.html", "lab/latest/index.html"]:  # fmt: skip
        page.goto(f"{site['url']}/{path}")
        page.wait_for_load_state("networkidle")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{path} scrolls sideways on a 390 px phone: {width}"
        assert page.locator("nav.site a", has_text="规则与说明").count() == 1, path
        feed = page.locator('link[rel="alternate"][type="application/atom+xml"]')
        assert feed.evaluate("link => link.href") == f"{site['url']}/feed.xml", path
    assert seen == {"errors": [], "outside": []}
    page.goto(f"{site['url']}/index.html")
    shoot(page, "index-phone.png")


def test_front_page_shows_the_latest_day_in_a_table_that_sorts_by_a_column(site, page):
    page.goto(f"{site['url']}/index.html")
    assert page.locator("#latest").inner_text() == f"最新: {LATEST}"
    assert "发布于" in page.locator("[data-published]").inner_text()  # the file's own time, in the browser
    rows = page.locator("table.signals tbody tr")
    assert rows.count() == 3
    column = [h.strip() for h in page.locator("table.signals th").all_inner_texts()].index("涨跌")

    def changes() -> list[float]:
        return [float(v) for v in page.locator(f"table.signals tbody td:nth-child({column + 1})").evaluate_all(
            "cells => cells.map(c => c.dataset.v)")]  # fmt: skip

    header = page.locator("table.signals th", has_text="涨跌")
    header.locator("button").click()
    assert changes() == sorted(changes())
    header.locator("button").press("Enter")  # the keyboard's way
    assert changes() == sorted(changes(), reverse=True)
    # A click in the cell beside its label sorts as well, and only once (the label's click is the cell's).
    cell, label = header.bounding_box(), header.locator("button").bounding_box()
    beside = {"x": cell["width"] - 2, "y": cell["height"] - 2}
    label_right, label_bottom = label["x"] - cell["x"] + label["width"], label["y"] - cell["y"] + label["height"]
    assert beside["x"] > label_right or beside["y"] > label_bottom  # outside the label
    header.click(position=beside)
    assert changes() == sorted(changes()) and header.get_attribute("aria-sort") == "ascending"
    assert page.get_by_label("电子邮箱").is_visible()


def test_history_page_lists_every_day_with_its_crosses_and_each_day_links_to_its_neighbours(site, page):
    page.goto(f"{site['url']}/history.html")
    rows = page.locator("table.history tbody tr")
    assert rows.count() == DAYS
    history = json.loads((site["dir"] / "history.json").read_text())
    busiest = max(history["crosses"], key=lambda e: len(e["buy"]) + len(e["sell"]))
    row = rows.filter(has=page.get_by_role("link", name=busiest["trade_date"], exact=True))
    cells = row.locator("td").all_inner_texts()
    assert cells[1:3] == [str(len(busiest["buy"])), str(len(busiest["sell"]))]
    assert all(f["name"] in cells[3] for f in busiest["buy"] + busiest["sell"])
    row.get_by_role("link", name=busiest["trade_date"]).click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == f"双均线策略交易信号 {busiest['trade_date']}"
    days = history["days"]
    i = days.index(busiest["trade_date"])
    page.locator("a[rel=prev]").click()
    assert page.url.endswith(f"/reports/{days[i + 1]}.html")
    page.locator("a[rel=next]").click()
    assert page.url.endswith(f"/reports/{busiest['trade_date']}.html")


def test_a_fund_page_draws_both_charts_with_a_marker_on_every_cross(site, page):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{site['url']}/index.html")
    page.get_by_role("link", name="沪深300ETF").click()
    page.wait_for_function("window.alchemyCharts && window.alchemyCharts.equity")
    assert page.url.endswith(f"/funds/{FUND}.html")
    data = json.loads((site["dir"] / "funds" / f"{FUND}.json").read_text())
    states = data["series"]["state"]
    markers = page.evaluate("window.alchemyCharts.priceMarkers.markers().map(m => m.text)")
    assert markers.count("买") == states.count("BUY") > 0 and markers.count("卖") == states.count("SELL") > 0
    for chart in ("#price-chart", "#equity-chart", "#rolling-sharpe-chart"):
        assert page.locator(f"{chart} canvas").count() > 0
        assert page.locator(chart).bounding_box()["height"] > 200
    # The rolling Sharpe ratio: a point a month for each sleeve, the whole history in view.
    sheet = json.loads((site["dir"] / "backtests" / "tearsheets" / f"{FUND}.json").read_text())
    months = "window.alchemyCharts.rollingSharpe.timeScale().getVisibleRange()"
    assert page.evaluate(months)["from"] == sheet["strategy"]["rolling_sharpe"][0]["day"]
    visible = "window.alchemyCharts.price.timeScale().getVisibleRange()"
    assert page.evaluate(visible)["from"] > data["series"]["dates"][0]  # the last year first
    page.get_by_role("button", name="全部").click()
    # The chart redraws on its next animation frame: wait for it, then read the range.
    first = data["series"]["dates"][0]
    page.wait_for_function(f"{visible}.from === '{first}'", timeout=5000)
    assert page.evaluate(visible)["from"] == first
    shoot(page, "fund-desktop.png")
    page.goto(f"{site['url']}/rules.html")
    shoot(page, "rules-desktop.png")


def test_pages_read_without_javascript(site, page):
    context = page.context.browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    quiet = context.new_page()
    quiet.goto(f"{site['url']}/funds/{FUND}.html")
    trades = json.loads((site["dir"] / "backtests" / "trades" / f"{FUND}.json").read_text())
    assert quiet.locator("table.trades tbody tr").count() == len(trades) > 0
    assert "累计收益" in quiet.locator("table.metrics").first.inner_text()
    assert quiet.locator("table.crosses tbody tr").count() > 0
    assert quiet.locator("noscript p", has_text="图表需要 JavaScript").first.is_visible()
    # The tearsheet: a row per year and sleeve of monthly returns, coloured by sign; the drawdowns; downloads.
    sheet = json.loads((site["dir"] / "backtests" / "tearsheets" / f"{FUND}.json").read_text())
    years = sheet["strategy"]["yearly_returns"]
    assert quiet.locator("table.months tbody tr").count() == 2 * len(years) > 0
    assert quiet.locator("table.months td.p1, table.months td.p2, table.months td.p3").count() > 0
    assert quiet.locator("table.drawdowns tbody tr").count() == sum(
        len(sheet[s]["drawdowns"]) for s in ("strategy", "buy_and_hold")
    )
    with quiet.expect_download() as download:
        quiet.get_by_role("link", name="交易记录 (CSV)").click()
    data = Path(download.value.path()).read_bytes()
    assert data.startswith("\ufeffts_code,name,".encode()) and f"{FUND},沪深300ETF,".encode() in data
    quiet.goto(f"{site['url']}/index.html")
    assert quiet.locator("table.signals tbody tr").count() == 3
    context.close()


def test_subscribe_form_shows_the_pending_confirmation_without_leaving_the_page(site, page):
    page.goto(f"{site['url']}/index.html")
    page.get_by_label("电子邮箱").fill("reader@example.com")
    page.get_by_role("button", name="订阅").click()
    status = page.locator("#subscribe-status")
    status.filter(has_text="确认邮件").wait_for(timeout=10_000)
    assert status.get_attribute("data-state") == "ok"
    assert page.url == f"{site['url']}/index.html"
    subscriptions = boto3.client("sns").list_subscriptions_by_topic(TopicArn=site["topic"])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "reader@example.com")]


def test_a_visitor_ticks_the_funds_she_watches_and_her_subscription_filters_on_them(site, page):
    page.goto(f"{site['url']}/index.html")
    page.get_by_label("电子邮箱").fill("watcher@example.com")
    page.get_by_text("只关注部分基金").click()
    boxes = page.locator('#subscribe-funds input[name="funds"]')
    assert boxes.count() == len(FUNDS) and all(boxes.nth(i).is_checked() for i in range(boxes.count()))
    shoot(page, "subscribe-watchlist.png")
    page.get_by_label("创业板ETF (159915.SZ)").uncheck()
    page.get_by_role("button", name="订阅").click()
    status = page.locator("#subscribe-status")
    status.filter(has_text="确认邮件").wait_for(timeout=10_000)
    sns = boto3.client("sns")
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=site["topic"])["Subscriptions"]
    policy = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])["Attributes"]
    assert json.loads(policy["FilterPolicy"]) == {"crossed": ["510300.SH", "512880.SH"]}
    # None ticked is refused before anything is sent.
    for i in range(boxes.count()):
        boxes.nth(i).uncheck()
    page.get_by_role("button", name="订阅").click()
    status.filter(has_text="请至少勾选一只基金").wait_for(timeout=5_000)


def test_subscribe_form_shows_the_error_for_an_address_the_service_refuses(site, page):
    page.goto(f"{site['url']}/index.html")
    page.get_by_label("电子邮箱").fill("reader@localhost")  # the browser accepts it; the service does not
    page.get_by_role("button", name="订阅").click()
    status = page.locator("#subscribe-status")
    status.filter(has_text="不是有效的邮箱地址").wait_for(timeout=10_000)
    assert status.get_attribute("data-state") == "error"
    assert boto3.client("sns").list_subscriptions_by_topic(TopicArn=site["topic"])["Subscriptions"] == []


def test_pages_load_only_the_sites_own_scripts(site):
    for path in site["dir"].rglob("*.html"):
        page = path.read_text("utf-8")
        for source in re.findall(r'src="([^"]+)"', page):
            assert not re.match(r"[a-z]+:|//", source), f"{path} loads {source} from elsewhere"
            assert (path.parent / source).resolve().is_file(), f"{path} loads {source}, which is not on the site"


def test_the_rules_page_leads_to_the_sweeps_heatmaps_with_the_production_pair_marked(site, page):
    seen = watch(page, site["url"])
    page.goto(f"{site['url']}/rules.html")
    page.locator("#lab ~ p a", has_text="参数实验室").click()
    page.wait_for_load_state("networkidle")
    assert page.url == f"{site['url']}/lab/latest/index.html"
    heatmaps = page.locator("figure.heatmap svg")
    assert heatmaps.count() == 2
    pairs = len(SWEEP_GRID.pairs())
    for i in range(2):
        heatmap = heatmaps.nth(i)
        assert heatmap.locator("rect:not(.production)").count() == pairs
        marker = heatmap.locator("rect.production").bounding_box()
        assert marker["width"] > 3 and marker["height"] > 3  # drawn, and big enough to see
    document = json.loads((site["dir"] / "lab/latest/sweep.json").read_text("utf-8"))
    production = next(p for p in document["portfolio"]["pairs"] if (p["short"], p["long"]) == (11, 22))
    tooltip = page.locator("figure.heatmap svg").first.locator("title", has_text="11/22:").text_content()
    assert tooltip == f"11/22: {production['out_of_sample']['sharpe']:.2f}"
    # On a phone there is no hover: a tap on a cell shows its figure under the map.
    page.locator("figure.heatmap svg").first.locator("rect.production").click(force=True)
    cell = page.locator("figure.heatmap").first.locator("p.cell-value")
    assert cell.text_content() == tooltip
    # The standing, and each fund's row linking its page.
    ranked = document["portfolio"]["standing"]["ranked"]["out_of_sample"]
    rank = document["portfolio"]["standing"]["production"]["out_of_sample_rank"]
    assert f"排名 第 {rank} / {ranked}" in page.locator("main").inner_text()
    page.locator(f'a[href="../../funds/{FUND}.html"]').click()
    page.wait_for_load_state("networkidle")
    assert page.url == f"{site['url']}/funds/{FUND}.html"
    assert seen == {"errors": [], "outside": []}
    page.goto(f"{site['url']}/lab/latest/index.html")
    shoot(page, "lab-phone.png")
    page.set_viewport_size({"width": 1280, "height": 900})
    shoot(page, "lab-desktop.png")
