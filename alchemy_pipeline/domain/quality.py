"""Data-quality rules for a fetched range of prices and for the day's signals."""

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from alchemy_pipeline.domain.strategy import NOT_TRADING, State


@dataclass(frozen=True)
class Finding:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def _examples(rows: pd.DataFrame, limit: int = 10) -> str:
    return ", ".join(f"{r.ts_code} {r.trade_date:%Y-%m-%d}" for r in rows.head(limit).itertuples())


def bars_are_sane(prices: pd.DataFrame) -> Finding:
    """Every price positive, and low <= open, close <= high."""
    low, high = prices["low"], prices["high"]
    bad = prices[
        (prices[["open", "high", "low", "close"]] <= 0).any(axis=1)
        | prices[["open", "high", "low", "close"]].isna().any(axis=1)
        | (low > prices[["open", "close"]].min(axis=1))
        | (high < prices[["open", "close"]].max(axis=1))
    ]
    if bad.empty:
        return Finding(True, f"all {len(prices)} bars have positive prices within their low-high range")
    return Finding(False, f"{len(bad)} bars are not sane (prices <= 0 or outside low-high): {_examples(bad)}",
                   {"bad_bars": len(bad)})  # fmt: skip


def factors_are_present(prices: pd.DataFrame) -> Finding:
    bad = prices[prices["adj_factor"].isna() | (prices["adj_factor"] <= 0)]
    if bad.empty:
        return Finding(True, f"all {len(prices)} bars have a positive adjustment factor")
    return Finding(False, f"{len(bad)} bars lack a positive adjustment factor: {_examples(bad)}",
                   {"bars_without_factor": len(bad)})  # fmt: skip


def fund_days_are_unique(prices: pd.DataFrame) -> Finding:
    repeated = prices[prices.duplicated(["ts_code", "trade_date"], keep=False)]
    if repeated.empty:
        return Finding(True, "one bar per fund and day")
    return Finding(False, f"{len(repeated)} bars repeat a fund and day: {_examples(repeated)}",
                   {"repeated_bars": len(repeated)})  # fmt: skip


BAR_RULES = (bars_are_sane, factors_are_present, fund_days_are_unique)


def bars_are_valid(prices: pd.DataFrame) -> Finding:
    """Every rule of ``BAR_RULES`` at once; a failure names each rule that fails, with examples.

    One blocking check rather than one per rule: Dagster records every planned check once per partition
    of a run, each record carrying the run's whole partition set, so a decade's backfill pays for each
    check in seconds and tens of megabytes of event log.
    """
    findings = [rule(prices) for rule in BAR_RULES]
    failed = [finding for finding in findings if not finding.passed]
    metadata = {key: value for finding in findings for key, value in finding.metadata.items()}
    return Finding(not failed, "; ".join(finding.description for finding in (failed or findings)), metadata)


def universe_coverage(prices: pd.DataFrame, universe_codes: list[str], days: list) -> Finding:
    """Funds of the universe without a bar, per day: they become NO_DATA downstream, with the reason."""
    universe = set(universe_codes)
    held = prices[prices["ts_code"].isin(universe)]
    counts = held.groupby("trade_date")["ts_code"].nunique()
    short = {d for d in days if counts.get(pd.Timestamp(d), 0) < len(universe)}  # only these are looked into
    on_short_days = held[held["trade_date"].isin(pd.DatetimeIndex(sorted(short)))]
    present = {day.date(): set(codes) for day, codes in on_short_days.groupby("trade_date")["ts_code"]}
    missing = {d.isoformat(): sorted(universe - present.get(d, set())) for d in days if d in short}
    last = missing.get(days[-1].isoformat(), [])
    description = (
        f"every fund has a bar on {days[-1]}"
        if not last
        else f"{len(last)} funds have no bar on {days[-1]} and will be NO_DATA: {', '.join(last[:20])}"
    )
    return Finding(
        not missing, description, {"days_with_missing_funds": len(missing), "missing_on_last_day": len(last)}
    )


def no_data_under_threshold(signals: pd.DataFrame, threshold: int) -> Finding:
    """Funds that trade but have no usable bar today, per day: more than ``threshold`` means a broken fetch.
    Funds not listed yet (no bar in the whole window) do not count."""
    failing = signals[(signals["state"] == State.NO_DATA.value) & (signals["note"] != NOT_TRADING)]
    per_day = failing.groupby(failing["trade_date"].dt.strftime("%Y-%m-%d"))["ts_code"].agg(list)
    over = per_day[per_day.map(len) > threshold]
    if over.empty:
        worst = int(per_day.map(len).max()) if len(per_day) else 0
        return Finding(True, f"at most {worst} funds without data on any day (threshold {threshold})")
    day, codes = over.index[-1], over.iloc[-1]
    return Finding(
        False,
        f"{len(over)} days have more than {threshold} funds without data, e.g. {day}: {', '.join(codes[:20])}; "
        "nothing is published for them",
        {"days_over_threshold": len(over)},
    )


# Days ahead from which a trading calendar that runs out gets warned about and refreshed.
HORIZON_WARN_DAYS = 60


def calendar_horizon(known_until: dt.date, today: dt.date, warn_days: int = HORIZON_WARN_DAYS) -> Finding:
    """The trading calendar knows holidays only so far: warn ahead of its end."""
    left = (known_until - today).days
    metadata = {"calendar_known_until": known_until.isoformat(), "days_left": left}
    if left > warn_days:
        return Finding(True, f"the trading calendar knows holidays until {known_until} ({left} days left)", metadata)
    return Finding(
        False,
        f"the trading calendar knows holidays only until {known_until} ({left} days left): the "
        "trading_calendar asset fetches Tushare's trade_cal past it (its schedule tries daily from "
        f"{warn_days} days ahead), or upgrade exchange-calendars (pinned in pyproject.toml); past it "
        "nothing is published",
        metadata,
    )
