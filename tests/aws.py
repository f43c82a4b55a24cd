"""AWS for tests: moto in server mode over HTTP on loopback (boto3 reaches it through AWS_ENDPOINT_URL)."""

import socket
import uuid

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto() -> tuple[ThreadedMotoServer, str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }


def make_buckets_and_topic() -> dict[str, str]:
    """A stack's data and site buckets and its topic, with an SQS queue subscribed to the topic: what an
    email subscriber would receive arrives there."""
    suffix = uuid.uuid4().hex[:8]
    s3, sns, sqs = boto3.client("s3"), boto3.client("sns"), boto3.client("sqs")
    data_bucket, site_bucket = f"alchemy-data-{suffix}", f"alchemy-site-{suffix}"
    for bucket in (data_bucket, site_bucket):
        s3.create_bucket(Bucket=bucket)
    topic = sns.create_topic(Name=f"signals-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"inbox-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return {"data": data_bucket, "site": site_bucket, "topic": topic, "queue": queue_url}


def aws_mode_env(world: dict[str, str], site_url: str) -> dict[str, str]:
    """The ALCHEMY_* variables of AWS mode for the buckets and topic of ``make_buckets_and_topic``."""
    return {
        "ALCHEMY_ENV": "aws",
        "ALCHEMY_DATA_BUCKET": world["data"],
        "ALCHEMY_SITE_BUCKET": world["site"],
        "ALCHEMY_SNS_TOPIC_ARN": world["topic"],
        "ALCHEMY_SITE_URL": site_url,
        "ALCHEMY_SUBSCRIBE_URL": "https://api.example.com/subscribe",
    }
