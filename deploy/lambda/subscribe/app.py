"""Subscribes an email address to the signals' SNS topic, to every day or to a watchlist. API Gateway
(HTTP API payload 2.0 or REST 1.0) calls ``handler``. Standard library and boto3 only: the Lambda runtime
provides both.

Environment: ``TOPIC_ARN`` (the topic), ``ALLOWED_ORIGIN`` (the site's origin, for CORS), ``FUND_CODES``
(the universe's codes, comma-separated, given by the template at deploy time).
A watchlist (``funds``: fund codes) becomes the subscription's filter policy on the ``crossed`` message
attribute, which each day's notification carries: SNS then delivers the day only when one of her funds is
BUY or SELL. Bad input always gets a 4xx JSON answer naming the problem; only SNS failures give a 5xx.
Logs never hold a full address.
"""

import base64
import binascii
import json
import logging
import os
import re
import urllib.parse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

MAX_BODY_BYTES = 4096
MAX_EMAIL_CHARS = 254
MAX_FUNDS = 50
# The notification's message attribute that lists the day's BUY and SELL funds (a String.Array).
CROSSED = "crossed"
# A practical address syntax: a dot-atom local part and a domain of DNS labels with a letter TLD.
EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# Short timeouts: the function must answer well within API Gateway's 29 s, even when SNS hangs.
SNS_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})

_client = None


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def sns_client():
    global _client
    if _client is None:
        _client = boto3.client("sns", config=SNS_CONFIG)
    return _client


def mask(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def _cors_headers() -> dict:
    return {
        "Access-Control-Allow-Origin": os.environ.get("ALLOWED_ORIGIN", ""),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def _answer(status: int, body: dict | None, extra_headers: dict | None = None) -> dict:
    headers = {**_cors_headers(), **(extra_headers or {})}
    if body is None:
        return {"statusCode": status, "headers": headers, "body": ""}
    headers["Content-Type"] = "application/json; charset=utf-8"
    return {"statusCode": status, "headers": headers, "body": json.dumps(body, ensure_ascii=False)}


def _error(status: int, code: str, message: str, extra_headers: dict | None = None) -> dict:
    return _answer(status, {"error": code, "message": message}, extra_headers)


def _method(event: dict) -> str:
    request = event.get("requestContext")
    http = request.get("http") if isinstance(request, dict) else None
    method = http.get("method") if isinstance(http, dict) else event.get("httpMethod")
    return method.upper() if isinstance(method, str) else ""


def _header(event: dict, name: str) -> str:
    headers = event.get("headers")
    if not isinstance(headers, dict):
        return ""
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return ""


def _body_text(event: dict) -> str:
    body = event.get("body")
    if body is None or body == "":
        raise BadRequest(400, "empty_body", "请求内容为空：请提交 email 字段。")
    if not isinstance(body, str):
        raise BadRequest(400, "bad_body", "请求内容格式不正确。")
    if len(body) > 2 * MAX_BODY_BYTES:
        raise BadRequest(413, "body_too_large", f"请求内容过大（上限 {MAX_BODY_BYTES} 字节）。")
    raw = body.encode("utf-8", errors="surrogatepass")
    if event.get("isBase64Encoded") is True:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(400, "bad_base64", "请求内容不是有效的 base64 编码。") from None
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(413, "body_too_large", f"请求内容过大（上限 {MAX_BODY_BYTES} 字节）。")
    if not raw.strip():
        raise BadRequest(400, "empty_body", "请求内容为空：请提交 email 字段。")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "bad_encoding", "请求内容不是 UTF-8 文本。") from None


def _request(event: dict) -> tuple[str, list[str]]:
    """The address and the watchlist (empty: every day) of a subscription request."""
    text = _body_text(event)
    content_type = _header(event, "content-type").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded" or (
        content_type != "application/json" and not text.lstrip().startswith(("{", "["))
    ):
        fields = urllib.parse.parse_qs(text, keep_blank_values=True)
        values = fields.get("email")
        if not values:
            raise BadRequest(400, "missing_email", "缺少 email 字段。")
        # Repeated funds= fields (ticked boxes) or one comma-separated value.
        codes = [code for value in fields.get("funds", []) for code in value.split(",")]
        return _email(values[0]), _watchlist(codes)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequest(400, "bad_json", "请求内容不是有效的 JSON。") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "bad_json", 'JSON 内容必须是对象，例如 {"email": "name@example.com"}。')
    if "email" not in data:
        raise BadRequest(400, "missing_email", "缺少 email 字段。")
    funds = data.get("funds")
    if funds is None:
        funds = []
    if not isinstance(funds, list) or not all(isinstance(code, str) for code in funds):
        raise BadRequest(400, "bad_funds", 'funds 必须是基金代码的列表，例如 ["510300.SH"]。')
    return _email(data["email"]), _watchlist(funds)


def _email(value) -> str:
    if not isinstance(value, str):
        raise BadRequest(400, "invalid_email", "email 必须是字符串。")
    email = value.strip()
    if not email:
        raise BadRequest(400, "missing_email", "email 字段为空。")
    if len(email) > MAX_EMAIL_CHARS:
        raise BadRequest(400, "invalid_email", f"邮箱地址过长（上限 {MAX_EMAIL_CHARS} 个字符）。")
    if any(ord(c) < 32 or ord(c) == 127 for c in email) or not EMAIL.fullmatch(email):
        raise BadRequest(400, "invalid_email", "这不是有效的邮箱地址。")
    if len(email.partition("@")[0]) > 64:
        raise BadRequest(400, "invalid_email", "邮箱地址 @ 之前的部分过长（上限 64 个字符）。")
    return email


def _known_funds() -> set[str]:
    return {code.strip() for code in os.environ.get("FUND_CODES", "").split(",") if code.strip()}


def _watchlist(codes: list[str]) -> list[str]:
    """The codes, each once, in the order given; unknown codes and more than ``MAX_FUNDS`` are refused."""
    watchlist = list(dict.fromkeys(code.strip().upper() for code in codes if code.strip()))
    if len(watchlist) > MAX_FUNDS:
        raise BadRequest(400, "too_many_funds", f"关注列表最多 {MAX_FUNDS} 只基金（收到 {len(watchlist)} 只）。")
    known = _known_funds()
    unknown = [code for code in watchlist if code not in known]
    if unknown:
        shown = "、".join(code[:16] for code in unknown[:5]) + ("等" if len(unknown) > 5 else "")
        raise BadRequest(400, "unknown_funds", f"未知的基金代码：{shown}（只能关注本站列出的基金）。")
    return watchlist


def _subscription_of(topic: str, email: str) -> str | None:
    """The address's subscription ARN on the topic (``PendingConfirmation`` while unconfirmed), if any."""
    pages = sns_client().get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
    for page in pages:
        for subscription in page["Subscriptions"]:
            if subscription["Protocol"] == "email" and subscription["Endpoint"].lower() == email.lower():
                return subscription["SubscriptionArn"]
    return None


UNAVAILABLE = (502, "subscription_unavailable", "订阅服务暂时不可用，请稍后再试。")
# SNS allows 200 filter policies per topic by default; past them, the operator raises the quota.
WATCHLISTS_FULL = (503, "watchlists_full", "关注列表名额已满：请不选基金、订阅每日全部信号，或稍后再试。")
PENDING = (
    409,
    "subscription_pending",
    "该邮箱的订阅尚待确认：请先点击确认邮件中的链接，之后再修改关注列表。",
)


def _subscribe(email: str, funds: list[str]) -> dict:
    topic = os.environ.get("TOPIC_ARN", "")
    # No filter policy ("{}" on a subscription that had one) is every day.
    policy = json.dumps({CROSSED: funds}) if funds else "{}"
    try:
        existing = _subscription_of(topic, email)
        if existing is not None and existing.startswith("arn:"):
            # A confirmed address: SNS refuses a second subscription with other attributes, so the
            # watchlist is changed on the subscription itself.
            sns_client().set_subscription_attributes(
                SubscriptionArn=existing, AttributeName="FilterPolicy", AttributeValue=policy
            )
            logger.info("watchlist of %s set to %d funds", mask(email), len(funds))
            return _answer(200, {"status": "updated", "funds": funds, "message": _updated(email, funds)})
        attributes = {"FilterPolicy": policy, "FilterPolicyScope": "MessageAttributes"} if funds else {}
        # Pending or new: (re)subscribing sends the confirmation email again.
        sns_client().subscribe(
            TopicArn=topic, Protocol="email", Endpoint=email, ReturnSubscriptionArn=False, Attributes=attributes
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        said = exc.response.get("Error", {}).get("Message", "")
        if code == "InvalidParameter" and "already exists" in said:
            logger.info("watchlist change of %s refused: pending confirmation", mask(email))
            return _error(*PENDING)
        if code == "InvalidParameter":
            logger.info("SNS refused the address %s: %s", mask(email), code)
            return _error(400, "invalid_email", "这不是可订阅的邮箱地址。")
        if code == "FilterPolicyLimitExceeded":
            logger.error("SNS filter policies of the topic are all used: raise the topic's quota")
            return _error(*WATCHLISTS_FULL)
        logger.error("SNS subscribe failed for %s: %s", mask(email), code)
        return _error(*UNAVAILABLE)
    except BotoCoreError as exc:
        logger.error("SNS unreachable for %s: %s", mask(email), type(exc).__name__)
        return _error(*UNAVAILABLE)
    logger.info("subscription requested for %s (%d funds watched)", mask(email), len(funds))
    return _answer(
        202,
        {
            "status": "pending_confirmation",
            "funds": funds,
            "message": f"确认邮件已发送至 {mask(email)}，请查收并点击其中的链接完成订阅。",
        },
    )


def _updated(email: str, funds: list[str]) -> str:
    if funds:
        return f"{mask(email)} 的关注列表已更新：仅在其中 {len(funds)} 只基金出现买卖信号的日子发送。"
    return f"{mask(email)} 的订阅已改为每日发送全部信号。"


def handler(event, context):
    if not isinstance(event, dict):
        return _error(400, "bad_request", "无法识别的请求。")
    method = _method(event)
    if method == "OPTIONS":
        return _answer(204, None)
    if method != "POST":
        return _error(405, "method_not_allowed", "只接受 POST 请求。", {"Allow": "POST, OPTIONS"})
    try:
        email, funds = _request(event)
    except BadRequest as problem:
        logger.info("bad request: %s", problem.code)
        return _error(problem.status, problem.code, problem.message)
    return _subscribe(email, funds)
