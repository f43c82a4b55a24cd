"""ALCHEMY_ENV=aws against moto in server mode over HTTP: assets and site in S3, notifications by SNS.

SNS delivery is observed through an SQS queue subscribed to the topic, as an email subscriber would
receive it. Scenario: a single-run backfill ending on DAY, then the scheduled run of NEXT_DAY, with the
sensor and the notification job run as the daemon would, then reruns of everything.
"""

import datetime as dt
import json
import os
import subprocess
import sys
from zoneinfo import ZoneInfo

import boto3
import dagster as dg
import pytest

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.domain.site.report import render_text
from alchemy_pipeline.settings import SettingsError, load_settings
from tests.aws import aws_mode_env, make_buckets_and_topic
from tests.conftest import history_keys, local_instance, tick_schedule, use_env, vendor_tables, write_universe
from tests.tushare_server import VALID_TOKEN, TushareTestServer

DAY, NEXT_DAY = "2024-06-28", "2024-07-01"
FUNDS = {"510300.SH": "沪深300ETF", "159915.SZ": "创业板ETF", "512880.SH": "证券ETF"}
SITE_URL = "https://signals.example.com"


def run_job(defs, instance, job, **kwargs):
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kwargs)
    assert result.success, [e.message for e in result.all_events if e.is_failure]


def range_tags(start, end):
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def tick_sensor(defs, instance, cursor):
    sensor = defs.resolve_sensor_def("notify_subscribers_sensor")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, cursor=cursor, resources={"notifier": defs.resources["notifier"]}
    ) as context:
        return sensor.evaluate_tick(context)


def drain(queue_url):
    sqs = boto3.client("sqs")
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            messages.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def aws_world(aws, tmp_path, monkeypatch):
    world = make_buckets_and_topic()
    server = TushareTestServer(vendor_tables(list(FUNDS), "2022-06-01", "2024-07-05")).start()
    env = {
        **aws_mode_env(world, SITE_URL),
        "ALCHEMY_UNIVERSE": str(write_universe(tmp_path / "universe.csv", FUNDS)),
        "ALCHEMY_NOTIFY_MAX_AGE_DAYS": "100000",  # the scenario's days are in 2024
        "ALCHEMY_BACKTEST_START": "2024-06-24",  # the first day the scenario publishes
        "TUSHARE_TOKEN": VALID_TOKEN,
        "TUSHARE_API_URL": server.url,
    }
    use_env(monkeypatch, env)
    yield {**world, "server": server}
    server.stop()


def test_backfill_then_daily_run_publish_to_s3_and_notify_exactly_once_per_new_day(aws_world):
    defs = build_definitions(load_settings())
    s3 = boto3.client("s3")
    with local_instance() as instance:
        window = history_keys("2024-06-24")
        run_job(defs, instance, "daily_signals_job", asset_selection=[dg.AssetKey("etf_daily_prices")],
                tags=range_tags(window[0], window[-1]))  # fmt: skip
        run_job(defs, instance, "daily_signals_job", tags=range_tags("2024-06-24", DAY))

        first = tick_sensor(defs, instance, None)
        assert [r.partition_key for r in first.run_requests] == [DAY]  # never the older days of the backfill
        run_job(defs, instance, "notify_subscribers", partition_key=DAY)

        when = dt.datetime(2024, 7, 1, 18, tzinfo=ZoneInfo("Asia/Shanghai"))
        tick = tick_schedule(defs, instance, "daily_signals_schedule", when)
        assert len(tick.run_requests) == 1
        run_job(defs, instance, "daily_signals_job", tags=dict(tick.run_requests[0].tags))
        second = tick_sensor(defs, instance, first.cursor)
        assert [r.partition_key for r in second.run_requests] == [NEXT_DAY]
        run_job(defs, instance, "notify_subscribers", partition_key=NEXT_DAY)

        # Reruns: the day's run again, the sensor again, the notification job again.
        run_job(defs, instance, "daily_signals_job", tags=range_tags(NEXT_DAY, NEXT_DAY))
        assert not tick_sensor(defs, instance, second.cursor).run_requests
        run_job(defs, instance, "notify_subscribers", partition_key=NEXT_DAY)

    messages = drain(aws_world["queue"])
    assert [m["MessageAttributes"]["trade_date"]["Value"] for m in messages] == [DAY, NEXT_DAY]
    for message, day in zip(messages, (DAY, NEXT_DAY), strict=True):
        assert message["Subject"] == f"Double MA Strategy Trade Signal: {day} - A Share"
        # The email's rendering of the report published on S3: each crossing fund linked to its page.
        report = json.loads(s3.get_object(Bucket=aws_world["site"], Key=f"reports/{day}.json")["Body"].read())
        email = render_text(report, fund_url=lambda code: f"{SITE_URL}/funds/{code}.html")
        assert message["Message"].startswith(email.rstrip())
        assert f"{SITE_URL}/reports/{day}.html" in message["Message"]
        record = json.loads(s3.get_object(Bucket=aws_world["data"], Key=f"notifications/{day}.json")["Body"].read())
        assert (record["state"], record["message_id"]) == ("sent", message["MessageId"])

    site_keys = {o["Key"] for o in s3.list_objects_v2(Bucket=aws_world["site"])["Contents"]}
    for day in ("2024-06-24", DAY, NEXT_DAY):
        assert {f"reports/{day}.json", f"reports/{day}.txt", f"reports/{day}.html"} <= site_keys
    assert {"index.html", "history.json", "history.html", "rules.html", "funds/PORTFOLIO.html"} <= site_keys
    assert {f"funds/{code}{suffix}" for code in FUNDS for suffix in (".html", ".json")} <= site_keys
    expected_types = {".json": "application/json", ".txt": "text/plain", ".html": "text/html", ".js": "text/javascript"}
    for key in (f"reports/{DAY}.json", f"reports/{DAY}.txt", f"reports/{DAY}.html", "index.html", "history.json",
                "static/site.js"):  # fmt: skip
        head = s3.head_object(Bucket=aws_world["site"], Key=key)
        suffix = key[key.rindex(".") :]
        assert head["ContentType"] == f"{expected_types[suffix]}; charset=utf-8"
        grants = s3.get_object_acl(Bucket=aws_world["site"], Key=key)["Grants"]
        assert all(g["Grantee"].get("Type") == "CanonicalUser" for g in grants)  # nothing public
    for key in ("index.html", "history.json"):
        assert s3.head_object(Bucket=aws_world["site"], Key=key)["CacheControl"] == "public, max-age=300"
    history = json.loads(s3.get_object(Bucket=aws_world["site"], Key="history.json")["Body"].read())
    assert history["days"][:2] == [NEXT_DAY, DAY]
    index = s3.get_object(Bucket=aws_world["site"], Key="index.html")["Body"].read().decode()
    assert 'action="https://api.example.com/subscribe"' in index
    assets = {
        o["Key"] for o in s3.list_objects_v2(Bucket=aws_world["data"], Prefix="assets/trade_signals/")["Contents"]
    }
    assert f"assets/trade_signals/{NEXT_DAY}.parquet" in assets


def test_automation_runs_by_default_on_aws_and_not_locally(aws_world, monkeypatch):
    aws_defs = build_definitions(load_settings())
    assert aws_defs.resolve_schedule_def("daily_signals_schedule").default_status == dg.DefaultScheduleStatus.RUNNING
    assert aws_defs.resolve_sensor_def("notify_subscribers_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    local_defs = build_definitions(load_settings({}))
    assert local_defs.resolve_schedule_def("daily_signals_schedule").default_status == dg.DefaultScheduleStatus.STOPPED
    assert local_defs.resolve_sensor_def("notify_subscribers_sensor").default_status == dg.DefaultSensorStatus.STOPPED


@pytest.mark.parametrize(
    ("drop", "extra", "named"),
    [
        ("ALCHEMY_DATA_BUCKET", {}, "ALCHEMY_DATA_BUCKET"),
        ("ALCHEMY_SITE_BUCKET", {}, "ALCHEMY_SITE_BUCKET"),
        ("ALCHEMY_SNS_TOPIC_ARN", {}, "ALCHEMY_SNS_TOPIC_ARN"),
        ("ALCHEMY_SITE_URL", {}, "ALCHEMY_SITE_URL"),
        ("TUSHARE_TOKEN", {}, "TUSHARE_TOKEN"),
        (None, {"ALCHEMY_PRICE_SOURCE": "demo"}, "ALCHEMY_PRICE_SOURCE=demo is refused"),
    ],
)
def test_aws_mode_fails_at_once_naming_a_missing_setting(aws_world, drop, extra, named):
    environ = {**os.environ, **extra}
    if drop:
        environ.pop(drop)
    with pytest.raises(SettingsError, match=named):
        load_settings(environ)


# Loads the code location with every socket refused, and prints whether a 2027 holiday of the cached
# calendar (2027-02-09, a Tuesday) is a partition: it is, unless the code knows that calendar.
LOAD_WITHOUT_NETWORK = """
import datetime as dt
import socket

def refuse(*args, **kwargs):
    raise OSError("network call while loading the code location")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
from alchemy_pipeline.definitions import defs
partitions = defs.resolve_job_def("notify_subscribers").partitions_def
print("2027-02-09" in partitions.get_partition_keys(current_time=dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)))
"""


def test_the_entrypoint_brings_the_cached_calendar_and_the_code_loads_without_network(aws_world, tmp_path):
    from tests.test_calendar import AFTER, trade_cal

    env = {**os.environ, "ALCHEMY_DATA_DIR": str(tmp_path / "data")}
    cache = trade_cal(AFTER, dt.date(2027, 12, 31)).to_csv(index=False).encode()
    boto3.client("s3").put_object(Bucket=aws_world["data"], Key="reference/trade_cal_SSE.csv", Body=cache)
    load = [sys.executable, "-c", LOAD_WITHOUT_NETWORK]
    # Without the entrypoint the code knows only the bundled calendar: it never reads S3 while loading.
    alone = subprocess.run(load, env=env, capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert alone.stdout.split() == ["True"]
    entry = [sys.executable, "-m", "alchemy_pipeline.container_entrypoint", *load]
    done = subprocess.run(entry, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trading calendar known to 2027-12-31" in done.stderr
    assert done.stdout.split() == ["False"]
    assert (tmp_path / "data" / "reference" / "trade_cal_SSE.csv").read_bytes() == cache


def test_an_unusable_cached_calendar_stops_the_container_naming_the_object(aws_world, tmp_path):
    env = {**os.environ, "ALCHEMY_DATA_DIR": str(tmp_path / "data")}
    boto3.client("s3").put_object(
        Bucket=aws_world["data"], Key="reference/trade_cal_SSE.csv", Body=b"cal_date,is_open\n20270104,7\n"
    )
    entry = [sys.executable, "-m", "alchemy_pipeline.container_entrypoint", "true"]
    done = subprocess.run(entry, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"s3://{aws_world['data']}/reference/trade_cal_SSE.csv is unusable" in done.stderr
    assert "is_open values must be 0 or 1" in done.stderr and "delete it" in done.stderr
    assert not (tmp_path / "data").exists()  # nothing half-made on this machine
