"""Asset values as Parquet, one file per trading-day partition.

A single-run backfill hands an asset the DataFrame of its whole range: the IO manager splits it by
``trade_date`` into one file per partition, and loads a range of partitions (a day's history window,
or a backfill's) in one pass, each file read once.
"""

import io
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alchemy_pipeline.domain.publish import atomic_write


class MissingPartitionsError(RuntimeError):
    """Upstream partitions that a step needs have never been materialized."""


def contiguous_ranges(keys: list[str], all_keys: list[str]) -> list[tuple[str, str]]:
    """Groups ``keys`` (a subset of the ordered ``all_keys``) into runs of consecutive partitions."""
    position = {k: i for i, k in enumerate(all_keys)}
    ranges: list[list[str]] = []
    for key in keys:
        if ranges and position[key] == position[ranges[-1][1]] + 1:
            ranges[-1][1] = key
        else:
            ranges.append([key, key])
    return [(a, b) for a, b in ranges]


def to_parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Stores ``<base_dir>/<asset_key>/<YYYY-MM-DD>.parquet``."""

    base_dir: str

    def _path(self, asset_key: dg.AssetKey, partition_key: str) -> Path:
        return Path(self.base_dir, *asset_key.path, f"{partition_key}.parquet")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        keys = context.asset_partition_keys
        obj = obj.sort_values("trade_date", kind="stable", ignore_index=True)
        day_of_row = obj["trade_date"].dt.strftime("%Y-%m-%d")
        stray = sorted(set(day_of_row) - set(keys))
        if stray:
            raise ValueError(f"{context.asset_key.to_user_string()} has rows for days outside its partitions: {stray}")
        # One conversion to Arrow for the whole range, then a zero-copy slice per day.
        table = pa.Table.from_pandas(obj, preserve_index=False)
        ends = day_of_row.searchsorted(keys, side="right")
        starts = day_of_row.searchsorted(keys, side="left")
        for key, start, end in zip(keys, starts, ends, strict=True):
            atomic_write(self._path(context.asset_key, key), to_parquet_bytes(table.slice(start, end - start)))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        asset_key = context.asset_key
        keys = context.asset_partition_keys
        missing = [k for k in keys if not self._path(asset_key, k).exists()]
        if missing:
            all_keys = list(keys)
            name = asset_key.to_user_string()
            ranges = contiguous_ranges(missing, all_keys)
            commands = "; ".join(
                f"dagster asset materialize -m alchemy_pipeline.definitions --select {name} --partition-range {a}...{b}"
                for a, b in ranges
            )
            raise MissingPartitionsError(
                f"{name} has not been materialized for {len(missing)} of the {len(keys)} trading days this step "
                f"reads ({', '.join(f'{a}...{b}' for a, b in ranges)}). Backfill them first: {commands}"
            )
        tables = [pq.read_table(self._path(asset_key, k)) for k in keys]
        return pa.concat_tables(tables, promote_options="default").to_pandas() if tables else pd.DataFrame()
