"""Asset values as Parquet, one object per trading-day partition, on local disk or in S3.

A single-run backfill hands an asset the DataFrame of its whole range: the IO manager splits it by
``trade_date`` into one object per partition, and loads a range of partitions (a day's history window,
or a backfill's) in one pass, each object read once; objects are written and read a few at a time.
"""

import io

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster_aws.s3 import S3Resource

from alchemy_pipeline.domain.storage import BlobStore, LocalBlobStore, S3BlobStore, in_parallel


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
    """Stores ``<asset_key>/<YYYY-MM-DD>.parquet`` in the store of the subclass."""

    def store(self) -> BlobStore:
        raise NotImplementedError

    @staticmethod
    def _key(asset_key: dg.AssetKey, partition_key: str) -> str:
        return "/".join([*asset_key.path, f"{partition_key}.parquet"])

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
        starts = day_of_row.searchsorted(keys, side="left")
        ends = day_of_row.searchsorted(keys, side="right")
        store = self.store()

        def write(day: tuple[str, int, int]) -> None:
            key, start, end = day
            data = to_parquet_bytes(table.slice(start, end - start))
            store.put(self._key(context.asset_key, key), data, content_type="application/vnd.apache.parquet")

        in_parallel(write, zip(keys, starts, ends, strict=True))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        asset_key = context.asset_key
        keys = list(context.asset_partition_keys)
        store = self.store()
        existing = store.keys("/".join(asset_key.path) + "/")
        missing = [k for k in keys if self._key(asset_key, k) not in existing]
        if missing:
            name = asset_key.to_user_string()
            ranges = contiguous_ranges(missing, keys)
            commands = "; ".join(
                f"dagster asset materialize -m alchemy_pipeline.definitions --select {name} --partition-range {a}...{b}"
                for a, b in ranges
            )
            raise MissingPartitionsError(
                f"{name} has not been materialized for {len(missing)} of the {len(keys)} trading days this step "
                f"reads ({', '.join(f'{a}...{b}' for a, b in ranges)}). Backfill them first: {commands}"
            )
        tables = in_parallel(lambda k: pq.read_table(io.BytesIO(store.get(self._key(asset_key, k)))), keys)
        return pa.concat_tables(tables, promote_options="default").to_pandas() if tables else pd.DataFrame()


class LocalParquetIOManager(PartitionedParquetIOManager):
    """Parquet files under a local directory."""

    base_dir: str

    def store(self) -> BlobStore:
        return LocalBlobStore(self.base_dir)


class S3ParquetIOManager(PartitionedParquetIOManager):
    """Parquet objects in an S3 bucket, through dagster-aws's S3Resource."""

    s3: dg.ResourceDependency[S3Resource]
    bucket: str
    prefix: str = "assets"

    def store(self) -> BlobStore:
        return S3BlobStore(self.s3.get_client(), self.bucket, self.prefix)
