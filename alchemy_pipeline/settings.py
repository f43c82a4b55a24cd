"""Every environment variable the pipeline reads, each declared once: its field, default, check and meaning.

A bad or missing setting fails at once with a message that names the variable. docs/configuration.md's
tables are these declarations (``tests/test_settings.py`` holds them to each other).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alchemy_pipeline.domain.backtest import EXECUTIONS, NEXT_OPEN
from alchemy_pipeline.domain.market.calendar import DEADLINE_HOUR, FIRST_DAY, TIMEZONE
from alchemy_pipeline.domain.signals.rule import MIN_SEARCH_DAYS, RuleParams
from alchemy_pipeline.domain.site.channels import Channel, ChannelError, parse_channels


class SettingsError(ValueError):
    """An environment variable is missing or unusable."""


ENVIRONMENTS = ("local", "aws")
PRICE_SOURCES = ("tushare", "demo")
# The SDK's own name first; the seed read TUSHARE_API_TOKEN, which is honoured too.
TOKEN_VARIABLES = ("TUSHARE_TOKEN", "TUSHARE_API_TOKEN")


def text(name: str, raw: str) -> str:
    return raw


def path(name: str, raw: str) -> Path:
    return Path(raw)


def one_of(*options: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in options:
            raise SettingsError(f"{name}={raw!r} is not supported; use one of {', '.join(options)}")
        return raw

    return parse


def whole_number(minimum: int = 0) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a whole number") from None
        if value < minimum:
            raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
        return value

    return parse


def positive_number(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def number_at_least(minimum: float, below: float | None = None) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number") from None
        if not value >= minimum or (below is not None and not value < below):
            limits = f"at least {minimum:g}" + (f" and below {below:g}" if below is not None else "")
            raise SettingsError(f"{name}={raw!r} must be {limits}")
        return value

    return parse


def channel_urls(name: str, raw: str) -> tuple[Channel, ...]:
    try:
        return parse_channels(raw, name)
    except ChannelError as error:
        raise SettingsError(str(error)) from None


def day_from_first(name: str, raw: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a date (YYYY-MM-DD)") from None
    if day < FIRST_DAY:
        raise SettingsError(f"{name}={raw!r} is before {FIRST_DAY}, the first day Alchemy covers")
    return day


@dataclass(frozen=True)
class Variable:
    """How a field of ``Settings`` is read from the environment, and what docs/configuration.md says of it."""

    name: str
    parse: Callable[[str, str], object]
    meaning: str
    # How docs/configuration.md shows the default when it is not the field's own (one made from other settings).
    shown_default: str | None = None
    # On AWS: why the variable is required there, and what it means there if that differs.
    aws_need: str | None = None
    aws_meaning: str | None = None


def setting(default, variable: Variable):
    return dataclasses.field(default=default, metadata={"variable": variable})


@dataclass(frozen=True)
class Settings:
    env: str = setting(
        "local", Variable("ALCHEMY_ENV", one_of(*ENVIRONMENTS), "environment; `local` keeps everything on this machine")
    )
    price_source: str = setting(
        None,
        Variable(
            "ALCHEMY_PRICE_SOURCE",
            one_of(*PRICE_SOURCES),
            "`tushare`, or `demo` (synthetic prices, stamped in every report)",
            shown_default="`tushare` if a token is set, else `demo`",
        ),
    )
    # Which of TOKEN_VARIABLES holds the token: the token itself is read by the resource, never kept here.
    tushare_token_var: str | None = setting(
        None,
        Variable(
            "TUSHARE_TOKEN",
            text,
            "Tushare Pro token (or the seed's `TUSHARE_API_TOKEN`); never written to logs or run config",
            aws_need="the prices",
            aws_meaning="from the SecureString parameter the stack's `TushareTokenParameter` names",
        ),
    )
    tushare_api_url: str | None = setting(
        None, Variable("TUSHARE_API_URL", text, "base URL override, for proxies and tests", shown_default="the SDK's")
    )
    tushare_timeout: float = setting(30.0, Variable("TUSHARE_TIMEOUT", positive_number, "seconds per API call"))
    tushare_calls_per_minute: int = setting(
        180,
        Variable(
            "TUSHARE_CALLS_PER_MINUTE",
            whole_number(1),
            "per API, for every call of a run (under Tushare's lowest common tier)",
        ),
    )
    tushare_retry_attempts: int = setting(5, Variable("TUSHARE_RETRY_ATTEMPTS", whole_number(1), "attempts per call"))
    tushare_retry_base_delay: float = setting(
        2.0,
        Variable(
            "TUSHARE_RETRY_BASE_SECONDS", positive_number, "the first backoff between attempts (doubling, with jitter)"
        ),
    )
    max_funds_without_data: int = setting(
        5,
        Variable(
            "ALCHEMY_MAX_FUNDS_WITHOUT_DATA",
            whole_number(),
            "more trading funds than this without a bar on a day hold the day back",
        ),
    )
    late_data_retries: int = setting(
        8, Variable("ALCHEMY_LATE_DATA_RETRIES", whole_number(), "tries of a day the vendor has not published yet")
    )
    late_data_retry_seconds: int = setting(
        1800, Variable("ALCHEMY_LATE_DATA_RETRY_SECONDS", whole_number(), "seconds between those tries")
    )
    universe_path: str | None = setting(
        None,
        Variable(
            "ALCHEMY_UNIVERSE",
            text,
            "CSV with columns `ts_code,name` (44 liquid ETFs by default)",
            shown_default="`alchemy_pipeline/data/universe.csv`",
        ),
    )
    data_dir: Path = setting(
        Path(".alchemy/data"),
        Variable(
            "ALCHEMY_DATA_DIR",
            path,
            "Parquet asset storage, one file per asset and day, and the cached trading calendar (on AWS, only the "
            "calendar, brought from the data bucket by the container's entrypoint)",
        ),
    )
    publish_dir: Path = setting(
        Path(".alchemy/site"),
        Variable("ALCHEMY_PUBLISH_DIR", path, "the published site and the outbox"),
    )
    site_url: str | None = setting(
        None,
        Variable(
            "ALCHEMY_SITE_URL",
            text,
            "base of the links in notifications",
            shown_default="`file://` URL of the publish directory",
            aws_need="the links in notifications",
            aws_meaning="the site's public URL, for links in messages",
        ),
    )
    notify_max_age_days: int = setting(
        3,
        Variable(
            "ALCHEMY_NOTIFY_MAX_AGE_DAYS", whole_number(), "newest day older than this (calendar days) is not notified"
        ),
    )
    # The channels are checked here; their URLs (tokens) reach the run from the environment, never its config.
    notify_channels: tuple[Channel, ...] = setting(
        (),
        Variable(
            "ALCHEMY_NOTIFY_URLS",
            channel_urls,
            "Apprise URLs of the channels beside the email (WeCom, DingTalk, Feishu, Telegram, webhooks ...), "
            "whitespace- or comma-separated: each gets each new trading day once (docs/channels.md)",
            shown_default="none",
        ),
    )
    notify_timeout_seconds: float = setting(
        20.0,
        Variable(
            "ALCHEMY_NOTIFY_TIMEOUT_SECONDS",
            positive_number,
            "seconds a channel has to answer; a day it did not answer is never resent to it (it may have arrived)",
        ),
    )
    notify_retry_seconds: float = setting(
        60.0,
        Variable(
            "ALCHEMY_NOTIFY_RETRY_SECONDS",
            positive_number,
            "the first wait before a channel that refused is tried again (doubling, 3 retries)",
        ),
    )
    operator_channels: tuple[Channel, ...] = setting(
        (),
        Variable(
            "ALCHEMY_OPERATOR_URLS",
            channel_urls,
            f"Apprise URLs that tell the operator of a failed run, a day not published by {DEADLINE_HOUR}:00 "
            f"{TIMEZONE} and the success after (docs/reliability.md); none: the run's log only",
            shown_default="none",
        ),
    )
    ui_url: str = setting(
        "http://localhost:3000",
        Variable("ALCHEMY_UI_URL", text, "base of the Dagster UI's links in the operator's alerts"),
    )
    ma_short: int = setting(
        11, Variable("ALCHEMY_MA_SHORT", whole_number(), "short moving-average length in trading days")
    )
    ma_long: int = setting(
        22, Variable("ALCHEMY_MA_LONG", whole_number(), "long moving-average length in trading days (at most 49)")
    )
    backtest_start: dt.date = setting(
        FIRST_DAY,
        Variable(
            "ALCHEMY_BACKTEST_START",
            day_from_first,
            "first day of the backtest, a trading day (YYYY-MM-DD); every run reads the prices and signals from it on",
        ),
    )
    backtest_cash: float = setting(
        100_000.0, Variable("ALCHEMY_BACKTEST_CASH", positive_number, "starting cash per fund, CNY")
    )
    backtest_commission: float = setting(
        0.00025, Variable("ALCHEMY_BACKTEST_COMMISSION", number_at_least(0, 1), "commission rate on every fill")
    )
    backtest_min_commission: float = setting(
        5.0, Variable("ALCHEMY_BACKTEST_MIN_COMMISSION", number_at_least(0), "minimum commission per fill, CNY")
    )
    backtest_slippage_bps: float = setting(
        0.0,
        Variable(
            "ALCHEMY_BACKTEST_SLIPPAGE_BPS",
            number_at_least(0, 10_000),
            "slippage against the trader on every fill, basis points",
        ),
    )
    backtest_lot: int = setting(
        100, Variable("ALCHEMY_BACKTEST_LOT", whole_number(1), "shares per lot; buys are whole lots")
    )
    backtest_execution: str = setting(
        NEXT_OPEN,
        Variable(
            "ALCHEMY_BACKTEST_EXECUTION",
            one_of(*EXECUTIONS),
            "`next_open`: a signal fills at the fund's next bar's open; `close`: at the signal day's close "
            "(optimistic)",
        ),
    )
    subscribe_url: str | None = setting(
        None,
        Variable(
            "ALCHEMY_SUBSCRIBE_URL",
            text,
            "the subscription endpoint the page's form posts to (no form without it)",
            aws_need="the web page's subscribe form",
            aws_meaning="the API Gateway URL of the subscription Lambda",
        ),
    )
    aws_region: str | None = setting(
        None,
        Variable(
            "AWS_REGION",
            text,
            "",
            aws_need="the AWS region",
            aws_meaning="the region of the buckets and the topic (`AWS_DEFAULT_REGION` is read too); credentials "
            "come from the usual boto3 chain",
        ),
    )
    data_bucket: str | None = setting(
        None,
        Variable(
            "ALCHEMY_DATA_BUCKET",
            text,
            "",
            aws_need="the assets and notification records",
            aws_meaning="assets as Parquet under `assets/`, the cached calendar under `reference/`, notification "
            "records under `notifications/`",
        ),
    )
    site_bucket: str | None = setting(
        None,
        Variable(
            "ALCHEMY_SITE_BUCKET",
            text,
            "",
            aws_need="the published site",
            aws_meaning="the published site, same key layout as locally; private, read through CloudFront",
        ),
    )
    sns_topic_arn: str | None = setting(
        None,
        Variable(
            "ALCHEMY_SNS_TOPIC_ARN",
            text,
            "",
            aws_need="the subscribers' SNS topic",
            aws_meaning="the topic subscribers' email addresses are subscribed to",
        ),
    )


def variables() -> list[tuple[str, Variable]]:
    """Each field of ``Settings`` with its variable, in declaration order."""
    return [(f.name, f.metadata["variable"]) for f in dataclasses.fields(Settings)]


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    raw = {name: environ.get(name, "").strip() for name in {v.name for _, v in variables()} | {*TOKEN_VARIABLES}}
    raw["AWS_REGION"] = raw["AWS_REGION"] or environ.get("AWS_DEFAULT_REGION", "").strip()
    values = {
        field: variable.parse(variable.name, raw[variable.name])
        for field, variable in variables()
        if raw[variable.name]
    }
    values["tushare_token_var"] = next((name for name in TOKEN_VARIABLES if raw[name]), None)
    settings = Settings(**values)
    if settings.env == "aws":
        missing = [(v.name, v.aws_need) for field, v in variables() if v.aws_need and getattr(settings, field) is None]
        for name, need in missing:
            shown = "AWS_REGION (or AWS_DEFAULT_REGION)" if name == "AWS_REGION" else name
            raise SettingsError(f"{shown} is not set: ALCHEMY_ENV=aws needs it for {need}")
        if not settings.sns_topic_arn.startswith("arn:"):
            raise SettingsError(f"ALCHEMY_SNS_TOPIC_ARN={settings.sns_topic_arn!r} is not an ARN")
    price_source = settings.price_source or (
        "tushare" if settings.tushare_token_var or settings.env != "local" else "demo"
    )
    if price_source == "demo" and settings.env != "local":
        raise SettingsError(
            f"ALCHEMY_PRICE_SOURCE=demo is refused when ALCHEMY_ENV={settings.env}: demo prices are not market prices"
        )
    if price_source == "tushare" and settings.tushare_token_var is None:
        raise SettingsError(
            "ALCHEMY_PRICE_SOURCE=tushare needs a Tushare token in TUSHARE_TOKEN (or TUSHARE_API_TOKEN)"
        )
    short, long, window = settings.ma_short, settings.ma_long, RuleParams.window
    if not 1 < short < long:
        raise SettingsError(f"ALCHEMY_MA_SHORT={short} and ALCHEMY_MA_LONG={long}: the averages need 1 < short < long")
    if long > window - MIN_SEARCH_DAYS - 1:
        raise SettingsError(
            f"ALCHEMY_MA_LONG={long} is longer than {window - MIN_SEARCH_DAYS - 1} trading days, the most the "
            f"{window}-day history window allows: the strategy searches {MIN_SEARCH_DAYS} days past the long "
            "average for the last cross"
        )
    publish_dir = settings.publish_dir.resolve()
    return dataclasses.replace(
        settings,
        price_source=price_source,
        data_dir=settings.data_dir.resolve(),
        publish_dir=publish_dir,
        site_url=(settings.site_url or publish_dir.as_uri()).rstrip("/"),
    )
