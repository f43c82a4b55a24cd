"""The local instance's storage (`dagster.yaml`): Dagster's SQLite storage, same files, faster writes.

A backfill run records one materialization per day and asset: 4,300 events for 4.5 years. Dagster's
`SqliteEventLogStorage` opens a new SQLAlchemy engine for every write, so each event pays a connect and a
fresh statement compile (16 ms), and it serializes a planned check event once per partition it covers.
This subclass changes only how it talks to the same files (see benchmarks/RESULTS.md for what it buys):
- one engine per database file and process, so connections and compiled statements are reused;
- `synchronous=NORMAL` on those connections: the files already use WAL, where NORMAL cannot corrupt the
  database; a power cut may lose the last events written, which a local instance can afford;
- a table, once found, is remembered (Dagster asks for every event that carries tags);
- a planned check event is serialized once for all its partitions;
- a batch of materializations (Dagster batches a step's per-day records when DAGSTER_EVENT_BATCH_SIZE is
  set, as scripts/run-local and production do) is written in one transaction per file.
It relies on methods of Dagster's SQL storage that Dagster does not document (`_connect`,
`_store_asset_check_evaluation_planned`, `_store_asset_event`, `_store_asset_event_tags`), which is why
Dagster is pinned and tests/test_local_storage.py holds it to the plain storage.
Production's instance (deploy/dagster.yaml) uses PostgreSQL and none of this.
"""

import os
from contextlib import contextmanager

import sqlalchemy as db
from dagster._core.events import DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import serialize_value


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data=None):
        self._engines: dict[tuple[int, str], db.Engine] = {}
        self._tables_found: set[str] = set()
        super().__init__(base_dir, inst_data)

    def _engine(self, shard: str) -> db.Engine:
        # Keyed by process too: a forked child must open its own connections, never share its parent's.
        key = (os.getpid(), shard)
        if key not in self._engines:
            engine = db.create_engine(
                self.conn_string_for_shard(shard), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
            )
            db.event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA synchronous=NORMAL"))
            self._engines[key] = engine
        return self._engines[key]

    @contextmanager
    def _connect(self, shard: str):
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    def has_table(self, table_name: str) -> bool:
        # Only a found table is remembered: a migration may add one later, none removes one.
        if table_name not in self._tables_found and super().has_table(table_name):
            self._tables_found.add(table_name)
        return table_name in self._tables_found

    def _store_asset_check_evaluation_planned(self, event, event_id) -> None:
        planned = event.dagster_event.event_specific_data
        subset = planned.partitions_subset
        row = dict(
            asset_key=planned.asset_key.to_string(),
            check_name=planned.check_name,
            run_id=event.run_id,
            execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
            evaluation_event=serialize_value(event),
            evaluation_event_timestamp=self._event_insert_timestamp(event),
            evaluation_event_storage_id=event_id,
        )
        partitions = subset.get_partition_keys() if subset else [None]
        with self.index_connection() as connection:
            connection.execute(AssetCheckExecutionsTable.insert().values([{**row, "partition": p} for p in partitions]))

    def store_event_batch(self, events) -> None:
        # Dagster batches the per-day materializations of one output (DAGSTER_EVENT_BATCH_SIZE): written
        # here as store_event writes each, but in one transaction per file instead of two per event.
        if {e.dagster_event_type for e in events} != {DagsterEventType.ASSET_MATERIALIZATION}:
            return super().store_event_batch(events)
        inserts = [self.prepare_insert_event(event) for event in events]
        for run_id in {event.run_id for event in events}:
            with self.run_connection(run_id) as connection:
                for event, insert in zip(events, inserts, strict=True):
                    if event.run_id == run_id:
                        connection.execute(insert)
        with self.index_transaction() as connection:
            ids = [connection.execute(insert).inserted_primary_key[0] for insert in inserts]
            self._store_asset_event_tags(connection, events, ids)
            for event, event_id in zip(events, ids, strict=True):
                self._store_asset_event(connection, event, event_id)

    def _release(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()

    def wipe(self) -> None:
        # Wiping deletes the run files: connections to them must not outlive them.
        with self._db_lock:
            self._release()
        super().wipe()

    def dispose(self) -> None:
        self._release()
        super().dispose()


class LocalSqliteStorage(DagsterSqliteStorage):
    """`storage: sqlite` with the event log above; the same directory layout, so an instance made by plain
    `storage: sqlite` keeps its history."""

    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data)
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls.from_local(inst_data=inst_data, **config_value)
