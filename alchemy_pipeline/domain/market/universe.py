"""The list of funds the pipeline follows: a CSV with columns ts_code,name."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pandas as pd

TS_CODE = re.compile(r"^\d{6}\.(SH|SZ)$")


class UniverseError(ValueError):
    """The universe file is unusable."""


def default_universe_path() -> Path:
    return Path(str(resources.files("alchemy_pipeline") / "data" / "universe.csv"))


def load_universe(path: str | Path | None = None) -> pd.DataFrame:
    path = Path(path) if path else default_universe_path()
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UniverseError(f"cannot read the universe file {path}: {exc}") from exc
    missing = {"ts_code", "name"} - set(table.columns)
    if missing:
        raise UniverseError(f"universe file {path} lacks the column(s) {sorted(missing)}; it needs ts_code,name")
    table = table[["ts_code", "name"]].map(str.strip)
    bad = table.loc[~table["ts_code"].str.fullmatch(TS_CODE), "ts_code"].tolist()
    if bad:
        raise UniverseError(f"universe file {path} has malformed ts_code(s) {bad}: expected e.g. 510300.SH")
    repeated = table.loc[table["ts_code"].duplicated(), "ts_code"].tolist()
    if repeated:
        raise UniverseError(f"universe file {path} lists {repeated} more than once")
    if table.empty:
        raise UniverseError(f"universe file {path} lists no fund")
    return table.reset_index(drop=True)
