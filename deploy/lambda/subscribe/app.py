"""Subscribes an email address to the signals' SNS topic. API Gateway (HTTP API payload 2.0 or REST 1.0)
calls ``handler``. Standard library and boto3 only: the Lambda runtime provides both.

Environment: ``TOPIC_ARN`` (the topic), ``ALLOWED_ORIGIN`` (the site's origin, for CORS).
Bad input always gets a 4xx JSON answer naming the problem; only SNS failures give a 5xx (502).
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
# A practical address syntax: a dot-atom local part and a domain of DNS labels with a letter TLD.
EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# Short timeouts: the function must answer well within API Gateway's 29 s, even when SNS hangs.
SNS_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})

_sns_client = None


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _sns():
    global _sns_client
    if _sns_client is None:
        _sns_client = boto3.client("sns", config=SNS_CONFIG)
    return _sns_client


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


def _email_from(event: dict) -> str:
    text = _body_text(event)
    content_type = _header(event, "content-type").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded" or (
        content_type != "application/json" and not text.lstrip().startswith(("{", "["))
    ):
        fields = urllib.parse.parse_qs(text, keep_blank_values=True)
        values = fields.get("email")
        if not values:
            raise BadRequest(400, "missing_email", "缺少 email 字段。")
        value = values[0]
    else:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise BadRequest(400, "bad_json", "请求内容不是有效的 JSON。") from None
        if not isinstance(data, dict):
            raise BadRequest(400, "bad_json", 'JSON 内容必须是对象，例如 {"email": "name@example.com"}。')
        if "email" not in data:
            raise BadRequest(400, "missing_email", "缺少 email 字段。")
        value = data["email"]
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


def _subscribe(email: str) -> dict:
    topic = os.environ.get("TOPIC_ARN", "")
    try:
        _sns().subscribe(TopicArn=topic, Protocol="email", Endpoint=email, ReturnSubscriptionArn=False)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "InvalidParameter":
            logger.info("SNS refused the address %s: %s", mask(email), code)
            return _error(400, "invalid_email", "这不是可订阅的邮箱地址。")
        logger.error("SNS subscribe failed for %s: %s", mask(email), code)
        return _error(502, "subscription_unavailable", "订阅服务暂时不可用，请稍后再试。")
    except BotoCoreError as exc:
        logger.error("SNS unreachable for %s: %s", mask(email), type(exc).__name__)
        return _error(502, "subscription_unavailable", "订阅服务暂时不可用，请稍后再试。")
    logger.info("subscription requested for %s", mask(email))
    return _answer(
        202,
        {
            "status": "pending_confirmation",
            "message": f"确认邮件已发送至 {mask(email)}，请查收并点击其中的链接完成订阅。",
        },
    )


def handler(event, context):
    if not isinstance(event, dict):
        return _error(400, "bad_request", "无法识别的请求。")
    method = _method(event)
    if method == "OPTIONS":
        return _answer(204, None)
    if method != "POST":
        return _error(405, "method_not_allowed", "只接受 POST 请求。", {"Allow": "POST, OPTIONS"})
    try:
        email = _email_from(event)
    except BadRequest as problem:
        logger.info("bad request: %s", problem.code)
        return _error(problem.status, problem.code, problem.message)
    return _subscribe(email)
