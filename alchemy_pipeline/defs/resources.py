"""Resources, and the one place that decides which ones this environment gets."""

import datetime as dt

import boto3
import dagster as dg
import pandas as pd
import tushare
from botocore.config import Config
from dagster_aws.s3 import S3Resource

from alchemy_pipeline.defs.io_manager import LocalParquetIOManager, S3ParquetIOManager
from alchemy_pipeline.defs.partitions import HISTORY_WINDOW
from alchemy_pipeline.domain.backtest import BacktestSettings
from alchemy_pipeline.domain.market.calendar import TRADE_CAL_CACHE_KEY, TradingCalendar, cached_calendar
from alchemy_pipeline.domain.market.demo_prices import DEMO_NOTICE, DemoTushareApi
from alchemy_pipeline.domain.market.tushare_api import RetryPolicy, TushareClient, shared_rate_limiter
from alchemy_pipeline.domain.market.universe import load_universe
from alchemy_pipeline.domain.signals.rule import RuleParams
from alchemy_pipeline.domain.site.channels import NOTIFY_URLS, OPERATOR_URLS, Channel, Outcome, alert, parse_channels
from alchemy_pipeline.domain.site.notify import LocalOutbox, Notifier, SnsNotifier
from alchemy_pipeline.infrastructure.storage import BlobStore, LocalBlobStore, S3BlobStore
from alchemy_pipeline.settings import Settings


class UniverseResource(dg.ConfigurableResource):
    """The funds to follow: a CSV of ts_code,name (the project's default list when no path is set), and
    how many of them may lack data on a day before the day is held back as a broken fetch."""

    path: str | None
    max_funds_without_data: int

    def load(self) -> pd.DataFrame:
        return load_universe(self.path)


class StrategyResource(dg.ConfigurableResource):
    """Moving-average lengths, in trading days."""

    short: int
    long: int

    def params(self) -> RuleParams:
        return RuleParams(short=self.short, long=self.long, window=HISTORY_WINDOW)

    def rule(self) -> dict:
        """The rule as the backtest's documents name it."""
        return self.params().described()


class BacktestResource(dg.ConfigurableResource):
    """How the backtest trades the signals: from what day, with what cash, costs, lots and fills."""

    start: str
    execution: str
    cash: float
    commission: float
    min_commission: float
    slippage_bps: float
    lot: int

    def settings(self) -> BacktestSettings:
        return BacktestSettings(
            start=dt.date.fromisoformat(self.start),
            execution=self.execution,
            cash=self.cash,
            commission=self.commission,
            min_commission=self.min_commission,
            slippage_bps=self.slippage_bps,
            lot=self.lot,
        )


class PriceSourceResource(dg.ConfigurableResource):
    """Where daily bars and adjustment factors come from, and how long to wait for a day that is not
    published yet (the schedule fires at 18:00; the vendor can be later)."""

    late_data_retries: int
    late_data_retry_seconds: int

    def client(self, ts_codes: list[str]) -> TushareClient:
        raise NotImplementedError

    @property
    def notice(self) -> str | None:
        """A line every report built from this source must carry."""
        return None


class TushareResource(PriceSourceResource):
    """Tushare Pro through its own SDK over HTTP."""

    token: str
    api_url: str | None
    timeout: float
    calls_per_minute: int
    retry_attempts: int
    retry_base_delay: float

    def client(self, ts_codes: list[str]) -> TushareClient:
        api = tushare.pro_api(token=self.token, timeout=self.timeout)
        if self.api_url:
            # tushare (1.4.29, the newest) has no public way to set its base URL, which TUSHARE_API_URL needs:
            # this private attribute is it, here only, and every Tushare test goes through it.
            api._DataApi__http_url = self.api_url.rstrip("/")
        return TushareClient(
            api,
            limiter=shared_rate_limiter(self.calls_per_minute),
            retry=RetryPolicy(attempts=self.retry_attempts, base_delay=self.retry_base_delay),
        )


class DemoPricesResource(PriceSourceResource):
    """Deterministic synthetic prices: no token, no network. Never for production."""

    def client(self, ts_codes: list[str]) -> TushareClient:
        return TushareClient(DemoTushareApi(ts_codes))

    @property
    def notice(self) -> str | None:
        return DEMO_NOTICE


class FilesResource(dg.ConfigurableResource):
    """A place that keeps files: a local directory or an S3 bucket."""

    def store(self) -> BlobStore:
        raise NotImplementedError


class LocalFilesResource(FilesResource):
    root: str

    def store(self) -> BlobStore:
        return LocalBlobStore(self.root)


class S3FilesResource(FilesResource):
    s3: dg.ResourceDependency[S3Resource]
    bucket: str

    def store(self) -> BlobStore:
        return S3BlobStore(self.s3.get_client(), self.bucket)


class SiteResource(dg.ConfigurableResource):
    """The published site: where its files go (on AWS a private bucket read through CloudFront), the base
    URL its pages are read at, and the endpoint its subscribe form posts to."""

    files: dg.ResourceDependency[FilesResource]
    base_url: str
    subscribe_url: str | None = None

    def store(self) -> BlobStore:
        return self.files.store()

    def page_url(self, day: str) -> str:
        return self.url(f"reports/{day}.html")

    def url(self, key: str) -> str:
        return f"{self.base_url}/{key}"


class TradingCalendarResource(dg.ConfigurableResource):
    """The trading calendar: the bundled one, extended by the Tushare trade_cal cached in ``files``."""

    files: dg.ResourceDependency[FilesResource]

    def load(self) -> TradingCalendar:
        """The calendar as cached now (a CalendarError, naming the cache, if it cannot be read)."""
        store = self.files.store()
        return cached_calendar(store.get(TRADE_CAL_CACHE_KEY), store.location(TRADE_CAL_CACHE_KEY))

    def copy_to(self, directory: str) -> TradingCalendar:
        """Brings the cache to ``directory`` (the code location's data directory), checked first."""
        store = self.files.store()
        raw = store.get(TRADE_CAL_CACHE_KEY)
        known = cached_calendar(raw, store.location(TRADE_CAL_CACHE_KEY))
        if raw is not None:
            LocalBlobStore(directory).put(TRADE_CAL_CACHE_KEY, raw)
        return known

    def save(self, trade_cal: pd.DataFrame) -> None:
        self.files.store().put(
            TRADE_CAL_CACHE_KEY, trade_cal.to_csv(index=False).encode("utf-8"), content_type="text/csv; charset=utf-8"
        )


class NotifierResource(dg.ConfigurableResource):
    """Tells subscribers; ``max_age_days`` bounds how old a day may be and still be sent."""

    max_age_days: int

    def notifier(self) -> Notifier:
        raise NotImplementedError


class OutboxNotifierResource(NotifierResource):
    """Local: messages land in an outbox directory."""

    outbox_dir: str

    def notifier(self) -> Notifier:
        return LocalOutbox(self.outbox_dir)


class SnsNotifierResource(NotifierResource):
    """An SNS topic with email subscriptions; the record of each day is kept in ``records``."""

    records: dg.ResourceDependency[FilesResource]
    topic_arn: str
    region_name: str

    def notifier(self) -> Notifier:
        # Short timeouts and few retries: a hung publish must not hold the run, and a retry of the
        # run is safer than many silent retries of a call that may have gone through.
        config = Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"})
        sns = boto3.client("sns", region_name=self.region_name, config=config)
        return SnsNotifier(sns, self.topic_arn, self.records.store())


class ChannelsResource(dg.ConfigurableResource):
    """The channels beside the email (Apprise URLs, from ``ALCHEMY_NOTIFY_URLS``: the UI shows the variable,
    never the URLs), each keeping its record of each day in ``records``."""

    records: dg.ResourceDependency[FilesResource]
    urls: str = ""
    timeout_seconds: float
    retry_seconds: float

    def channels(self) -> tuple[Channel, ...]:
        return parse_channels(self.urls)


class OperatorResource(dg.ConfigurableResource):
    """Who hears when a day goes wrong: the operator's channels (``ALCHEMY_OPERATOR_URLS``, read from the
    environment), or none, and then only the log; with links into the Dagster UI at ``ui_url``."""

    records: dg.ResourceDependency[FilesResource]
    urls: str = ""
    timeout_seconds: float
    ui_url: str

    def alert(self, title: str, body: str) -> list[Outcome]:
        return alert(parse_channels(self.urls, OPERATOR_URLS), title, body, self.timeout_seconds)

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}"


def automation_runs_by_default(settings: Settings) -> bool:
    """A fresh AWS deployment runs on its own; locally, the schedule and sensor wait to be switched on."""
    return settings.env == "aws"


def build_resources(settings: Settings) -> dict[str, object]:
    """The resources of this environment (``ALCHEMY_ENV``); nothing else looks at the environment."""
    waiting = {
        "late_data_retries": settings.late_data_retries,
        "late_data_retry_seconds": settings.late_data_retry_seconds,
    }
    if settings.price_source == "tushare":
        prices: PriceSourceResource = TushareResource(
            **waiting,
            token=dg.EnvVar(settings.tushare_token_var),
            api_url=settings.tushare_api_url,
            timeout=settings.tushare_timeout,
            calls_per_minute=settings.tushare_calls_per_minute,
            retry_attempts=settings.tushare_retry_attempts,
            retry_base_delay=settings.tushare_retry_base_delay,
        )
    else:
        prices = DemoPricesResource(**waiting)
    common = {
        "prices": prices,
        "universe": UniverseResource(
            path=settings.universe_path, max_funds_without_data=settings.max_funds_without_data
        ),
        "strategy": StrategyResource(short=settings.ma_short, long=settings.ma_long),
        "backtest": BacktestResource(
            start=settings.backtest_start.isoformat(),
            execution=settings.backtest_execution,
            cash=settings.backtest_cash,
            commission=settings.backtest_commission,
            min_commission=settings.backtest_min_commission,
            slippage_bps=settings.backtest_slippage_bps,
            lot=settings.backtest_lot,
        ),
    }
    channels = {
        "urls": dg.EnvVar(NOTIFY_URLS) if settings.notify_channels else "",
        "timeout_seconds": settings.notify_timeout_seconds,
        "retry_seconds": settings.notify_retry_seconds,
    }
    operator = {
        "urls": dg.EnvVar(OPERATOR_URLS) if settings.operator_channels else "",
        "timeout_seconds": settings.notify_timeout_seconds,
        "ui_url": settings.ui_url,
    }
    if settings.env == "aws":
        s3 = S3Resource(region_name=settings.aws_region)
        data: FilesResource = S3FilesResource(s3=s3, bucket=settings.data_bucket)
        return {
            **common,
            "channels": ChannelsResource(records=data, **channels),
            "operator": OperatorResource(records=data, **operator),
            "io_manager": S3ParquetIOManager(s3=s3, bucket=settings.data_bucket),
            "calendar_cache": TradingCalendarResource(files=data),
            "site": SiteResource(
                files=S3FilesResource(s3=s3, bucket=settings.site_bucket),
                base_url=settings.site_url,
                subscribe_url=settings.subscribe_url,
            ),
            "notifier": SnsNotifierResource(
                records=data,
                topic_arn=settings.sns_topic_arn,
                region_name=settings.aws_region,
                max_age_days=settings.notify_max_age_days,
            ),
        }
    data = LocalFilesResource(root=str(settings.data_dir))
    return {
        **common,
        "channels": ChannelsResource(records=data, **channels),
        "operator": OperatorResource(records=data, **operator),
        "io_manager": LocalParquetIOManager(base_dir=str(settings.data_dir)),
        "calendar_cache": TradingCalendarResource(files=data),
        "site": SiteResource(
            files=LocalFilesResource(root=str(settings.publish_dir)),
            base_url=settings.site_url,
            subscribe_url=settings.subscribe_url,
        ),
        "notifier": OutboxNotifierResource(
            outbox_dir=str(settings.publish_dir / "outbox"), max_age_days=settings.notify_max_age_days
        ),
    }
