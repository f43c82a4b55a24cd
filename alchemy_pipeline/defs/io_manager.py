"""Asset values as Parquet, one object per trading-day partition, on local disk or in S3.

A single-run backfill hands an asset the DataFrame of its whole range: the IO manager splits it by
``trade_date`` into one object per partition, and loads a range of partitions (a day's history window,
or a backfill's) in one pass, each object read once; objects are written and read a few at a time.

The IO manager keeps nothing between calls: every step reads what it needs from the store, so any
executor (one process, or a process per step) runs the same.
"""

import io

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster_aws.s3 import S3Resource

from alchemy_pipeline.defs.partitions import backfill_command, contiguous_ranges
from alchemy_pipeline.infrastructure.frames import by_trade_date, shared_strings
from alchemy_pipeline.infrastructure.memory import release_free_memory
from alchemy_pipeline.infrastructure.storage import BlobStore, LocalBlobStore, S3BlobStore, in_parallel, one_by_one

# An input's metadata flag: of the upstream partitions, read only the first, and none if it is missing.
DAY_BEFORE_ONLY = "day_before_only"
# Days converted to Arrow at a time when a range is written.
DAYS_PER_ARROW_CHUNK = 64


class MissingPartitionsError(RuntimeError):
    """Upstream partitions that a step needs have never been materialized."""


def _is_text(field: pa.Field) -> bool:
    return pa.types.is_string(field.type) or pa.types.is_large_string(field.type)


def arrow_schema(frame: pd.DataFrame) -> pa.Schema:
    """The frame's Arrow schema from its dtypes alone, a Python-object column as text: inferred from the values,
    a day whose notes are all empty would get a column of type null, and its file would then depend on
    which other days were written with it."""
    schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)
    for i, field in enumerate(schema):
        if frame[field.name].dtype == object:
            schema = schema.set(i, field.with_type(pa.string()))
    return schema


def to_parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    # Dictionaries for the text columns only (codes, names, states repeat; numbers seldom do), and Snappy
    # (pyarrow's default): a long range is thousands of small files, where zstd's extra squeeze costs more
    # time per file than it saves in bytes.
    pq.write_table(table, buffer, compression="snappy", use_dictionary=[f.name for f in table.schema if _is_text(f)])
    return buffer.getvalue()


def from_parquet_bytes(data: bytes, columns: list[str] | None = None) -> pa.Table:
    """One object's table (a file's reader: no dataset machinery for thousands of small files), its text
    columns dictionary-encoded, which pandas turns into categories rather than a string per row."""
    # One thread per file, no read-ahead: a day's file is small, and a range's files are read many at once.
    table = pq.ParquetFile(pa.BufferReader(data), pre_buffer=False).read(columns=columns, use_threads=False)
    for i, field in enumerate(table.schema):
        if _is_text(field):
            table = table.set_column(i, field.name, pc.dictionary_encode(table.column(i)))
    return table


def missing_message(name: str, missing: list[str], keys: list[str]) -> str:
    """What is missing, and the commands that make it, to paste at the repo root."""
    ranges = contiguous_ranges(missing, keys)
    return (
        f"{name} has not been materialized for {len(missing)} of the {len(keys)} trading days this step reads "
        f"({', '.join(f'{a}...{b}' for a, b in ranges)}). From the repo root, materialize them and what they are "
        "computed from: "
        f"{backfill_command(name, ranges)}; then run this range again. Or run the range with scripts/backfill "
        f"START END, which fetches the history it lacks first."
    )


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Stores ``<asset_key>/<YYYY-MM-DD>.parquet`` in the store of the subclass."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Dagster's PostgreSQL storage opens a new connection for every event a run writes (it pools only in
        # the webserver): a third of a daily run's time. The run's process keeps one per storage instead, as
        # the webserver does (no statement timeout); SQLite's storage ignores it.
        if context.instance is not None:
            context.instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=4)

    def store(self) -> BlobStore:
        raise NotImplementedError

    @staticmethod
    def _key(asset_key: dg.AssetKey, partition_key: str) -> str:
        return "/".join([*asset_key.path, f"{partition_key}.parquet"])

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        self.write(context.asset_key, obj, context.asset_partition_keys)

    def write(self, asset_key: dg.AssetKey, obj: pd.DataFrame, keys: list[str]) -> None:
        """Stores ``obj`` as one object per partition of ``keys`` (by its ``trade_date``)."""
        release_free_memory()  # what the step computed and dropped, before the output is converted
        obj = by_trade_date(obj)
        day_of_row = obj["trade_date"].to_numpy("datetime64[D]")
        partition_days = np.array(keys, dtype="datetime64[D]")
        starts = day_of_row.searchsorted(partition_days, side="left")
        ends = day_of_row.searchsorted(partition_days, side="right")
        if int((ends - starts).sum()) != len(obj):
            stray = sorted(str(d) for d in set(np.unique(day_of_row)) - set(partition_days))
            raise ValueError(f"{asset_key.to_user_string()} has rows for days outside its partitions: {stray}")
        store = self.store()
        schema = arrow_schema(obj)
        days = list(zip(keys, starts, ends, strict=True))
        # To Arrow a chunk of days at a time (a whole decade at once would double the memory held), then a
        # zero-copy slice per day.
        with store.batch():
            for chunk in (days[i : i + DAYS_PER_ARROW_CHUNK] for i in range(0, len(days), DAYS_PER_ARROW_CHUNK)):
                offset = chunk[0][1]
                table = pa.Table.from_pandas(obj.iloc[offset : chunk[-1][2]], schema=schema, preserve_index=False)

                def write(day: tuple[str, int, int], table=table, offset=offset) -> None:
                    key, start, end = day
                    data = to_parquet_bytes(table.slice(start - offset, end - start))
                    store.put(self._key(asset_key, key), data, content_type="application/vnd.apache.parquet")

                in_parallel(write, chunk)

    def missing_partitions(self, asset_key: dg.AssetKey, keys: list[str]) -> list[str]:
        """The partitions of ``keys`` that have never been written."""
        existing = self.store().keys("/".join(asset_key.path) + "/")
        return [k for k in keys if self._key(asset_key, k) not in existing]

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        release_free_memory()  # what the previous step held, before this one reads
        asset_key = context.asset_key
        keys = list(context.asset_partition_keys)
        if context.definition_metadata.get(DAY_BEFORE_ONLY):
            # An asset's input of itself, the day before each of the run's days: only the day before the
            # first is read (the run computes the others), and its absence is for the asset to handle.
            if not keys:
                return pd.DataFrame()
            try:
                return self.read_if_stored(asset_key, keys[0])
            except (OSError, pa.ArrowException) as error:
                context.log.warning(f"{asset_key.to_user_string()} {keys[0]} cannot be read ({error}): taken as absent")
                return pd.DataFrame()
        frame = self.read(asset_key, keys, context.definition_metadata.get("columns"))
        context.log.info(f"{asset_key.to_user_string()}: {len(keys)} partitions read, {len(frame)} rows")
        return frame

    def read_if_stored(self, asset_key: dg.AssetKey, key: str) -> pd.DataFrame:
        """One partition of an asset, or an empty frame if it was never written."""
        return pd.DataFrame() if self.missing_partitions(asset_key, [key]) else self.read(asset_key, [key])

    def read(self, asset_key: dg.AssetKey, keys: list[str], columns: list[str] | None = None) -> pd.DataFrame:
        """The partitions ``keys`` of an asset as one frame (only ``columns``, when given); a
        ``MissingPartitionsError`` naming the commands that make them if any is missing."""
        missing = self.missing_partitions(asset_key, keys)
        if missing:
            raise MissingPartitionsError(missing_message(asset_key.to_user_string(), missing, keys))
        frame = self._read(self.store(), asset_key, keys, columns)
        if columns and frame.columns.empty:  # no partition (an empty one keeps its columns' types)
            frame = pd.DataFrame(columns=columns)
        release_free_memory()  # the Arrow buffers, before the step computes
        return frame

    def _read(self, store: BlobStore, asset_key: dg.AssetKey, keys: list[str], columns: list[str] | None):
        # Fetched a few at a time (the wait is the disk's or the network's), parsed in this thread as they come
        # (the work is the CPU's, and threads would only contend for it), each object's bytes dropped once parsed:
        # a decade of states is a gigabyte of files, of which a step may read a few columns.
        tables = [
            from_parquet_bytes(data, columns) for data in one_by_one(store.get, [self._key(asset_key, k) for k in keys])
        ]
        if not tables:
            return pd.DataFrame()
        # Each Arrow buffer is released as soon as it is converted: the range is not held twice.
        table = pa.concat_tables(tables, promote_options="default")
        del tables
        return shared_strings(table.to_pandas(split_blocks=True, self_destruct=True))


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
