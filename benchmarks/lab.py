"""The parameter lab's sweep at the default universe's size, side by side with vectorbt.

Each side runs in a process of its own (its peak memory is that process's and its workers'):

- ``alchemy``: ``lab.run_sweep`` of the default grid over the default 44 funds' demo prices, 2015-01-05 to
  2024-12-31, with the backtest's default settings, in and out of sample: what ``ma_sweep`` computes.
- ``compare``: the same grid on the terms vectorbt can model: no minimum commission, prices forward-adjusted
  beforehand (vectorbt has no adjustment factor: a position is shares at a price) and traded as they are,
  averages not rounded (vectorbt does not round them); the whole period only. Writes each fund's total return
  per pair.
- ``vectorbt``: the same with vectorbt's own workflow (``MA.run``, ``ma_crossed_above``/``below``,
  ``Portfolio.from_signals`` filling at the next bar's open), fund by fund; its first call compiles (cold),
  the second reuses the compiled code (warm). Then ``from_signals`` once more on Alchemy's own entries and
  exits, to compare the engines alone. Writes both total returns.

vectorbt is installed only for this (``pip install -e .[benchmark]``): it needs numba and carries the
Commons Clause, so it is not a dependency of the pipeline.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
START, END = dt.date(2015, 1, 5), dt.date(2024, 12, 31)
TARGET_S, TARGET_MB, TARGET_RELATIVE = 60.0, 2048, 1e-6


def _inputs():
    from alchemy_pipeline.domain.market.universe import load_universe
    from tests.site_fixture import demo_prices

    universe = load_universe()
    prices = demo_prices(universe["ts_code"])
    prices = prices[(prices["trade_date"] >= pd.Timestamp(START)) & (prices["trade_date"] <= pd.Timestamp(END))]
    return universe, prices.reset_index(drop=True)


def _adjusted(prices: pd.DataFrame) -> pd.DataFrame:
    """Open and close forward-adjusted to each fund's last factor, traded as they are (factor 1)."""
    last = prices.groupby("ts_code")["adj_factor"].transform("last")
    ratio = prices["adj_factor"] / last
    return prices.assign(open=prices["open"] * ratio, close=prices["close"] * ratio, adj_factor=1.0)


def _compare_settings():
    from alchemy_pipeline.domain.backtest import BacktestSettings

    return BacktestSettings(start=START, min_commission=0.0)


def run_alchemy(compare: bool, out: Path) -> dict:
    from alchemy_pipeline.domain import lab
    from alchemy_pipeline.domain.backtest import BacktestSettings

    universe, prices = _inputs()
    if not compare:
        started = time.perf_counter()
        sweep = lab.run_sweep(prices, universe, lab.Grid(), BacktestSettings(start=START), END)
        return {"seconds": time.perf_counter() - started, "rows": len(sweep.table)}
    prices = _adjusted(prices)
    settings, pairs = _compare_settings(), lab.Grid().pairs()
    started = time.perf_counter()
    returns = []
    for history in lab.fund_histories(prices, universe, END):
        signals = lab.pair_signals(history.closes, history.factors, pairs, rounded=False)
        runs = lab.simulate_pairs(signals, history.opens, history.closes, history.factors, settings)
        returns.append(runs.equity[:, -1] / settings.cash - 1)
    seconds = time.perf_counter() - started
    np.save(out, np.stack(returns))
    return {"seconds": seconds}


def run_vectorbt(out: Path) -> dict:
    import vectorbt as vbt

    from alchemy_pipeline.domain import lab

    universe, prices = _inputs()
    prices = _adjusted(prices)
    settings, pairs = _compare_settings(), lab.Grid().pairs()
    funds = [prices[prices["ts_code"] == code].sort_values("trade_date") for code in universe["ts_code"]]

    def portfolio(fund: pd.DataFrame, entries: np.ndarray, exits: np.ndarray) -> np.ndarray:
        close = np.repeat(fund["close"].to_numpy()[:, None], len(pairs), axis=1)
        open_ = np.repeat(fund["open"].to_numpy()[:, None], len(pairs), axis=1)
        # A signal fills at the next bar's open: the signals move one bar on, and the order's price is the open.
        entries, exits = np.roll(entries, 1, axis=0), np.roll(exits, 1, axis=0)
        entries[0], exits[0] = False, False
        pf = vbt.Portfolio.from_signals(
            close, entries, exits, price=open_, fees=settings.commission, slippage=settings.slippage_bps / 10_000,
            size=np.inf, size_granularity=settings.lot, init_cash=settings.cash, direction="longonly",
        )  # fmt: skip
        return np.asarray(pf.total_return())

    def sweep() -> list[np.ndarray]:
        returns = []
        for fund in funds:
            close = fund["close"].to_numpy()
            fast = vbt.MA.run(close, window=pairs[:, 0].tolist())
            slow = vbt.MA.run(close, window=pairs[:, 1].tolist())
            entries = np.asarray(fast.ma_crossed_above(slow))
            exits = np.asarray(fast.ma_crossed_below(slow))
            returns.append(portfolio(fund, entries, exits))
        return returns

    started = time.perf_counter()
    sweep()
    cold = time.perf_counter() - started
    started = time.perf_counter()
    own = sweep()
    warm = time.perf_counter() - started
    # The engines alone: vectorbt's from_signals on the entries and exits Alchemy computed.
    same = []
    for fund in funds:
        signals = lab.pair_signals(fund["close"].to_numpy(), np.ones(len(fund)), pairs, rounded=False).T
        same.append(portfolio(fund, signals == 1, signals == -1))
    np.save(out, np.stack([np.stack(own), np.stack(same)]))
    return {"cold": cold, "warm": warm}


def _in_process(kind: str, out: Path) -> tuple[dict, int]:
    """Runs one side in a process of its own; its result and its peak memory with its workers (MB)."""
    from benchmarks.memory import ProcessTreeSampler

    command = [sys.executable, "-m", "benchmarks.lab", kind, str(out)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = ProcessTreeSampler(process.pid)
    try:
        stdout, stderr = process.communicate(timeout=1800)
    finally:
        peak.stop()
    if process.returncode != 0:
        raise RuntimeError(f"benchmarks.lab {kind} failed: {stderr.strip()[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), peak.mb


def vectorbt_installed() -> bool:
    return subprocess.run([sys.executable, "-c", "import vectorbt"], capture_output=True).returncode == 0


def _listed(seconds) -> str:
    return ", ".join(f"{s:.1f}" for s in seconds)


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| relative to the growth of 1 (1 + total return): a cell's difference in its final equity."""
    return np.abs(a - b) / (1 + np.abs(b))


def lab_sweep(repeat: int = 3) -> tuple[list[str], list[tuple[str, str, bool | None]]]:
    """The section's lines and its targets' rows."""
    from alchemy_pipeline.domain import lab

    pairs, funds = len(lab.Grid().pairs()), 44
    runs = [_in_process("alchemy", Path("unused")) for _ in range(repeat)]
    seconds, peak = max(r[0]["seconds"] for r in runs), max(r[1] for r in runs)
    lines = [
        "",
        "## The parameter lab against vectorbt",
        "",
        f"`lab.run_sweep` of the default grid ({pairs:,} pairs: short 3..30, long 10..120) over the default {funds} "
        f"funds' demo prices from {START} to {END} (`benchmarks/lab.py`; each run a fresh process, prices in memory "
        "first, not timed): every pair traded three times over (the whole period, in sample, out of sample from "
        "fresh cash) with the backtest's default costs, the portfolio's and each fund's figures. Slowest of "
        f"{repeat} runs: {_listed(r[0]['seconds'] for r in runs)} s; peak memory with its worker processes: "
        f"{', '.join(str(r[1]) for r in runs)} MB.",
        "",
    ]
    rows = [
        (f"the default sweep, {funds} funds x 10 years, in and out of sample: under {TARGET_S:g} s", f"{seconds:.1f} s",
         seconds < TARGET_S),
        (f"... with peak memory under {TARGET_MB} MB", f"{peak} MB", peak < TARGET_MB),
    ]  # fmt: skip
    if not vectorbt_installed():
        lines.append("vectorbt is not installed here (`.venv/bin/pip install -e .[benchmark]`): no side by side.")
        rows.append(("at least as fast as vectorbt warm, every cell within 1e-6", "vectorbt not installed", None))
        return lines, rows
    import vectorbt

    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        ours_file, theirs_file = Path(tmp) / "alchemy.npy", Path(tmp) / "vectorbt.npy"
        compare = [_in_process("compare", ours_file) for _ in range(repeat)]
        vbt_runs = [_in_process("vectorbt", theirs_file) for _ in range(repeat)]
        ours = np.load(ours_file)
        own, same = np.load(theirs_file)
    compare_s = max(r[0]["seconds"] for r in compare)
    cold, warm = max(r[0]["cold"] for r in vbt_runs), max(r[0]["warm"] for r in vbt_runs)
    engines, signals = _relative(ours, same), _relative(ours, own)
    apart = int((signals > TARGET_RELATIVE).sum())
    lines += [
        f"Side by side on the terms vectorbt can model ({vectorbt.__version__}): the same grid, funds and days, "
        "commission 0.025% with no minimum, no slippage, lots of 100, 100,000 CNY per fund, fills at the next "
        "bar's open; prices forward-adjusted beforehand and traded as they are, averages not rounded; the whole "
        f"period only ({funds} x {pairs:,} = {funds * pairs:,} cells, each fund's total return). vectorbt: "
        "`MA.run` for both lengths, `ma_crossed_above`/`below`, `Portfolio.from_signals`, fund by fund.",
        "",
        "| | slowest of 3 (s) | runs (s) | peak memory (MB) |",
        "|---|---:|---|---:|",
        f"| Alchemy, the same cells as vectorbt | {compare_s:.1f} | {_listed(r[0]['seconds'] for r in compare)} | "
        f"{max(r[1] for r in compare)} |",
        f"| vectorbt, cold (its first call compiles) | {cold:.1f} | {_listed(r[0]['cold'] for r in vbt_runs)} | "
        f"{max(r[1] for r in vbt_runs)} |",
        f"| vectorbt, warm | {warm:.1f} | {_listed(r[0]['warm'] for r in vbt_runs)} | |",
        "",
        "Largest difference in a cell's total return, relative to its growth of 1 (1 + total return): "
        f"{engines.max():.1e} with the same entries and exits (the engines: vectorbt's `from_signals` given "
        f"Alchemy's signals); {signals.max():.1e} with each tool's own crossovers, where {apart:,} of "
        f"{signals.size:,} cells differ by more than {TARGET_RELATIVE:g}: a cell whose signals differ on a bar. "
        "The ones inspected were two averages equal in exact arithmetic (1.055 and 1.055, say: prices have "
        "three decimals), which the two libraries' floating-point sums put on either side of each other.",
    ]
    rows += [
        ("at least as fast as vectorbt warm, on the same cells", f"{compare_s:.1f} s vs {warm:.1f} s",
         compare_s <= warm),
        (f"every cell's total return within {TARGET_RELATIVE:g} (relative) of vectorbt's, same signals",
         f"{engines.max():.1e}", bool(engines.max() <= TARGET_RELATIVE)),
    ]  # fmt: skip
    return lines, rows


if __name__ == "__main__":
    kind, out = sys.argv[1], Path(sys.argv[2])
    result = run_vectorbt(out) if kind == "vectorbt" else run_alchemy(kind == "compare", out)
    print(json.dumps(result))
