"""The seed's way, as the baseline: for each day, for each fund, a 150-calendar-day window of
fund_adj and fund_daily (two calls), then the moving averages over it."""

import datetime as dt
import os

import numpy as np
import talib
import tushare

from alchemy_pipeline.domain.market.universe import load_universe


def run_seed_way(days: list[str]) -> int:
    api = tushare.pro_api(token=os.environ["TUSHARE_TOKEN"], timeout=30)
    api._DataApi__http_url = os.environ["TUSHARE_API_URL"]
    codes = load_universe(os.environ.get("ALCHEMY_UNIVERSE"))["ts_code"].tolist()
    for day in days:
        end = dt.date.fromisoformat(day)
        start = (end - dt.timedelta(days=150)).strftime("%Y%m%d")
        for code in codes:
            adj = api.fund_adj(ts_code=code, start_date=start, end_date=end.strftime("%Y%m%d"))
            data = api.fund_daily(ts_code=code, start_date=start, end_date=end.strftime("%Y%m%d"))
            if data.empty or adj.empty:
                continue
            data = data.merge(adj, on="trade_date").sort_values("trade_date")
            close = (data["close"] * data["adj_factor"] / data["adj_factor"].iloc[-1]).to_numpy(dtype=float)
            np.round(talib.SMA(close, 11), 3)
            np.round(talib.SMA(close, 22), 3)
    return len(days)
