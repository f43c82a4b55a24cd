"""Data-quality rules for a fetched range of prices and for the day's signals."""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from alchemy_pipeline.domain.signals.rule import NOT_TRADING, State


@dataclass(frozen=True)
class Finding:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def _examples(rows: pd.DataFrame, limit: int = 10) -> str:
    return ", ".join(f"{r.ts_code} {r.trade_date:%Y-%m-%d}" for r in rows.head(limit).itertuples())


# The price columns the bar rules read.
QUALITY_COLUMNS = ["ts_code", "trade_date", "open", "high", "low", "close", "adj_factor"]


def _insane(prices: pd.DataFrame) -> pd.Series:
    """Bars with a price <= 0 or missing, or outside their own low-high range."""
    quotes = prices[["open", "high", "low", "close"]]
    low, high = prices["low"], prices["high"]
    return (
        (quotes <= 0).any(axis=1)
        | quotes.isna().any(axis=1)
        | (low > prices[["open", "close"]].min(axis=1))
        | (high < prices[["open", "close"]].max(axis=1))
    )


def _without_factor(prices: pd.DataFrame) -> pd.Series:
    return prices["adj_factor"].isna() | (prices["adj_factor"] <= 0)


def _repeated(prices: pd.DataFrame) -> pd.Series:
    return prices.duplicated(["ts_code", "trade_date"], keep=False)


@dataclass(frozen=True)
class BarRule:
    broken_by: Callable[[pd.DataFrame], pd.Series]
    passed: str  # what every bar satisfying the rule is, "{n}" for their count
    failed: str  # what the bars breaking it are
    metadata_key: str


BAR_RULES = (
    BarRule(_insane, "all {n} bars have positive prices within their low-high range",
            "not sane (prices <= 0 or outside low-high)", "bad_bars"),
    BarRule(_without_factor, "all {n} bars have a positive adjustment factor",
            "lack a positive adjustment factor", "bars_without_factor"),
    BarRule(_repeated, "one bar per fund and day", "repeat a fund and day", "repeated_bars"),
)  # fmt: skip


def _rule_finding(rule: BarRule, prices: pd.DataFrame) -> Finding:
    bad = prices[rule.broken_by(prices)]
    if bad.empty:
        return Finding(True, rule.passed.format(n=len(prices)))
    return Finding(False, f"{len(bad)} bars {rule.failed}: {_examples(bad)}", {rule.metadata_key: len(bad)})


def bars_are_sane(prices: pd.DataFrame) -> Finding:
    """Every price positive, and low <= open, close <= high."""
    return _rule_finding(BAR_RULES[0], prices)


def factors_are_present(prices: pd.DataFrame) -> Finding:
    return _rule_finding(BAR_RULES[1], prices)


def fund_days_are_unique(prices: pd.DataFrame) -> Finding:
    return _rule_finding(BAR_RULES[2], prices)


def days_with_invalid_bars(prices: pd.DataFrame) -> dict[str, str]:
    """Each day with a bar that breaks a rule of ``BAR_RULES``, with the rules it breaks and examples."""
    problems: dict[str, list[str]] = {}
    for rule in BAR_RULES:
        bad = prices[rule.broken_by(prices)]
        for day, rows in bad.groupby(bad["trade_date"].dt.strftime("%Y-%m-%d")):
            problems.setdefault(day, []).append(f"{len(rows)} bars {rule.failed}: {_examples(rows)}")
    return {day: "; ".join(found) for day, found in sorted(problems.items())}


def bars_are_valid(prices: pd.DataFrame) -> Finding:
    """Every rule of ``BAR_RULES`` at once; a failure names each rule that fails, with examples, and the days
    held back for it.

    One check rather than one per rule: Dagster records every planned check once per partition of a run,
    each record carrying the run's whole partition set, so a decade's backfill pays for each check in
    seconds and tens of megabytes of event log.
    """
    findings = [_rule_finding(rule, prices) for rule in BAR_RULES]
    failed = [finding for finding in findings if not finding.passed]
    metadata = {key: value for finding in findings for key, value in finding.metadata.items()}
    description = "; ".join(finding.description for finding in (failed or findings))
    if failed:
        days = list(days_with_invalid_bars(prices))
        metadata["days_held_back"] = len(days)
        description += f". Held back from publication: {_listed(days)}"
    return Finding(not failed, description, metadata)


def _listed(items: list[str], limit: int = 20) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


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


def _funds_without_data(signals: pd.DataFrame) -> pd.Series:
    """Per day (YYYY-MM-DD), the funds that trade but have no usable bar. Funds not listed yet (no bar in the
    whole window) do not count."""
    failing = signals[(signals["state"] == State.NO_DATA.value) & (signals["note"] != NOT_TRADING)]
    return failing.groupby(failing["trade_date"].dt.strftime("%Y-%m-%d"))["ts_code"].agg(list)


def days_over_threshold(signals: pd.DataFrame, threshold: int) -> dict[str, str]:
    """Each day on which more than ``threshold`` trading funds have no data (a broken fetch), naming them."""
    per_day = _funds_without_data(signals)
    over = per_day[per_day.map(len) > threshold]
    return {
        day: f"{len(codes)} funds without data, more than {threshold}: {_listed(codes)}" for day, codes in over.items()
    }


def no_data_under_threshold(signals: pd.DataFrame, threshold: int) -> Finding:
    """More than ``threshold`` trading funds without a usable bar on a day means a broken fetch."""
    over = days_over_threshold(signals, threshold)
    if not over:
        per_day = _funds_without_data(signals)
        worst = int(per_day.map(len).max()) if len(per_day) else 0
        return Finding(True, f"at most {worst} funds without data on any day (threshold {threshold})")
    day = list(over)[-1]
    return Finding(
        False,
        f"{len(over)} days have more than {threshold} funds without data, e.g. {day}: {over[day]}. Held back from "
        f"publication: {_listed(list(over))}",
        {"days_over_threshold": len(over)},
    )


def held_back_days(prices: pd.DataFrame, signals: pd.DataFrame, threshold: int) -> dict[str, str]:
    """The days not to publish, each with why: a bar that breaks a rule, or too many funds without data."""
    reasons: dict[str, list[str]] = {}
    for found in (days_with_invalid_bars(prices), days_over_threshold(signals, threshold)):
        for day, why in found.items():
            reasons.setdefault(day, []).append(why)
    return {day: "; ".join(why) for day, why in sorted(reasons.items())}


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
