"""The trading days the assets are partitioned by, read once when the code location loads.

From this machine only, with no network call: the bundled exchange calendar, extended by the trade_cal
cache under ``ALCHEMY_DATA_DIR`` (on AWS the container's entrypoint, ``alchemy_pipeline.container_entrypoint``,
brings that cache from the data bucket before the code loads). A cache that cannot be read stops the load,
naming the file and the fix. Every run loads the code afresh, so a refreshed calendar counts from the next run.
"""

from pathlib import Path

from alchemy_pipeline.defs.partitions import TradingDays
from alchemy_pipeline.domain.market.calendar import TRADE_CAL_CACHE_KEY, TradingCalendar, cached_calendar
from alchemy_pipeline.infrastructure.storage import LocalBlobStore
from alchemy_pipeline.settings import load_settings


def calendar_on_this_machine(data_dir: Path) -> TradingCalendar:
    store = LocalBlobStore(data_dir)
    return cached_calendar(store.get(TRADE_CAL_CACHE_KEY), store.location(TRADE_CAL_CACHE_KEY))


TRADING_DAYS = TradingDays(calendar_on_this_machine(load_settings().data_dir))
trading_days_partitions = TRADING_DAYS.partitions_def
