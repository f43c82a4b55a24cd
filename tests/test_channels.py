"""The channels beside the email, through Apprise to receivers on loopback over real HTTP: its JSON, form and
XML webhooks, one that refuses at first, one too slow to answer. The services behind the other schemes
(WeCom, DingTalk, Feishu, Telegram ...) cannot be reached from here: their URLs are parsed by Apprise and
their messages composed for Apprise's own description of each service (format, length)."""

import json
import re
from pathlib import Path

import apprise
import dagster as dg
import pytest

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.domain.backtest import PORTFOLIO_NAME
from alchemy_pipeline.domain.site.channels import Channel, compose, parse_channels
from alchemy_pipeline.settings import SettingsError, load_settings
from tests.conftest import REPO_ROOT, use_env
from tests.site_fixture import publish_demo_site

DAY = "2024-06-28"
SITE = "https://signals.example.com"


def report_with(buys: int, sells: int, holds: int) -> dict:
    def entry(i: int, state: str) -> dict:
        return {"ts_code": f"{510000 + i:06d}.SH", "name": f"合成ETF{i}", "state": state, "close": 1.234,
                "ma_short": 1.2, "ma_long": 1.1, "since": DAY, "days": 0, "pct": 0.0, "note": None}  # fmt: skip

    states = ["BUY"] * buys + ["SELL"] * sells + ["HOLD"] * holds
    figures = {"strategy": {"total_return": 0.1, "cagr": 0.05}, "buy_and_hold": {"total_return": 0.2, "cagr": 0.07}}
    return {
        "trade_date": DAY,
        "strategy": {"name": "double_ma", "short": 11, "long": 22},
        "notice": None,
        "signals": [entry(i, s) for i, s in enumerate(states)],
        "backtest": {"start": "2015-01-05", "execution": "next_open", "portfolio": figures, "funds": []},
    }


def fund_url(code: str) -> str:
    return f"{SITE}/funds/{code}.html"


DAY_URL = f"{SITE}/reports/{DAY}.html"


def documented_urls() -> list[str]:
    """The channel URLs docs/channels.md shows, one per service."""
    page = (REPO_ROOT / "docs" / "channels.md").read_text("utf-8")
    return re.findall(r"^\| [^|]+ \| `([a-z]+://[^`]+)` \|", page, flags=re.MULTILINE)


def test_every_service_the_docs_and_readme_name_is_one_apprise_sends_to():
    urls = documented_urls()
    schemes = {url.split("://")[0] for url in urls}
    assert {"wecombot", "dingtalk", "feishu", "tgram", "schan", "pushplus", "bark", "json"} <= schemes
    assert len(parse_channels(" ".join(urls))) == len(urls)
    readme = (REPO_ROOT / "README.md").read_text("utf-8")
    shown = re.findall(r"ALCHEMY_NOTIFY_URLS=['\"]([^'\"]+)['\"]", readme)
    assert shown and all(parse_channels(line) for line in shown)


@pytest.mark.parametrize(
    ("urls", "named"),
    [
        ("json://localhost/ok tgram://SECRET-bot-token/", "URL 2 (tgram://)"),
        ("wecombot://", "URL 1 (wecombot://)"),
        ("mailbox://SECRET@example.com", "URL 1 (mailbox://)"),
        ("SECRET-without-scheme", "URL 1 (a text without a scheme://)"),
    ],
)
def test_an_unusable_url_is_refused_in_one_line_naming_the_variable_and_scheme_never_the_token(urls, named):
    with pytest.raises(SettingsError) as refused:
        load_settings({"ALCHEMY_NOTIFY_URLS": urls})
    said = str(refused.value)
    assert said.startswith("ALCHEMY_NOTIFY_URLS: ") and named in said and "\n" not in said
    assert "SECRET" not in said


def test_urls_split_on_whitespace_and_commas_and_a_repeated_url_is_one_channel():
    channels = parse_channels("json://a.example/x,\n form://b.example/y   json://a.example/x")
    assert [c.scheme for c in channels] == ["json", "form"]
    assert "a.example" not in repr(channels) and all(re.fullmatch(r"[0-9a-f]{16}", c.id) for c in channels)


def test_a_markdown_service_gets_the_crossing_funds_first_linked_to_their_pages():
    report = report_with(buys=2, sells=1, holds=5)
    message = compose(report, Channel("tgram://123456789:abcdefg_hijklmnop/123").service(), fund_url, DAY_URL)
    assert message.body_format == apprise.NotifyFormat.MARKDOWN
    assert message.title == f"双均线信号 {DAY}: 可买2, 可卖1"
    lines = message.body.splitlines()
    assert lines[0] == "**可买标的**"
    assert lines[1].startswith(f"- [合成ETF0(510000.SH)]({SITE}/funds/510000.SH.html)可买, 收盘价1.234")
    assert lines[3] == "**可卖标的**" and lines[4].startswith("- [合成ETF2(510002.SH)](")
    backtest = f"回测: {PORTFOLIO_NAME}: 策略年化5.0%, 持有年化7.0%"
    assert lines[5:] == ["持仓5, 空仓0", backtest, f"[当日全部信号与历史]({DAY_URL})"]


def test_a_text_service_gets_bare_links_and_a_quiet_day_says_so():
    service = Channel("wecombot://abcdefkey").service()
    message = compose(report_with(buys=1, sells=0, holds=2), service, fund_url, DAY_URL)
    assert message.body_format == apprise.NotifyFormat.TEXT
    assert message.body.splitlines()[:3] == [
        "可买标的:",
        "合成ETF0(510000.SH)可买, 收盘价1.234, 11日均线1.200, 22日均线1.100",
        f"  {SITE}/funds/510000.SH.html",
    ]
    quiet = compose(report_with(buys=0, sells=0, holds=3), service, fund_url, DAY_URL).body
    assert quiet.splitlines()[0] == "今日无买卖信号; 持仓3, 空仓0" and quiet.endswith(f"当日全部信号与历史: {DAY_URL}")


@pytest.mark.parametrize(
    "url", ["wecombot://abcdefkey", "tgram://123456789:abcdefg_hijklmnop/123", "bark://localhost/k"]
)
def test_a_day_too_long_for_the_service_is_cut_to_its_length_with_the_count_left_out_and_the_day_link(url):
    service = Channel(url).service()
    report = report_with(buys=400, sells=300, holds=10)
    message = compose(report, service, fund_url, DAY_URL)
    title_in_body = len(message.title.encode()) + 2 if service.title_maxlen <= 0 else 0
    assert len(message.body.encode("utf-8")) + title_in_body <= service.body_maxlen
    listed = len(re.findall(r"\(51\d{4}\.SH\)", message.body))
    left = int(re.search(r"另有(\d+)个买卖标的未列出", message.body)[1])
    assert listed > 0 and listed + left == 700
    assert message.body.endswith(DAY_URL) or message.body.endswith(f"({DAY_URL})")


def failure_text(event: dg.DagsterEvent) -> str:
    return event.step_failure_data.error.message


def run_notification(tmp_path: Path, env: dict[str, str]) -> dg.ExecuteInProcessResult:
    """The notification job of ``DAY``, from definitions built anew (as a restarted daemon's run would)."""
    (tmp_path / "dagster").mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        use_env(mp, env)
        defs = build_definitions(load_settings())
        result = defs.resolve_job_def("notify_subscribers").execute_in_process(
            instance=instance, partition_key=DAY, raise_on_error=False
        )
        logs = [e.message for e in instance.all_logs(result.run_id)]
        return result, logs


def test_each_channel_gets_the_day_once_a_refusal_is_retried_and_a_slow_one_is_never_resent(tmp_path, receivers):
    publish_demo_site(tmp_path / "site", 30)
    urls = [f"json://{receivers.url}/ok", f"form://{receivers.url}/refuse-1", f"xml://{receivers.url}/slow"]
    env = {
        "ALCHEMY_ENV": "local",
        "ALCHEMY_DATA_DIR": str(tmp_path / "data"),
        "ALCHEMY_PUBLISH_DIR": str(tmp_path / "site"),
        "ALCHEMY_SITE_URL": SITE,
        "ALCHEMY_NOTIFY_MAX_AGE_DAYS": "100000",
        "ALCHEMY_NOTIFY_URLS": ", ".join(urls),
        "ALCHEMY_NOTIFY_TIMEOUT_SECONDS": "1",
        "ALCHEMY_NOTIFY_RETRY_SECONDS": "0.1",
    }
    result, logs = run_notification(tmp_path, env)

    # The email went out whatever the channels did.
    assert result.output_for_node("send_signal_notification") is None
    assert (tmp_path / "site" / "outbox" / f"{DAY}.json").exists()
    # The refusal was retried, to that channel only; the slow one got the day once and is reported.
    assert receivers.count() == {"/ok": 1, "/refuse-1": 2, "/slow": 1}
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    slow = Channel(urls[2])
    assert failure.step_key == "send_channel_messages"
    assert f"1 of 3 channels did not take {DAY}: xml:{slow.id}: unknown" in failure_text(failure)
    # The webhooks got the message as Apprise sends it: the day's title, the funds and the day's link.
    _, content_type, body = next(post for post in receivers.posts if post[0] == "/ok")
    assert content_type.startswith("application/json")
    sent = json.loads(body)
    assert sent["title"].startswith(f"双均线信号 {DAY}")
    assert sent["message"].endswith(f"[当日全部信号与历史]({SITE}/reports/{DAY}.html)")

    # Records name each channel by its digest; no record and no log line holds a URL or its path.
    records = sorted((tmp_path / "data" / "notifications" / "channels").glob(f"*/{DAY}.json"))
    states = {json.loads(p.read_text())["channel"]: json.loads(p.read_text())["state"] for p in records}
    assert states == {Channel(urls[0]).id: "sent", Channel(urls[1]).id: "sent", slow.id: "unknown"}
    for text in [*logs, *(p.read_text() for p in records)]:
        assert receivers.url not in (text or "") and "refuse-1" not in (text or "") and "/slow" not in (text or "")

    # Run again, from definitions built anew: nothing is sent twice, and the slow channel's day is left to
    # the operator, with what to check and what to delete.
    again, _ = run_notification(tmp_path, env)
    assert receivers.count() == {"/ok": 1, "/refuse-1": 2, "/slow": 1}
    failure = next(e for e in again.all_events if e.is_step_failure)
    assert f"delete notifications/channels/{slow.id}/{DAY}.json to send it again" in failure_text(failure)
