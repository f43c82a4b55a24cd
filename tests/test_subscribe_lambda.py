"""The subscription Lambda with real API Gateway event shapes, against SNS in moto's server mode."""

import base64
import importlib.util
import json
import logging
import re
import sys
import uuid

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.aws import free_port
from tests.conftest import REPO_ROOT

ORIGIN = "https://signals.example.com"
UNIVERSE = pd.read_csv(REPO_ROOT / "alchemy_pipeline" / "data" / "universe.csv")["ts_code"].tolist()


def load_lambda():
    spec = importlib.util.spec_from_file_location(
        f"subscribe_app_{uuid.uuid4().hex}", REPO_ROOT / "deploy" / "lambda" / "subscribe" / "app.py"
    )
    module = importlib.util.module_from_spec(spec)
    # No __pycache__ next to it: `aws cloudformation package` zips the whole folder.
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module


@pytest.fixture
def topic(aws, monkeypatch):
    arn = boto3.client("sns").create_topic(Name=f"signals-{uuid.uuid4().hex[:8]}")["TopicArn"]
    monkeypatch.setenv("TOPIC_ARN", arn)
    monkeypatch.setenv("ALLOWED_ORIGIN", ORIGIN)
    monkeypatch.setenv("FUND_CODES", ",".join(UNIVERSE))
    return arn


@pytest.fixture
def app(topic):
    return load_lambda()


def http_api_event(body, method="POST", content_type="application/json", base64_encoded=False):
    """API Gateway HTTP API, payload format 2.0."""
    return {
        "version": "2.0",
        "routeKey": "POST /subscribe",
        "rawPath": "/subscribe",
        "headers": {"content-type": content_type, "origin": ORIGIN},
        "requestContext": {"http": {"method": method, "path": "/subscribe", "sourceIp": "203.0.113.9"}},
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def rest_api_event(body, method="POST", content_type="application/x-www-form-urlencoded"):
    """API Gateway REST API, payload format 1.0."""
    return {
        "resource": "/subscribe",
        "path": "/subscribe",
        "httpMethod": method,
        "headers": {"Content-Type": content_type, "Origin": ORIGIN},
        "requestContext": {"httpMethod": method, "stage": "prod"},
        "body": body,
        "isBase64Encoded": False,
    }


def subscribers(topic_arn):
    subs = boto3.client("sns").list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    return [(s["Protocol"], s["Endpoint"]) for s in subs]


def answer_of(response):
    return json.loads(response["body"]) if response["body"] else None


@pytest.mark.parametrize(
    "event",
    [
        http_api_event(json.dumps({"email": "li.lei@example.com"})),
        rest_api_event("email=li.lei%40example.com"),
        http_api_event(base64.b64encode(b'{"email": "li.lei@example.com"}').decode(), base64_encoded=True),
        http_api_event(' \n{"email": "  li.lei@example.com "}', content_type="text/plain"),
    ],
    ids=["http-api-json", "rest-form", "base64-json", "untyped-json"],
)
def test_a_valid_address_becomes_a_pending_email_subscription(app, topic, event):
    response = app.handler(event, None)
    assert response["statusCode"] in (200, 202)
    assert answer_of(response)["status"] == "pending_confirmation"
    assert "确认邮件" in answer_of(response)["message"]
    assert subscribers(topic) == [("email", "li.lei@example.com")]
    assert response["headers"]["Access-Control-Allow-Origin"] == ORIGIN


def test_subscribing_twice_is_harmless(app, topic):
    event = http_api_event(json.dumps({"email": "han.meimei@example.com"}))
    assert app.handler(event, None)["statusCode"] == 202
    # The emulator has confirmed the address meanwhile: the second request keeps it on every day.
    again = app.handler(event, None)
    assert again["statusCode"] == 200 and answer_of(again)["status"] == "updated"
    assert subscribers(topic) == [("email", "han.meimei@example.com")]


@pytest.mark.parametrize(
    ("event", "status", "code"),
    [
        (http_api_event(json.dumps({"email": "not-an-address"})), 400, "invalid_email"),
        (http_api_event(json.dumps({"email": "a@b"})), 400, "invalid_email"),
        (http_api_event(json.dumps({"email": "li\nlei@example.com"})), 400, "invalid_email"),
        (http_api_event(json.dumps({"email": "x" * 250 + "@example.com"})), 400, "invalid_email"),
        (http_api_event(json.dumps({"email": 42})), 400, "invalid_email"),
        (http_api_event(json.dumps({"mail": "li@example.com"})), 400, "missing_email"),
        (http_api_event('{"email": '), 400, "bad_json"),
        (http_api_event(json.dumps(["li@example.com"])), 400, "bad_json"),
        (http_api_event(""), 400, "empty_body"),
        (http_api_event(None), 400, "empty_body"),
        (http_api_event("!!!", base64_encoded=True), 400, "bad_base64"),
        (rest_api_event("name=li"), 400, "missing_email"),
        (http_api_event(json.dumps({"email": "li@example.com", "pad": "x" * 10_000})), 413, "body_too_large"),
        (http_api_event(json.dumps({"email": "li@example.com"}), method="GET"), 405, "method_not_allowed"),
        (rest_api_event("email=li%40example.com", method="DELETE"), 405, "method_not_allowed"),
        (
            http_api_event(json.dumps({"email": "li@example.com", "funds": ["510300.SH", "600519.SH"]})),
            400,
            "unknown_funds",
        ),
        (rest_api_event("email=li%40example.com&funds=510300.SH,<script>"), 400, "unknown_funds"),
        (
            http_api_event(
                json.dumps(
                    {"email": "li@example.com", "funds": UNIVERSE[:1] * 2 + [f"{159000 + i}.SZ" for i in range(50)]}
                )
            ),
            400,
            "too_many_funds",
        ),
        (http_api_event(json.dumps({"email": "li@example.com", "funds": "510300.SH"})), 400, "bad_funds"),
        (http_api_event(json.dumps({"email": "li@example.com", "funds": [510300]})), 400, "bad_funds"),
    ],
)
def test_bad_input_gets_a_4xx_json_answer_naming_the_problem(app, topic, event, status, code):
    response = app.handler(event, None)
    assert response["statusCode"] == status
    body = answer_of(response)
    assert body["error"] == code and body["message"]
    assert "Traceback" not in response["body"]
    assert subscribers(topic) == []


def test_preflight_is_answered_for_the_site_origin_only(app):
    response = app.handler(http_api_event(None, method="OPTIONS"), None)
    assert response["statusCode"] == 204
    headers = response["headers"]
    assert headers["Access-Control-Allow-Origin"] == ORIGIN != "*"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]


def test_sns_outage_is_a_502_asking_to_try_later(topic, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    app = load_lambda()
    response = app.handler(http_api_event(json.dumps({"email": "li@example.com"})), None)
    assert response["statusCode"] == 502
    assert "稍后再试" in answer_of(response)["message"]


def test_logs_never_hold_the_full_address(app, caplog):
    with caplog.at_level(logging.INFO):
        app.handler(http_api_event(json.dumps({"email": "secret.person@example.com"})), None)
    assert "secret.person" not in caplog.text
    assert "s***@example.com" in caplog.text


def test_the_package_holds_only_the_function():
    package = REPO_ROOT / "deploy" / "lambda" / "subscribe"
    assert sorted(p.name for p in package.iterdir() if p.name != "__pycache__") == ["app.py"]
    source = (package / "app.py").read_text()
    assert "import dagster" not in source and "import pandas" not in source


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=300),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)
bodies = st.one_of(
    st.none(),
    st.text(max_size=6000),
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(["email", "mail", "funds", "x"]), json_values, max_size=3).map(json.dumps),
    st.fixed_dictionaries(
        {"email": st.just("li@example.com"), "funds": st.lists(st.sampled_from([*UNIVERSE[:3], "x", ""]) | st.text())}
    ).map(json.dumps),
    st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode()),
    json_values,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from(["2.0", "1.0", None, 2]),
        "httpMethod": st.sampled_from(["POST", "GET", "OPTIONS", "PUT", None, 7, "post"]),
        "requestContext": st.one_of(
            json_values, st.fixed_dictionaries({"http": st.fixed_dictionaries({"method": json_values})})
        ),
        "headers": st.one_of(
            json_values,
            st.dictionaries(st.sampled_from(["content-type", "Content-Type", "origin"]), json_values, max_size=3),
        ),
        "body": bodies,
        "isBase64Encoded": json_values,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=st.one_of(events, json_values))
def test_no_event_ever_raises_or_gets_a_5xx_unless_sns_fails(app, event):
    # SNS in moto is up, so a 5xx could only come from the function itself.
    response = app.handler(event, None)
    assert 200 <= response["statusCode"] < 500
    assert response["headers"]["Access-Control-Allow-Origin"] == ORIGIN
    if response["body"]:
        assert isinstance(json.loads(response["body"]), dict)


def policy_of(topic_arn: str, email: str) -> dict | None:
    sns = boto3.client("sns")
    for subscription in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]:
        if subscription["Endpoint"] == email:
            attributes = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])["Attributes"]
            return json.loads(attributes["FilterPolicy"]) if attributes.get("FilterPolicy") else None
    raise AssertionError(f"{email} is not subscribed")


@pytest.mark.parametrize(
    "event",
    [
        http_api_event(json.dumps({"email": "li@example.com", "funds": ["510300.SH", " 159915.sz", "510300.SH"]})),
        rest_api_event("email=li%40example.com&funds=510300.SH&funds=159915.SZ"),
        rest_api_event("email=li%40example.com&funds=510300.SH%2C159915.SZ"),
    ],
    ids=["json", "form-repeated", "form-comma-separated"],
)
def test_a_watchlist_becomes_the_subscriptions_filter_on_the_days_crossed_funds(app, topic, event):
    response = app.handler(event, None)
    assert response["statusCode"] == 202
    assert answer_of(response)["funds"] == ["510300.SH", "159915.SZ"]
    assert policy_of(topic, "li@example.com") == {"crossed": ["510300.SH", "159915.SZ"]}


def test_a_subscriber_changes_her_watchlist_on_her_subscription_and_can_go_back_to_every_day(app, topic):
    def send(body):
        return app.handler(http_api_event(json.dumps({"email": "li@example.com", **body})), None)

    assert send({})["statusCode"] == 202
    assert policy_of(topic, "li@example.com") is None
    # The emulator confirms at once; a confirmed address's watchlist is set on its one subscription.
    changed = send({"funds": ["512880.SH"]})
    assert changed["statusCode"] == 200 and answer_of(changed)["status"] == "updated"
    assert "512880.SH" not in answer_of(changed)["message"] and "1 只基金" in answer_of(changed)["message"]
    assert policy_of(topic, "li@example.com") == {"crossed": ["512880.SH"]}
    assert subscribers(topic) == [("email", "li@example.com")]
    back = send({"funds": []})
    assert back["statusCode"] == 200 and "每日" in answer_of(back)["message"]
    assert policy_of(topic, "li@example.com") in (None, {})


def test_a_watchlist_changed_while_the_address_awaits_confirmation_asks_her_to_confirm_first(app, topic, monkeypatch):
    # The emulator confirms email subscriptions at once and never refuses a re-subscription with other
    # attributes, which real SNS does while one is pending: these two answers of SNS are stubbed.
    client = boto3.client("sns")
    stubber = Stubber(client)
    pending = {"SubscriptionArn": "PendingConfirmation", "Owner": "1", "Protocol": "email",
               "Endpoint": "li@example.com", "TopicArn": topic}  # fmt: skip
    stubber.add_response("list_subscriptions_by_topic", {"Subscriptions": [pending]}, {"TopicArn": topic})
    stubber.add_client_error(
        "subscribe",
        service_error_code="InvalidParameter",
        service_message="Invalid parameter: Attributes Reason: Subscription already exists with different attributes",
        http_status_code=400,
    )
    monkeypatch.setattr(app, "sns_client", lambda: client)
    with stubber:
        response = app.handler(http_api_event(json.dumps({"email": "li@example.com", "funds": ["510300.SH"]})), None)
    assert response["statusCode"] == 409
    assert answer_of(response)["error"] == "subscription_pending" and "确认" in answer_of(response)["message"]


def test_a_watchlist_subscriber_receives_only_the_days_one_of_her_funds_crosses(app, topic, tmp_path):
    from alchemy_pipeline.domain.site.notify import Message, SnsNotifier
    from alchemy_pipeline.infrastructure.storage import LocalBlobStore

    app.handler(http_api_event(json.dumps({"email": "li@example.com", "funds": ["510300.SH", "512880.SH"]})), None)
    app.handler(http_api_event(json.dumps({"email": "han@example.com"})), None)
    # The emulator delivers no email: a queue subscribed with each address's own filter policy (as the
    # function left it) receives what her inbox would.
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    inboxes = {}
    for email in ("li@example.com", "han@example.com"):
        queue = sqs.create_queue(QueueName=f"inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = policy_of(topic, email)
        attributes = {"RawMessageDelivery": "true", **({"FilterPolicy": json.dumps(policy)} if policy else {})}
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
        inboxes[email] = queue
    notifier = SnsNotifier(sns, topic, LocalBlobStore(tmp_path))
    days = {"2024-06-26": ("159915.SZ",), "2024-06-27": ("159915.SZ", "512880.SH"), "2024-06-28": ()}
    for day, crossed in days.items():
        notifier.send(Message(day, f"Double MA Strategy Trade Signal: {day} - A Share", f"body of {day}", crossed))

    def received(email):
        messages = sqs.receive_message(QueueUrl=inboxes[email], MaxNumberOfMessages=10)["Messages"]
        return sorted(m["Body"] for m in messages)

    assert received("li@example.com") == ["body of 2024-06-27"]
    assert received("han@example.com") == [f"body of {day}" for day in days]


def test_the_stack_gives_the_function_the_universes_codes_and_the_site_the_functions_limit():
    from alchemy_pipeline.domain.site.pages import MAX_WATCHED_FUNDS

    template = (REPO_ROOT / "deploy" / "cloudformation" / "alchemy.yaml").read_text()
    default = re.search(r"^  FundCodes:\n(?:    .*\n)*?    Default: (.+)$", template, flags=re.MULTILINE)[1]
    assert default.split(",") == UNIVERSE
    assert load_lambda().MAX_FUNDS == MAX_WATCHED_FUNDS
