"""Publishing a range of days: worker processes render exactly what this process would."""

import os

import numpy as np
import pandas as pd

from alchemy_pipeline.domain import publish, workers
from alchemy_pipeline.domain.report import REPORT_BATCH_DAYS
from alchemy_pipeline.domain.storage import LocalBlobStore
from alchemy_pipeline.domain.strategy import State, StrategyParams

FUNDS = {"510300.SH": "沪深300ETF", "159915.SZ": "创业板ETF", "512880.SH": 'A&B "证券" <ETF>'}


def signals(n_days: int) -> pd.DataFrame:
    """Every state, with the fields each one carries, on ``n_days`` weekdays."""
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2024-01-02", periods=n_days)
    rows = []
    for day in days:
        for code, name in FUNDS.items():
            state = rng.choice([s.value for s in (State.BUY, State.SELL, State.HOLD, State.EMPTY, State.NO_DATA)])
            traded = state != State.NO_DATA.value
            since = day - pd.Timedelta(days=int(rng.integers(0, 40))) if traded else pd.NaT
            rows.append({
                "ts_code": code, "name": name, "trade_date": day, "state": state,
                "close": rng.uniform(1, 5) if traded else np.nan,
                "ma_short": rng.uniform(1, 5) if traded else np.nan,
                "ma_long": rng.uniform(1, 5) if traded else np.nan,
                "since": since, "days": (day - since).days if traded else pd.NA,
                "pct": rng.uniform(-20, 20) if traded else np.nan, "note": None if traded else "suspended",
            })  # fmt: skip
    return pd.DataFrame(rows).astype({"days": "Int64"})


def published(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_long_range_is_rendered_in_worker_processes_to_the_same_bytes(tmp_path, monkeypatch):
    table = signals(2 * REPORT_BATCH_DAYS + 10)  # three batches of days
    params, notice, subscribe = StrategyParams(), "价格源: 测试", "https://api.example.com/subscribe"
    used = []
    in_processes = publish.map_in_processes
    monkeypatch.setattr(publish, "map_in_processes", lambda *a: used.append(1) or in_processes(*a))
    monkeypatch.setattr(workers, "MIN_ROWS_FOR_WORKERS", len(table))
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 2)
    publish.publish_signals(LocalBlobStore(tmp_path / "workers"), table, params, notice, subscribe)
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 1)
    publish.publish_signals(LocalBlobStore(tmp_path / "here"), table, params, notice, subscribe)
    assert used == [1]  # the first run went through the workers, the second did not
    by_workers, here = published(tmp_path / "workers"), published(tmp_path / "here")
    assert len(here) == 3 * len(table["trade_date"].unique()) + 2  # three files a day, index and history
    assert by_workers == here


def test_a_range_is_made_durable_once_at_the_end_and_an_index_file_at_once(tmp_path, monkeypatch):
    # A crash cannot be staged here, so the calls that make data durable are counted instead (os.fsync
    # and os.sync, wrapped, still run): a range's files are synced together once they are all written;
    # the front page and the history, written after them, each at once.
    calls = []
    for name in ("fsync", "sync"):
        real = getattr(os, name)
        monkeypatch.setattr(f"os.{name}", lambda *a, real=real, name=name: calls.append(name) or real(*a))
    table = signals(12)
    written = publish.publish_signals(LocalBlobStore(tmp_path), table, StrategyParams())
    assert len(written) == 3 * 12 + 2
    assert calls == ["sync", "fsync", "fsync"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_page_escapes_every_name_even_one_with_a_line_break(tmp_path):
    from alchemy_pipeline.domain.report import build_report, render_html

    table = signals(1)
    page = render_html(build_report(table, StrategyParams()))
    assert "A&amp;B &quot;证券&quot; &lt;ETF&gt;" in page and "<ETF>" not in page
    table["name"] = table["name"].str.replace("证券", "证\n<券>")
    page = render_html(build_report(table, StrategyParams()))
    assert "证\n&lt;券&gt;" in page and "<券>" not in page
    assert page.count("<li class=") == len(FUNDS)  # one item per fund, each in its state's class
