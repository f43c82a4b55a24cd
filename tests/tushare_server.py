"""A Tushare-Pro-protocol HTTP server for tests and benchmarks.

It speaks the wire protocol of ``../shared/data/etf/TUSHARE_PROTOCOL.md``: POST a JSON body
``{api_name, token, params, fields}`` to ``/``, ``/dataapi`` or ``/dataapi/<api_name>``; the answer is
``{request_id, code, msg, data: {fields, items}}``, newest rows first, at most ``row_cap`` rows a call,
paged by ``offset``/``limit``. It serves tables the tests write, or the CSVs of a Tushare-format
directory, records every call, and can be told to fail the next calls.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

VALID_TOKEN = "test-token"


@dataclass
class Fault:
    """What to answer instead of the data: an HTTP status, or a vendor error code."""

    http_status: int | None = None
    code: int | None = None
    msg: str = "injected fault"
    delay: float = 0.0  # seconds to stall before answering (a timeout, for a short client timeout)
    empty: bool = False  # answer with the columns and no rows, as for a day not published yet


@dataclass
class TushareTestServer:
    tables: dict[str, pd.DataFrame]
    row_cap: int = 2000
    token: str = VALID_TOKEN
    latency: float = 0.0  # seconds added to every call, like a distant server
    calls_per_minute: int | None = None  # per API, answered with Tushare's rate-limit error past it
    calls: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._recent: dict[str, list[float]] = {}
        self.rows_served = 0
        # Newest first, then by code, as the vendor answers, each column as one array; rows are found by
        # position (by fund, by day, or a date range as one slice), so that a large table answers any
        # query quickly: a benchmark asks for thousands of full pages, and the server shares the machine
        # with the pipeline.
        self.tables = {name: _in_vendor_order(_as_text_keys(table)) for name, table in self.tables.items()}
        self._columns = {name: {c: _served_column(t[c]) for c in t.columns} for name, t in self.tables.items()}
        self._rows_of_code = {
            name: t.groupby("ts_code", sort=False).indices for name, t in self.tables.items() if "ts_code" in t
        }
        self._negated_dates = {
            name: -t[column].astype("int64").to_numpy()
            for name, t in self.tables.items()
            if (column := _date_column(t)) is not None
        }
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                status, payload = server.answer(self.path, self.rfile.read(length))
                body = orjson.dumps(payload)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                # Counters for benchmarks: calls answered and rows served so far.
                body = json.dumps({"calls": len(server.calls), "rows": server.rows_served}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> TushareTestServer:
        directory = Path(directory)
        tables = {
            name: pd.read_csv(directory / f"{name}.csv", dtype={"ts_code": str, "trade_date": str, "list_date": str})
            for name in ("fund_daily", "fund_adj", "fund_basic")
            if (directory / f"{name}.csv").exists()
        }
        return cls(tables, **kwargs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/dataapi"

    def start(self) -> TushareTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> TushareTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def calls_to(self, api_name: str) -> list[dict]:
        return [c for c in self.calls if c["api_name"] == api_name]

    def answer(self, path: str, raw: bytes) -> tuple[int, dict]:
        request = json.loads(raw or b"{}")
        api_name = request.get("api_name") or path.rstrip("/").rsplit("/", 1)[-1]
        params = request.get("params") or {}
        with self._lock:
            call = {"api_name": api_name, "params": params, "path": path, "arrived": time.monotonic()}
            self.calls.append(call)
            fault = self.faults.pop(0) if self.faults else None
            now = time.monotonic()
            recent = [t for t in self._recent.get(api_name, []) if t > now - 60]
            limited = self.calls_per_minute is not None and len(recent) >= self.calls_per_minute
            self._recent[api_name] = recent if limited else [*recent, now]
        request_id = f"test-{next(self._ids)}"
        time.sleep(self.latency + (fault.delay if fault else 0.0))
        call["answered"] = time.monotonic()
        if limited:
            return 200, _error(request_id, 40203, f"抱歉，您每分钟最多访问该接口{self.calls_per_minute}次")
        if fault is not None and fault.http_status is not None:
            return fault.http_status, {"code": fault.http_status, "msg": fault.msg}
        if fault is not None and fault.code is not None:
            return 200, _error(request_id, fault.code, fault.msg)
        if fault is not None and fault.empty:
            fields = [f for f in (request.get("fields") or "").split(",") if f]
            return 200, {"request_id": request_id, "code": 0, "msg": "", "data": {"fields": fields, "items": []}}
        if request.get("token") != self.token:
            return 200, _error(request_id, 40101, "抱歉，您的token不对，请确认。")
        if api_name not in self.tables:
            return 200, _error(request_id, 40102, f"接口名 {api_name} 不存在")
        table = self.tables[api_name]
        rows = self._select(api_name, params)
        wanted = [f for f in (request.get("fields") or "").split(",") if f] or list(table.columns)
        fields = [f for f in wanted if f in table.columns]
        columns = [_values(self._columns[api_name][f], rows) for f in fields]
        items = list(map(list, zip(*columns, strict=True))) if columns else [[] for _ in range(len(rows))]
        with self._lock:
            self.rows_served += len(items)
        return 200, {"request_id": request_id, "code": 0, "msg": "", "data": {"fields": fields, "items": items}}

    def _select(self, api_name: str, params: dict) -> np.ndarray:
        """The positions of the rows a query asks for, in the vendor's order, one page of them."""
        negated = self._negated_dates.get(api_name)
        rows = None  # every row of the table
        if params.get("ts_code") and api_name in self._rows_of_code:
            found = [self._rows_of_code[api_name].get(c) for c in str(params["ts_code"]).split(",")]
            rows = np.sort(np.concatenate([np.empty(0, dtype=np.intp), *(f for f in found if f is not None)]))
        first, last = 0, len(self.tables[api_name]) if rows is None else len(rows)
        if negated is not None:
            # The rows are newest first, so their dates (negated) ascend: each bound on the date is a cut.
            dates = negated if rows is None else negated[rows]
            for latest in (params.get("trade_date"), params.get("end_date")):
                if latest:
                    first = max(first, int(np.searchsorted(dates, -int(latest), side="left")))
            for earliest in (params.get("trade_date"), params.get("start_date")):
                if earliest:
                    last = min(last, int(np.searchsorted(dates, -int(earliest), side="right")))
        offset = int(params.get("offset") or 0)
        limit = min(int(params.get("limit") or self.row_cap), self.row_cap)
        page = np.arange(first + offset, min(last, first + offset + limit))
        return page if rows is None else rows[page]


def _served_column(column: pd.Series) -> np.ndarray:
    """Numbers as a float array (a missing one is NaN); anything else as Python values, a missing one None."""
    if pd.api.types.is_float_dtype(column.dtype):
        return column.to_numpy(dtype="float64")
    values = column.to_numpy(dtype=object, copy=True)  # never the served table's own array
    values[pd.isna(values)] = None
    return values


def _values(column: np.ndarray, rows: np.ndarray) -> list:
    """A page's values of one column as Python values, a missing number as None (JSON null)."""
    values = column[rows].tolist()
    if column.dtype == np.float64:
        for i in np.flatnonzero(np.isnan(column[rows])).tolist():
            values[i] = None
    return values


class _Server(ThreadingHTTPServer):
    # A client may open many connections at once (the SDK opens one per call); socketserver's default
    # backlog of 5 would refuse some of them, which no real vendor does.
    request_queue_size = 128


def _date_column(table: pd.DataFrame) -> str | None:
    """Bars are dated by trade_date, calendar rows (trade_cal) by cal_date."""
    return next((c for c in ("trade_date", "cal_date") if c in table.columns), None)


def _in_vendor_order(table: pd.DataFrame) -> pd.DataFrame:
    date = _date_column(table)
    if date is None:
        return table
    order = [c for c in (date, "ts_code") if c in table.columns]
    return table.sort_values(order, ascending=[False] + [True] * (len(order) - 1), kind="stable", ignore_index=True)


def _as_text_keys(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    for column in ("ts_code", "trade_date", "cal_date"):
        if column in table.columns:
            table[column] = table[column].astype(str)
    return table


def _error(request_id: str, code: int | None, msg: str) -> dict:
    return {"request_id": request_id, "code": code, "msg": msg, "data": None}
