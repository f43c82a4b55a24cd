"""Every environment variable the pipeline reads, parsed and checked in one place.

A bad or missing setting fails at once with a message that names the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable is missing or unusable."""


ENVIRONMENTS = ("local", "aws")
PRICE_SOURCES = ("tushare", "demo")


@dataclass(frozen=True)
class Settings:
    env: str
    price_source: str
    tushare_token_var: str | None
    tushare_api_url: str | None
    tushare_timeout: float
    tushare_calls_per_minute: int
    tushare_retry_attempts: int
    tushare_retry_base_delay: float
    universe_path: str | None
    data_dir: Path
    publish_dir: Path
    site_url: str
    notify_max_age_days: int
    ma_short: int
    ma_long: int
    max_funds_without_data: int = 5
    late_data_retries: int = 8
    late_data_retry_seconds: int = 1800
    subscribe_url: str | None = None
    aws_region: str | None = None
    data_bucket: str | None = None
    site_bucket: str | None = None
    sns_topic_arn: str | None = None


def _int(environ, name: str, default: int, minimum: int = 0) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _float(environ, name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    env = environ.get("ALCHEMY_ENV", "").strip() or "local"
    if env not in ENVIRONMENTS:
        raise SettingsError(f"ALCHEMY_ENV={env!r} is not supported; use one of {', '.join(ENVIRONMENTS)}")
    # The seed read TUSHARE_API_TOKEN; both names are honoured, the SDK's own name first.
    token_var = next((v for v in ("TUSHARE_TOKEN", "TUSHARE_API_TOKEN") if environ.get(v, "").strip()), None)
    price_source = environ.get("ALCHEMY_PRICE_SOURCE", "").strip() or (
        "tushare" if token_var or env != "local" else "demo"
    )
    if price_source not in PRICE_SOURCES:
        raise SettingsError(
            f"ALCHEMY_PRICE_SOURCE={price_source!r} is not supported; use one of {', '.join(PRICE_SOURCES)}"
        )
    if price_source == "demo" and env != "local":
        raise SettingsError(
            f"ALCHEMY_PRICE_SOURCE=demo is refused when ALCHEMY_ENV={env}: demo prices are not market prices"
        )
    if price_source == "tushare" and token_var is None:
        raise SettingsError(
            "ALCHEMY_PRICE_SOURCE=tushare needs a Tushare token in TUSHARE_TOKEN (or TUSHARE_API_TOKEN)"
        )
    data_dir = Path(environ.get("ALCHEMY_DATA_DIR", "").strip() or ".alchemy/data").resolve()
    publish_dir = Path(environ.get("ALCHEMY_PUBLISH_DIR", "").strip() or ".alchemy/site").resolve()
    fields = dict(
        env=env,
        price_source=price_source,
        tushare_token_var=token_var,
        tushare_api_url=environ.get("TUSHARE_API_URL", "").strip() or None,
        tushare_timeout=_float(environ, "TUSHARE_TIMEOUT", 30.0),
        tushare_calls_per_minute=_int(environ, "TUSHARE_CALLS_PER_MINUTE", 180, minimum=1),
        tushare_retry_attempts=_int(environ, "TUSHARE_RETRY_ATTEMPTS", 5, minimum=1),
        tushare_retry_base_delay=_float(environ, "TUSHARE_RETRY_BASE_SECONDS", 2.0),
        universe_path=environ.get("ALCHEMY_UNIVERSE", "").strip() or None,
        data_dir=data_dir,
        publish_dir=publish_dir,
        site_url=(environ.get("ALCHEMY_SITE_URL", "").strip() or publish_dir.as_uri()).rstrip("/"),
        subscribe_url=environ.get("ALCHEMY_SUBSCRIBE_URL", "").strip() or None,
        notify_max_age_days=_int(environ, "ALCHEMY_NOTIFY_MAX_AGE_DAYS", 3),
        ma_short=_int(environ, "ALCHEMY_MA_SHORT", 11),
        ma_long=_int(environ, "ALCHEMY_MA_LONG", 22),
        max_funds_without_data=_int(environ, "ALCHEMY_MAX_FUNDS_WITHOUT_DATA", 5),
        late_data_retries=_int(environ, "ALCHEMY_LATE_DATA_RETRIES", 8),
        late_data_retry_seconds=_int(environ, "ALCHEMY_LATE_DATA_RETRY_SECONDS", 1800),
    )
    if env == "aws":
        fields.update(_aws_settings(environ))
    return Settings(**fields)


def _required(environ, name: str, why: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is not set: ALCHEMY_ENV=aws needs it for {why}")
    return value


def _aws_settings(environ) -> dict:
    region = environ.get("AWS_REGION", "").strip() or environ.get("AWS_DEFAULT_REGION", "").strip()
    if not region:
        raise SettingsError("AWS_REGION (or AWS_DEFAULT_REGION) is not set: ALCHEMY_ENV=aws needs the AWS region")
    topic = _required(environ, "ALCHEMY_SNS_TOPIC_ARN", "the subscribers' SNS topic")
    if not topic.startswith("arn:"):
        raise SettingsError(f"ALCHEMY_SNS_TOPIC_ARN={topic!r} is not an ARN")
    return {
        "aws_region": region,
        "data_bucket": _required(environ, "ALCHEMY_DATA_BUCKET", "the assets and notification records"),
        "site_bucket": _required(environ, "ALCHEMY_SITE_BUCKET", "the published site"),
        "sns_topic_arn": topic,
        "site_url": _required(environ, "ALCHEMY_SITE_URL", "the links in notifications").rstrip("/"),
        "subscribe_url": _required(environ, "ALCHEMY_SUBSCRIBE_URL", "the web page's subscribe form"),
    }
