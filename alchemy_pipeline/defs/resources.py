"""Resources, and the one place that decides which ones this environment gets."""

import dagster as dg
import pandas as pd
import tushare

from alchemy_pipeline.defs.io_manager import PartitionedParquetIOManager
from alchemy_pipeline.defs.partitions import HISTORY_WINDOW
from alchemy_pipeline.domain.demo_prices import DEMO_NOTICE, DemoTushareApi
from alchemy_pipeline.domain.notify import LocalOutbox, Notifier
from alchemy_pipeline.domain.publish import LocalSiteStore, SiteStore
from alchemy_pipeline.domain.strategy import StrategyParams
from alchemy_pipeline.domain.tushare_api import TushareClient
from alchemy_pipeline.domain.universe import load_universe
from alchemy_pipeline.settings import Settings


class UniverseResource(dg.ConfigurableResource):
    """The funds to follow: a CSV of ts_code,name (the project's default list when no path is set)."""

    path: str | None = None

    def load(self) -> pd.DataFrame:
        return load_universe(self.path)


class StrategyResource(dg.ConfigurableResource):
    """Moving-average lengths, in trading days."""

    short: int = 11
    long: int = 22

    def params(self) -> StrategyParams:
        return StrategyParams(short=self.short, long=self.long, window=HISTORY_WINDOW)


class PriceSourceResource(dg.ConfigurableResource):
    """Where daily bars and adjustment factors come from."""

    def client(self, ts_codes: list[str]) -> TushareClient:
        raise NotImplementedError

    @property
    def notice(self) -> str | None:
        """A line every report built from this source must carry."""
        return None


class TushareResource(PriceSourceResource):
    """Tushare Pro through its own SDK over HTTP."""

    token: str
    api_url: str | None = None
    timeout: float = 30.0

    def client(self, ts_codes: list[str]) -> TushareClient:
        api = tushare.pro_api(token=self.token, timeout=self.timeout)
        if self.api_url:
            # The SDK keeps its base URL in a private attribute; this is how proxies and tests set it.
            api._DataApi__http_url = self.api_url.rstrip("/")
        return TushareClient(api)


class DemoPricesResource(PriceSourceResource):
    """Deterministic synthetic prices: no token, no network. Never for production."""

    def client(self, ts_codes: list[str]) -> TushareClient:
        return TushareClient(DemoTushareApi(ts_codes))

    @property
    def notice(self) -> str | None:
        return DEMO_NOTICE


class SiteResource(dg.ConfigurableResource):
    """The published site: a local directory, and the base URL its pages are linked from."""

    root: str
    base_url: str

    def store(self) -> SiteStore:
        return LocalSiteStore(self.root)

    def page_url(self, day: str) -> str:
        return f"{self.base_url}/reports/{day}.html"


class NotifierResource(dg.ConfigurableResource):
    """Local notifier: messages land in an outbox directory."""

    outbox_dir: str
    max_age_days: int = 3

    def notifier(self) -> Notifier:
        return LocalOutbox(self.outbox_dir)


def build_resources(settings: Settings) -> dict[str, object]:
    """The resources of this environment (``ALCHEMY_ENV``); nothing else looks at the environment."""
    if settings.price_source == "tushare":
        prices: PriceSourceResource = TushareResource(
            token=dg.EnvVar(settings.tushare_token_var),
            api_url=settings.tushare_api_url,
            timeout=settings.tushare_timeout,
        )
    else:
        prices = DemoPricesResource()
    return {
        "io_manager": PartitionedParquetIOManager(base_dir=str(settings.data_dir)),
        "prices": prices,
        "universe": UniverseResource(path=settings.universe_path),
        "strategy": StrategyResource(short=settings.ma_short, long=settings.ma_long),
        "site": SiteResource(root=str(settings.publish_dir), base_url=settings.site_url),
        "notifier": NotifierResource(
            outbox_dir=str(settings.publish_dir / "outbox"), max_age_days=settings.notify_max_age_days
        ),
    }
