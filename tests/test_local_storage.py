"""The local instance's storage (alchemy_pipeline/local_storage.py) against Dagster's plain SQLite storage.

Both record the same runs; what Dagster's API then reads back must be the same, and either storage reads
the other's files.
"""

import copy
from pathlib import Path

import dagster as dg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alchemy_pipeline.local_storage import PooledSqliteEventLogStorage

ROOT = Path(__file__).resolve().parents[1]
DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-09")
KEYS = DAYS.get_partition_keys()
PLAIN = {"sqlite": {"base_dir": "storage"}}
LOCAL = yaml.safe_load((ROOT / "dagster.yaml").read_text())["storage"]


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def bars(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"days": len(context.partition_keys), "first": context.partition_keys[0]})


@dg.asset_check(asset=bars, blocking=False)
def bars_are_valid(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=context.run.tags.get("check") == "pass")


@dg.asset(partitions_def=DAYS, deps=[bars], backfill_policy=dg.BackfillPolicy.single_run())
def signals() -> None:
    return None


def instance_at(home: Path, storage: dict) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    storage = copy.deepcopy(storage)
    config = storage["custom"]["config"] if "custom" in storage else storage["sqlite"]
    config["base_dir"] = str(home / "storage")
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": storage, "telemetry": {"enabled": False}}))
    return dg.DagsterInstance.from_config(str(home))


def run(instance: dg.DagsterInstance, first: str, last: str, check_passes: bool) -> str:
    tags = {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
        "check": "pass" if check_passes else "fail",
    }
    result = dg.materialize([bars, bars_are_valid, signals], instance=instance, tags=tags)
    assert result.success
    return result.run_id


def what_dagster_reads(instance: dg.DagsterInstance, run_ids: list[str]) -> dict:
    """Everything the UI and sensors read back, with run ids replaced by their order (each storage
    makes its own)."""
    order = {run_id: n for n, run_id in enumerate(run_ids)}
    storage = instance.event_log_storage
    check = dg.AssetCheckKey(dg.AssetKey("bars"), "bars_are_valid")
    return {
        "events": [
            [(e.dagster_event_type, e.dagster_event.asset_key, e.dagster_event.partition) for e in instance.all_logs(r)
             if e.is_dagster_event]
            for r in run_ids
        ],
        "materializations": {
            key: [
                (order[r.run_id], r.partition_key, r.asset_materialization.metadata)
                for r in storage.fetch_materializations(dg.AssetKey(key), limit=1000).records
            ]
            for key in ("bars", "signals")
        },
        "materialized": {key: storage.get_materialized_partitions(dg.AssetKey(key)) for key in ("bars", "signals")},
        "checks": [
            (order[r.run_id], r.partition, r.status, r.event.dagster_event_type if r.event else None)
            for r in storage.get_asset_check_execution_history(check, limit=1000)
        ],
    }  # fmt: skip


runs_strategy = st.lists(
    st.tuples(st.integers(0, len(KEYS) - 1), st.integers(0, len(KEYS) - 1), st.booleans()).map(
        lambda t: (KEYS[min(t[0], t[1])], KEYS[max(t[0], t[1])], t[2])
    ),
    min_size=1,
    max_size=3,
)


# Dagster hands the per-day materializations to the storage one by one, or in batches with this set.
@pytest.mark.parametrize("batch_size", ["0", "1000"])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=runs_strategy)
def test_the_local_storage_records_what_dagsters_plain_sqlite_storage_records(
    tmp_path_factory, monkeypatch, batch_size, runs
):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch_size)
    homes = tmp_path_factory.mktemp("homes")
    plain = instance_at(homes / "plain", PLAIN)
    local = instance_at(homes / "local", LOCAL)
    assert isinstance(local.event_log_storage, PooledSqliteEventLogStorage)
    plain_runs = [run(plain, *r) for r in runs]
    local_runs = [run(local, *r) for r in runs]
    read = what_dagster_reads(local, local_runs)
    assert read == what_dagster_reads(plain, plain_runs)
    # One planned check row per partition of each run: what the faster path writes differently.
    planned = [row for row in read["checks"] if row[3] == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED]
    assert len(planned) == sum(KEYS.index(last) - KEYS.index(first) + 1 for first, last, _ in runs)
    # The same files: Dagster's plain storage reads what the local one wrote.
    assert what_dagster_reads(instance_at(homes / "local", PLAIN), local_runs) == read


def test_a_wiped_local_instance_records_new_runs(tmp_path):
    instance = instance_at(tmp_path, LOCAL)
    run(instance, KEYS[0], KEYS[2], True)
    instance.wipe()
    run_id = run(instance, KEYS[3], KEYS[3], True)
    assert instance.event_log_storage.get_materialized_partitions(dg.AssetKey("bars")) == {KEYS[3]}
    assert any(e.dagster_event_type == dg.DagsterEventType.RUN_SUCCESS for e in instance.all_logs(run_id))
