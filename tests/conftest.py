import contextlib
import datetime as dt
import importlib
import os
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from alchemy_pipeline.defs.partitions import TradingDays
from alchemy_pipeline.domain.market.calendar import TradingCalendar
from alchemy_pipeline.domain.market.demo_prices import DemoTushareApi
from tests.tushare_server import TushareTestServer


def _import_the_trading_days_with_no_cached_calendar() -> None:
    """The code location reads the trade_cal cached under ALCHEMY_DATA_DIR once, when it is first imported:
    the tests' in-process definitions partition by the bundled calendar, not by what a .alchemy holds."""
    before = os.environ.get("ALCHEMY_DATA_DIR")
    os.environ["ALCHEMY_DATA_DIR"] = tempfile.mkdtemp(prefix="alchemy-import-")
    importlib.import_module("alchemy_pipeline.defs.trading_days")
    if before is None:
        del os.environ["ALCHEMY_DATA_DIR"]
    else:
        os.environ["ALCHEMY_DATA_DIR"] = before


_import_the_trading_days_with_no_cached_calendar()

REPO_ROOT = Path(__file__).resolve().parents[1]
# The project's `dg`, as the docs run it (`.venv/bin/dg`), from the environment running the tests.
DG = str(Path(sys.executable).parent / "dg")
# The trading days of the bundled exchange calendar, which every test day before 2027 falls within.
BUNDLED_DAYS = TradingDays(TradingCalendar())
history_keys = BUNDLED_DAYS.history_keys


def real_data_dir() -> Path | None:
    candidates = [os.environ.get("ALCHEMY_REAL_DATA"), REPO_ROOT.parent / "shared" / "data" / "etf"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "tushare" / "fund_daily.csv").exists():
            return Path(candidate)
    return None


def vendor_tables(ts_codes: list[str], start: str, end: str) -> dict[str, pd.DataFrame]:
    """Tushare-format fund_daily and fund_adj tables for the given funds, written by the test."""
    api = DemoTushareApi(ts_codes)
    span = {"start_date": start.replace("-", ""), "end_date": end.replace("-", "")}
    return {
        "fund_daily": api.query("fund_daily", **span),
        "fund_adj": api.query("fund_adj", **span),
    }


def tick_schedule(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, when: dt.datetime):
    """One evaluation of a schedule of ``defs`` at ``when``, with the resources it asks for."""
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when, resources=defs.resources) as ctx:
        return defs.resolve_schedule_def(name).evaluate_tick(ctx)


# What scripts/run-local and production set: Dagster writes a step's per-day records in batches.
EVENT_BATCH_SIZE = "1000"


@contextlib.contextmanager
def local_instance(directory: Path | None = None, **kwargs):
    """A test instance that records runs as the local instance does: dagster.yaml's storage (under ``directory``,
    or a temporary one), the per-day records in batches. Dagster's plain SQLite storage takes minutes over a
    backfill's thousands of records, one connection each (alchemy_pipeline/local_storage.py)."""
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(ignore_cleanup_errors=True)))
        directory.mkdir(parents=True, exist_ok=True)
        storage = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text("utf-8"))["storage"]
        storage["custom"]["config"]["base_dir"] = str(directory / "storage")
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setenv("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        yield stack.enter_context(
            dg.instance_for_test(overrides={"storage": storage}, temp_dir=str(directory), **kwargs)
        )


def materialize_sweep(defs: dg.Definitions, instance: dg.DagsterInstance, config: dict):
    """``ma_sweep`` materialized with ``config`` as its run config, as an analyst launches it; it must succeed."""
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("ma_sweep")],
        run_config={"ops": {"ma_sweep": {"config": config}}},
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def write_universe(path: Path, funds: dict[str, str]) -> Path:
    pd.DataFrame({"ts_code": list(funds), "name": list(funds.values())}).to_csv(path, index=False)
    return path


@pytest.fixture
def tushare_server_factory():
    servers = []

    def start(tables: dict[str, pd.DataFrame], **kwargs) -> TushareTestServer:
        server = TushareTestServer(tables, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def use_env(mp: pytest.MonkeyPatch, env: dict[str, str], keep: tuple[str, ...] = ()) -> None:
    """Replaces every ALCHEMY_ and TUSHARE_ variable of the environment with ``env``."""
    for key in list(os.environ):
        if key.startswith(("ALCHEMY_", "TUSHARE_")) and key not in keep:
            mp.delenv(key)
    for key, value in env.items():
        mp.setenv(key, value)


@pytest.fixture
def receivers():
    """Channels on loopback (tests/receivers.py)."""
    from tests.receivers import Receivers

    server = Receivers()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint():
    """One moto server for the session; each test makes its own buckets and topics."""
    from tests.aws import start_moto

    server, endpoint = start_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    from tests.aws import aws_env

    for key, value in aws_env(moto_endpoint).items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    return moto_endpoint


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server for the session (skipped, with the reason, where none is installed)."""
    from tests.postgres import ThrowawayPostgres, postgres_bin

    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb) not found; .ci/run installs Debian's postgresql")
    import shutil
    import tempfile

    # Not under pytest's temporary directory: that one is private to root, and the server may run as
    # the postgres user.
    root = Path(tempfile.mkdtemp(prefix="alchemy-pg-"))
    root.chmod(0o755)
    server = ThrowawayPostgres(root / "cluster").start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
