"""The published web page in headless Chromium (Debian's chromium, driven by Playwright), served over
HTTP from the site directory, with its subscribe form posting to a local HTTP adapter of the Lambda that
talks to SNS in moto's server mode."""

import functools
import json
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pandas as pd
import pytest

from alchemy_pipeline.domain.publish import publish_reports
from alchemy_pipeline.domain.report import build_report
from alchemy_pipeline.domain.storage import LocalBlobStore
from alchemy_pipeline.domain.strategy import StrategyParams
from alchemy_pipeline.domain.strategy_fast import SIGNAL_COLUMNS
from tests.test_subscribe_lambda import load_lambda

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
DAYS = ["2024-06-26", "2024-06-27", "2024-06-28"]


def day_report(day: str) -> dict:
    rows = [
        ("510300.SH", "沪深300ETF", "BUY", 3.512, 3.498, 3.470, day, 0, 0.0),
        ("159915.SZ", "创业板ETF", "HOLD", 1.802, 1.790, 1.760, "2024-06-03", 25, 4.21),
        ("512880.SH", "证券ETF", "EMPTY", 0.861, 0.850, 0.870, "2024-05-20", 39, -3.5),
        ("513500.SH", "标普500ETF", "NO_DATA", None, None, None, None, None, None),
    ]
    frame = pd.DataFrame(
        [dict(zip(SIGNAL_COLUMNS, [c, n, pd.Timestamp(day), s, cl, ms, ml, pd.Timestamp(si) if si else pd.NaT,
                                   d, p, None], strict=True)) for c, n, s, cl, ms, ml, si, d, p in rows]
    )  # fmt: skip
    return build_report(frame, StrategyParams())


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
    api = serve(lambda_adapter(load_lambda()))
    publish_reports(
        LocalBlobStore(tmp_path), [day_report(d) for d in DAYS], f"http://127.0.0.1:{api.server_address[1]}/subscribe"
    )
    yield {"url": origin, "topic": topic, "dir": tmp_path}
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


def test_front_page_shows_the_latest_day_and_fits_a_phone(site, page):
    page.goto(f"{site['url']}/index.html")
    assert page.locator("#latest").inner_text() == "最新: 2024-06-28"
    assert "沪深300ETF(510300.SH)可买" in page.locator("section", has_text="可买标的").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.get_by_label("电子邮箱").is_visible()
    page.screenshot(path=str(site["dir"] / "index.png"), full_page=True)


def test_history_lists_every_day_newest_first_and_its_links_work(site, page):
    page.goto(f"{site['url']}/index.html")
    links = page.locator("ul.history a")
    assert links.all_inner_texts() == list(reversed(DAYS))
    page.get_by_role("link", name="2024-06-26").click()
    page.wait_for_load_state()
    assert page.url.endswith("/reports/2024-06-26.html")
    assert page.locator("h1").inner_text() == "双均线策略交易信号 2024-06-26"
    page.get_by_role("link", name="全部历史").click()
    assert page.url.endswith("/index.html")


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


def test_subscribe_form_shows_the_error_for_an_address_the_service_refuses(site, page):
    page.goto(f"{site['url']}/index.html")
    page.get_by_label("电子邮箱").fill("reader@localhost")  # the browser accepts it; the service does not
    page.get_by_role("button", name="订阅").click()
    status = page.locator("#subscribe-status")
    status.filter(has_text="不是有效的邮箱地址").wait_for(timeout=10_000)
    assert status.get_attribute("data-state") == "error"
    assert boto3.client("sns").list_subscriptions_by_topic(TopicArn=site["topic"])["Subscriptions"] == []


def test_pages_are_self_contained(site):
    for path in site["dir"].rglob("*.html"):
        html = path.read_text("utf-8")
        assert "<script src=" not in html and "<link " not in html and "cdn" not in html.lower()
    assert json.loads((site["dir"] / "history.json").read_text())["days"] == list(reversed(DAYS))
