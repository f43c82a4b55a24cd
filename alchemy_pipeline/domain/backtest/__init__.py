"""The backtest: the engine that trades one fund's published signals (``engine``), its state carried day to
day and stored as a table (``state``, the definition; ``fast_path``, every fund of a day at once, as the
pipeline runs it), the figures of that table (``statistics``) and what is published of it (``documents``).
The names other packages use are gathered here."""

from alchemy_pipeline.domain.backtest.documents import (
    closed_before,
    document_files,
    documents,
    runs_document_files,
    trade_json,
    trade_lists,
)
from alchemy_pipeline.domain.backtest.engine import (
    CLOSE,
    EXECUTIONS,
    FRACTION_DIGITS,
    MONEY_DIGITS,
    NEXT_OPEN,
    PORTFOLIO,
    PORTFOLIO_NAME,
    SIGNAL_COLUMNS,
    TRADING_DAYS_PER_YEAR,
    BacktestSettings,
    FundBars,
    buy_and_hold,
    follow_signals,
)
from alchemy_pipeline.domain.backtest.fast_path import carry, run_backtest
from alchemy_pipeline.domain.backtest.state import (
    BacktestState,
    CarriedRun,
    DayBars,
    StateError,
    bars_by_day,
    fingerprint,
    state_frame_empty,
    state_numbers,
)
from alchemy_pipeline.domain.backtest.statistics import REPORT_STATE_COLUMNS, cagr_of, report_table, summary_table

__all__ = [
    "CLOSE",
    "EXECUTIONS",
    "FRACTION_DIGITS",
    "MONEY_DIGITS",
    "NEXT_OPEN",
    "PORTFOLIO",
    "PORTFOLIO_NAME",
    "REPORT_STATE_COLUMNS",
    "SIGNAL_COLUMNS",
    "TRADING_DAYS_PER_YEAR",
    "BacktestSettings",
    "BacktestState",
    "CarriedRun",
    "DayBars",
    "FundBars",
    "StateError",
    "bars_by_day",
    "buy_and_hold",
    "cagr_of",
    "carry",
    "closed_before",
    "document_files",
    "documents",
    "fingerprint",
    "follow_signals",
    "report_table",
    "run_backtest",
    "runs_document_files",
    "state_frame_empty",
    "state_numbers",
    "summary_table",
    "trade_json",
    "trade_lists",
]
