"""The files an analyst takes into a spreadsheet: each fund's (and the portfolio's) daily equity and trades as
CSV (``backtests/csv/<ts_code>.equity.csv`` and ``.trades.csv``), UTF-8 with a byte-order mark, without
which a spreadsheet reads the Chinese names in the wrong encoding."""

from __future__ import annotations

import csv
import io

import pandas as pd

from alchemy_pipeline.domain.backtest import MONEY_DIGITS

TRADE_FIELDS = [
    "signal_day",
    "entry_day",
    "entry_price",
    "exit_signal_day",
    "exit_day",
    "exit_price",
    "shares",
    "fees",
    "return",
]


def equity_csv_key(code: str) -> str:
    return f"backtests/csv/{code}.equity.csv"


def trades_csv_key(code: str) -> str:
    return f"backtests/csv/{code}.trades.csv"


def _csv(header: list[str], rows) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8-sig")


def equity_csv(equity: pd.DataFrame) -> bytes:
    """``day,strategy,buy_and_hold``: the equity in CNY, to the fen, at each bar of the ledger's rows (dates
    and numbers: nothing to quote)."""
    row = f"%s,%.{MONEY_DIGITS}f,%.{MONEY_DIGITS}f\r\n"  # %-formatting: half the time of str.format here
    columns = (equity["day"].tolist(), equity["strategy"].tolist(), equity["buy_and_hold"].tolist())
    body = "".join([row % values for values in zip(*columns, strict=True)])
    return ("\ufeffday,strategy,buy_and_hold\r\n" + body).encode("utf-8")


def trades_csv(trades: list[tuple[str, str, dict]]) -> bytes:
    """``ts_code,name`` and the published fields of each trade (code, name, trade); an open trade's exit fields
    are empty, its return marked at the fund's last bar as published."""
    rows = ([code, name, *("" if t[f] is None else t[f] for f in TRADE_FIELDS)] for code, name, t in trades)
    return _csv(["ts_code", "name", *TRADE_FIELDS], rows)
