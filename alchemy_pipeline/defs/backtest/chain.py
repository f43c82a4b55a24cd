"""The backtest's chain of days over storage: where a run starts carrying from, what it rewrites outside its
own days, and what it publishes.

A run carries the state stored for the day before its first day. When that state cannot be carried on
(none stored, another fingerprint, or trades published that do not match it), the run recomputes the chain
from the backtest's start out of the stored prices and signals. When the run leaves its last day's state
other than it was stored and later days are stored, it carries the chain on through them. Either way it
rewrites those days' states and their equity ledger, republishes their backtest documents where they were
published, and lists the days whose reports must be published again (``REPUBLISH_KEY``), which
``signal_report`` does.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pandas as pd

from alchemy_pipeline.defs.io_manager import PartitionedParquetIOManager
from alchemy_pipeline.defs.partitions import (
    BACKTEST_ASSET,
    HISTORY_WINDOW,
    INDICATOR_ASSET,
    PRICE_ASSET,
    SIGNALS_ASSET,
    backfill_command,
    by_year,
    contiguous_ranges,
    to_day,
)
from alchemy_pipeline.defs.trading_days import TRADING_DAYS
from alchemy_pipeline.domain import backtest as bt
from alchemy_pipeline.domain.backtest import ledger
from alchemy_pipeline.domain.market.quality import QUALITY_COLUMNS, held_back_days
from alchemy_pipeline.domain.signals.rule import RULE_VERSION
from alchemy_pipeline.domain.site.publish import publish_backtests, published_days, trades_key
from alchemy_pipeline.infrastructure.storage import BlobStore, in_parallel
from alchemy_pipeline.infrastructure.workers import worth_workers

# In the data store: the days outside a run whose backtest changed, for signal_report to publish again.
REPUBLISH_KEY = "signal_report/days_to_republish.json"
SIGNAL_COLUMNS = [*bt.SIGNAL_COLUMNS, "note"]


def state_key(day: str) -> str:
    return f"{BACKTEST_ASSET}/{day}.parquet"


def missing_history(
    io_manager: PartitionedParquetIOManager,
    selected: set[str],
    days: list[dt.date],
    settings: bt.BacktestSettings,
    universe: pd.DataFrame,
    fingerprint: str,
) -> list[str]:
    """Each stretch of stored history a run of ``selected`` assets over ``days`` will read and cannot find,
    with what reads it: the indicators' window of prices before the run; and, for the backtest when the state
    before its first day cannot be carried on, the signals from the backtest's start and the prices behind
    them. Empty when the run has what it needs."""
    calendar, first = TRADING_DAYS.calendar, days[0]
    needs: list[tuple[str, list[str], str]] = []
    if INDICATOR_ASSET in selected:
        window = TRADING_DAYS.history_keys(first.isoformat())
        needs.append((PRICE_ASSET, window, f"the {HISTORY_WINDOW}-day window of prices behind {first}"))
    start = max(settings.start, first) if BACKTEST_ASSET in selected and days[-1] >= settings.start else None
    if start is not None and start > settings.start:
        before = calendar.sessions(settings.start, start - dt.timedelta(days=1))
        stored = io_manager.read_if_stored(dg.AssetKey(BACKTEST_ASSET), before[-1].isoformat())
        try:
            bt.BacktestState.from_frame(stored, settings, universe, fingerprint)
        except bt.StateError as why:
            keys = [d.isoformat() for d in before]
            why = (
                f"the backtest from its start, {settings.start} (the state of {before[-1]} cannot be carried on: {why})"
            )
            needs.append((SIGNALS_ASSET, keys, why))
            prices = keys
            if io_manager.missing_partitions(dg.AssetKey(SIGNALS_ASSET), keys):
                prices = [*TRADING_DAYS.history_keys(keys[0]), *keys]
            needs.append((PRICE_ASSET, prices, f"{why}, and the signals it reads"))
    lines = []
    for asset, keys, why in needs:
        missing = io_manager.missing_partitions(dg.AssetKey(asset), keys)
        if missing:
            stretches = ", ".join(f"{a}...{b}" if a != b else a for a, b in contiguous_ranges(missing, keys))
            lines.append(f"{asset} {stretches} ({len(missing)} days; for {why})")
    return lines


@dataclass
class Carried:
    """Days carried a year at a time: the last year's run (the state after it, its states) and the trades
    closed before that year, as published (``kept``)."""

    last: bt.CarriedRun
    kept: dict[str, list[dict]]
    days: list[dt.date]
    documents: int  # published
    rows: int  # of states stored
    held_back: dict[str, str]  # the days not traded, with why

    @property
    def kept_after(self) -> dict[str, list[dict]]:
        """The trades closed by the end of the days, as published."""
        return _with_closed(self.kept, self.last, self.last.state.codes)


@dataclass
class ChainResult:
    frame: pd.DataFrame  # the states of the run's last year (stored a year at a time as carried)
    started_from: str
    held_back: dict[str, str]
    rows: int = 0  # the states stored for the run's days
    other_days: list[str] = field(default_factory=list)  # outside the run, whose states were rewritten
    documents: int = 0
    trades_rewritten: bool = False


@dataclass
class BacktestChain:
    io_manager: PartitionedParquetIOManager
    store: BlobStore  # the site's
    settings: bt.BacktestSettings
    universe: pd.DataFrame
    rule: dict
    max_funds_without_data: int
    log: object

    @property
    def fingerprint(self) -> str:
        codes = self.universe["ts_code"].tolist()
        return bt.fingerprint(self.settings, self.rule, codes, self.max_funds_without_data)

    @property
    def codes(self) -> list[str]:
        return self.universe["ts_code"].tolist()

    def run(self, days: list[dt.date], previous: pd.DataFrame) -> ChainResult:
        """The run's days carried on from the state before them (``previous``, the day before's), with the chain
        mended around them. Their prices and signals are read from storage a year at a time, as carried."""
        start = self.settings.start
        before: list[dt.date] = []
        kept: dict[str, list[dict]] = {}
        state = bt.BacktestState.empty(self.settings, self.universe, self.fingerprint)
        started_from = f"the backtest's start, {start}"
        if days[0] > start:
            reason = None
            try:
                state = bt.BacktestState.from_frame(previous, self.settings, self.universe, self.fingerprint)
            except bt.StateError as why:
                self._refuse_older_rule(previous, days[-1])
                reason = f"the state before {days[0]} cannot be carried on: {why}"
            if reason is None:
                kept = self._kept_trades(state, days[0])
                if kept is None:
                    reason = "the published trades do not match the stored state (a site published apart from it?)"
            if reason is None:
                started_from = f"the state of the day before {days[0]}"
            else:
                before = TRADING_DAYS.calendar.sessions(start, days[0] - dt.timedelta(days=1))
                self.log.warning(
                    f"Recomputing the backtest from its start, {start} ({len(before)} days before the "
                    f"run, from stored prices and signals): {reason}"
                )
                state, kept = bt.BacktestState.empty(self.settings, self.universe, self.fingerprint), {}
                started_from = f"the backtest's start, {start}: {reason}"
        existing = {k.removeprefix("backtests/").removesuffix(".json") for k in self.store.keys("backtests/")}
        stored_later = self._stored_after(days[-1])
        earlier = self._carry_by_year(state, before, kept, existing) if before else None
        if earlier is not None:
            state, kept = earlier.last.state, earlier.kept_after
        run = self._carry_by_year(state, days, kept, None)
        later = self._carry_on(run, days[-1], *stored_later, existing)
        chain = [c for c in (earlier, run, later) if c is not None]
        outside = [c for c in (earlier, later) if c is not None]
        result = ChainResult(run.last.frame, started_from, run.held_back, rows=run.rows)
        result.other_days = [d.isoformat() for c in outside for d in c.days]
        result.documents = sum(c.documents for c in chain)
        result.trades_rewritten = self._publish_trades(chain[-1])
        self._mark_for_republishing(outside)
        return result

    def _refuse_older_rule(self, previous: pd.DataFrame, last: dt.date) -> None:
        """A state made by the rule's previous definition means the stored signals are that rule's too: the
        backtest would trade them. Fails naming the commands that compute the signals again."""
        if previous.empty or "fingerprint" not in previous.columns:
            return
        older = bt.fingerprint(self.settings, self.rule, self.codes, self.max_funds_without_data, RULE_VERSION - 1)
        if previous["fingerprint"].iloc[0] != older:
            return
        ranges = [(self.settings.start.isoformat(), last.isoformat())]
        commands = "; ".join(backfill_command(a, ranges, upstream=False) for a in (INDICATOR_ASSET, SIGNALS_ASSET))
        raise RuntimeError(
            f"The stored backtest and signals were made by version {RULE_VERSION - 1} of the rule; version "
            f"{RULE_VERSION} computes the averages exactly, which changes the signals of days whose average is "
            f"half-way between two thousandths. Compute the signals since the backtest's start again, then run "
            f"this day again: {commands}"
        )

    def _stored_bars(self, year: list[dt.date]) -> tuple[bt.DayBars, dict[str, str]]:
        """A year's stored bars and signals as the backtest trades them, and its days held back with why."""
        keys = [d.isoformat() for d in year]
        prices = self.io_manager.read(dg.AssetKey(PRICE_ASSET), keys, QUALITY_COLUMNS)
        signals = self.io_manager.read(dg.AssetKey(SIGNALS_ASSET), keys, SIGNAL_COLUMNS)
        self._check_universe(signals, keys)
        held = held_back_days(prices, signals, self.max_funds_without_data)
        return bt.bars_by_day(prices, signals, self.codes, year), held

    def _carry_by_year(
        self, state: bt.BacktestState, days: list[dt.date], kept: dict[str, list[dict]], existing: set[str] | None
    ) -> Carried:
        """``state`` carried through ``days`` a calendar year at a time, out of the stored prices and signals:
        each year's states stored and its equity added to the ledger as it is carried, and its documents
        published (of the days in ``existing`` only, when given) while the next year is carried, so that a
        decade of a large universe is never held at once (1,500 funds' states are 1.3 GB)."""
        carried: bt.CarriedRun | None = None
        rows, held_back = 0, {}

        def carried_years() -> Iterator[bt.CarriedRun]:
            nonlocal state, kept, carried, rows
            for year in by_year(days):
                if carried is not None:  # the trades the year before closed; then that year is let go
                    kept, carried = _with_closed(kept, carried, self.codes), None
                bars, held = self._stored_bars(year)
                carried = bt.carry(state, bars, year, _days(held))
                held_back.update(held)
                del bars
                self.io_manager.write(dg.AssetKey(BACKTEST_ASSET), carried.frame, [d.isoformat() for d in year])
                ledger.write(self.io_manager.store(), [carried.frame])
                rows += len(carried.frame)
                state = carried.state
                yield carried

        only = None if existing is None else {d for d in days if d.isoformat() in existing}
        # Its documents are most of a long run's work: worker processes write them while the main one carries.
        in_processes = worth_workers(len(days) * (len(self.codes) + 1))
        files = bt.runs_document_files(carried_years(), self.rule, only, in_processes)
        documents = len(publish_backtests(self.store, files))
        return Carried(carried, kept, days, documents, rows, held_back)

    def _check_universe(self, signals: pd.DataFrame, keys: list[str]) -> None:
        """Stored signals made for another universe lack a fund's rows: name it and the command that makes them."""
        missing = sorted(set(self.codes) - set(signals["ts_code"].unique()))
        if missing:
            raise RuntimeError(
                f"The stored signals of {keys[0]}...{keys[-1]} have no row for {', '.join(missing[:10])} (added to "
                "the universe since): the backtest needs them. Fetch the prices and compute the "
                f"signals of those days again for the whole universe: scripts/backfill {keys[0]} {keys[-1]}"
            )

    def _stored_after(self, last: dt.date) -> tuple[list[str], pd.DataFrame]:
        """The days stored after ``last``, and the state stored for ``last`` (read before the run stores its own)."""
        stored_days = sorted(
            k.removeprefix(f"{BACKTEST_ASSET}/").removesuffix(".parquet")
            for k in self.io_manager.store().keys(f"{BACKTEST_ASSET}/")
            if k.endswith(".parquet") and k > state_key(last.isoformat())
        )
        if not stored_days:
            return [], pd.DataFrame()
        return stored_days, self.io_manager.read_if_stored(dg.AssetKey(BACKTEST_ASSET), last.isoformat())

    def _carry_on(
        self, run: Carried, last: dt.date, stored_days: list[str], stored: pd.DataFrame, existing: set[str]
    ) -> Carried | None:
        """The later ``stored_days`` carried on from the run's last state, when the run changed that state (it
        was ``stored``)."""
        if not stored_days or _same_state(stored, run.last.frame[run.last.frame["trade_date"] == pd.Timestamp(last)]):
            return None
        later = TRADING_DAYS.calendar.sessions(last + dt.timedelta(days=1), to_day(stored_days[-1]))
        self.log.warning(
            f"This run changed the backtest's state of {last}: carrying it on through the {len(later)} later days "
            f"stored ({later[0]}...{later[-1]}), republishing their documents and listing their reports to publish "
            "again"
        )
        return self._carry_by_year(run.last.state, later, run.kept_after, existing)

    def _kept_trades(self, state: bt.BacktestState, first: dt.date) -> dict[str, list[dict]] | None:
        """Each fund's published trades closed before ``first``; None unless they are exactly the ones the
        state counts."""
        published = in_parallel(lambda code: self.store.get(trades_key(code)), self.codes)
        kept = {}
        for code, fund, data in zip(self.codes, state.funds, published, strict=True):
            kept[code] = bt.closed_before(json.loads(data), first) if data is not None else []
            if len(kept[code]) != fund.strategy.closed:
                return None
        return kept

    def _publish_trades(self, last: Carried) -> bool:
        """Every fund's trades, when the chain reaches the newest published day; whether it did."""
        newest = published_days(self.store)
        if newest and last.days[-1].isoformat() < newest[-1]:
            return False
        publish_backtests(self.store, [], bt.trade_lists(last.last, last.kept))
        return True

    def _mark_for_republishing(self, outside: list[Carried]) -> None:
        published = set(published_days(self.store))
        days = sorted({d.isoformat() for c in outside for d in c.days} & published)
        if not days:
            return
        listed = self.io_manager.store().get(REPUBLISH_KEY)
        days = sorted(set(days) | set(json.loads(listed) if listed else []))
        self.io_manager.store().put(REPUBLISH_KEY, json.dumps(days).encode("utf-8"))
        self.log.warning(
            f"{len(days)} published reports carry a backtest summary that changed: signal_report "
            f"publishes them again ({days[0]}...{days[-1]})"
        )


def _with_closed(kept: dict[str, list[dict]], carried: bt.CarriedRun, codes: list[str]) -> dict[str, list[dict]]:
    """``kept`` with the trades ``carried`` closed added, as published."""
    return {c: [*kept.get(c, []), *map(bt.trade_json, carried.closed_trades[c])] for c in codes}


def _days(held_back: dict[str, str]) -> set[dt.date]:
    return {dt.date.fromisoformat(d) for d in held_back}


def _same_state(stored: pd.DataFrame, new: pd.DataFrame) -> bool:
    if stored.empty or "fingerprint" not in stored.columns or len(stored) != len(new):
        return False
    if stored["fingerprint"].tolist() != new["fingerprint"].tolist():
        return False
    return bool(np.array_equal(bt.state_numbers(stored), bt.state_numbers(new), equal_nan=True))
