"""The small profile's control plane that sleeps: when it stays and when it leaves (``decide``), what it reads
from a real Dagster instance on PostgreSQL, and the real ``dagster-daemon`` under it: a missed 18:00 tick
run on the next start for the latest trading day only, and a start killed mid-run that, started again,
publishes the day once and notifies it once.

AWS is moto in server mode (S3, SNS, the deliveries seen through a subscribed SQS queue); ECS cannot start
tasks here, so runs are launched by ``tests/detached_launcher.py``, a process of their own per run. Time
cannot pass faster here: "the control plane was last up a week ago" is written into the schedule's state.
"""

import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import ScheduleInstigatorData
from dagster._core.test_utils import create_run_for_test
from dagster._utils.schedules import cron_string_iterator

from alchemy_pipeline.control_plane import parse_args
from alchemy_pipeline.control_plane_watch import ScheduleClock, take_watch
from alchemy_pipeline.domain.control_plane import Limits, Watch, ceiling_after_late_data, decide
from alchemy_pipeline.domain.market.calendar import TradingCalendar
from tests.aws import aws_mode_env, make_buckets_and_topic
from tests.conftest import REPO_ROOT, vendor_tables, write_universe
from tests.test_aws import drain
from tests.tushare_server import VALID_TOKEN, TushareTestServer

START = dt.datetime(2026, 12, 4, 9, 55, tzinfo=dt.UTC)  # 17:55 in Shanghai, as the evening wake-up
LIMITS = Limits()
DAILY = ScheduleClock("daily_signals_schedule", "0 18 * * 1-5", "Asia/Shanghai", True)
IDLE = "idle: no run queued or in progress, no tick awaited, the sensor has ticked since"
FUNDS = {"510300.SH": "沪深300ETF", "159915.SZ": "创业板ETF"}


def watch(minutes: float, **changes) -> Watch:
    fields = dict(
        now=START + dt.timedelta(minutes=minutes),
        started_at=START,
        active_runs=(),
        awaited_ticks=(),
        last_run_ended_at=None,
        sensor_ticked_at=None,
    )
    return Watch(**{**fields, **changes})


def test_decide_stays_while_anything_of_the_day_is_pending_and_leaves_after():
    ran = START + dt.timedelta(minutes=20)
    assert not decide(watch(1), LIMITS).leave  # settling
    assert not decide(watch(6, awaited_ticks=("daily_signals_schedule at 18:00",)), LIMITS).leave
    assert "run-1 (QUEUED)" in decide(watch(6, active_runs=("run-1 (QUEUED)",)), LIMITS).reason
    assert not decide(watch(30, active_runs=("run-2 (STARTED)",)), LIMITS).leave
    stays = decide(watch(21, last_run_ended_at=ran, sensor_ticked_at=ran - dt.timedelta(seconds=30)), LIMITS)
    assert not stays.leave and "sensor" in stays.reason
    leaves = decide(watch(22, last_run_ended_at=ran, sensor_ticked_at=ran + dt.timedelta(seconds=40)), LIMITS)
    assert leaves.leave and leaves.reason.startswith("idle")
    assert decide(watch(6), LIMITS).leave  # nothing ran, nothing is due: back to sleep
    assert not decide(watch(6), Limits(stay=dt.timedelta(minutes=60))).leave  # deploy/ui up


def test_decide_leaves_at_the_ceiling_naming_what_was_still_pending():
    late = watch(300, active_runs=("run-3 (STARTED)",), awaited_ticks=("trading_calendar_schedule at 08:00",))
    decision = decide(late, LIMITS)
    assert decision.leave
    assert "300 min" in decision.reason and "run-3 (STARTED)" in decision.reason
    assert not decide(watch(299, active_runs=("run-3 (STARTED)",)), LIMITS).leave
    # The default ceiling lets a late vendor be retried to the last try: 8 tries 30 minutes apart, and an hour.
    assert ceiling_after_late_data(8, 1800) == LIMITS.ceiling == dt.timedelta(hours=5)


def test_bad_options_are_refused_naming_the_option(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--ceiling-minutes", "-5"])
    assert "--ceiling-minutes=-5 must not be negative" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--poll-seconds", "0"])
    assert "--poll-seconds=0 must be more than 0" in capsys.readouterr().err


def test_a_missing_setting_stops_the_control_plane_before_the_daemon_naming_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALCHEMY_", "TUSHARE_", "DAGSTER_"))}
    env.update(ALCHEMY_ENV="aws", ALCHEMY_DATA_DIR=str(tmp_path), DAGSTER_HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "alchemy_pipeline.control_plane"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert "TUSHARE_TOKEN is not set" in done.stderr and "daemon started" not in done.stderr


def production_instance(postgres, home: Path, **run_monitoring) -> dg.DagsterInstance:
    """Dagster's storage on the throwaway PostgreSQL cluster, with the production instance's settings (its run
    monitoring's changed by ``run_monitoring``) and a run launcher that starts each run as a process."""
    database = f"control_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    config = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    config["run_monitoring"].update(run_monitoring)
    config["storage"]["postgres"]["postgres_db"].update(
        hostname="127.0.0.1", port=postgres.port, username="postgres", password="trust", db_name=database
    )
    config["run_launcher"] = {"module": "tests.detached_launcher", "class": "DetachedRunLauncher"}
    del config["compute_logs"]  # local files: the runs' logs need no bucket here
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(home))


@pytest.fixture
def instance(postgres, tmp_path):
    with production_instance(postgres, tmp_path / "home") as instance:
        yield instance


def test_the_watch_reads_unfinished_runs_and_the_ceiling_ends_the_wait(instance):
    started = dt.datetime.now(dt.UTC)
    waiting = create_run_for_test(instance, job_name="daily_signals_job", status=dg.DagsterRunStatus.NOT_STARTED)
    seen = take_watch(instance, [DAILY], started, started + dt.timedelta(minutes=10), dt.timedelta(0))
    assert seen.active_runs == (f"{waiting.run_id} (NOT_STARTED)",)
    assert not decide(seen, LIMITS).leave
    at_ceiling = take_watch(instance, [DAILY], started, started + LIMITS.ceiling, dt.timedelta(0))
    decision = decide(at_ceiling, LIMITS)
    assert decision.leave and waiting.run_id in decision.reason
    instance.report_run_canceled(waiting)
    after = take_watch(instance, [DAILY], started, started + dt.timedelta(minutes=10), dt.timedelta(0))
    assert after.active_runs == () and after.last_run_ended_at is not None
    # The run ended and the sensor has never ticked since: the notification may still be due.
    assert not decide(after, LIMITS).leave and "sensor" in decide(after, LIMITS).reason


def test_a_schedule_tick_in_the_wake_window_is_awaited_until_the_scheduler_has_evaluated_it(instance):
    shanghai = ZoneInfo("Asia/Shanghai")
    started = dt.datetime(2026, 12, 4, 17, 50, tzinfo=shanghai)
    seen = take_watch(instance, [DAILY], started, started + dt.timedelta(minutes=6), dt.timedelta(minutes=15))
    assert seen.awaited_ticks == ("daily_signals_schedule at 2026-12-04 18:00 CST",)
    stopped = ScheduleClock(DAILY.name, DAILY.cron, DAILY.timezone, running_by_default=False)
    assert take_watch(instance, [stopped], started, started, dt.timedelta(minutes=15)).awaited_ticks == ()


# ---------------------------------------------------------------- the real daemon


def latest_tick_before(now: dt.datetime) -> dt.datetime:
    times = cron_string_iterator((now - dt.timedelta(days=8)).timestamp(), DAILY.cron, DAILY.timezone)
    return list(itertools.takewhile(lambda t: t <= now, times))[-1]


@pytest.fixture
def world(aws, instance, tmp_path, monkeypatch):
    """The AWS side in moto, a Tushare server with prices up to today, the instance's home as DAGSTER_HOME."""
    world = make_buckets_and_topic()
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    server = TushareTestServer(vendor_tables(list(FUNDS), str(today - dt.timedelta(days=500)), str(today))).start()
    day = latest_tick_before(dt.datetime.now(dt.UTC)).date()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ALCHEMY_", "TUSHARE_", "DAGSTER_"))},
        "DAGSTER_HOME": str(tmp_path / "home"),
        **aws_mode_env(world, "https://signals.example.com"),
        "ALCHEMY_DATA_DIR": str(tmp_path / "data"),
        "ALCHEMY_UNIVERSE": str(write_universe(tmp_path / "universe.csv", FUNDS)),
        "ALCHEMY_BACKTEST_START": str(TradingCalendar().sessions(day - dt.timedelta(days=10), day)[0]),
        "ALCHEMY_NOTIFY_MAX_AGE_DAYS": "10",
        "TUSHARE_TOKEN": VALID_TOKEN,
        "TUSHARE_API_URL": server.url,
        "PYTHONPATH": str(REPO_ROOT),  # the daemon imports tests.detached_launcher
        # As in the image: the environment's commands (dagster, which runs a run) on the PATH.
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}",
    }
    yield {**world, "env": env, "instance": instance, "day": day}
    server.stop()


def start_control_plane(env: dict, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "alchemy_pipeline.control_plane", "--workspace",
               str(REPO_ROOT / "deploy" / "workspace-small.yaml"), "--poll-seconds", "2", "--settle-seconds", "30",
               "--lead-minutes", "0", "--ceiling-minutes", "15"]  # fmt: skip
    # A session of its own: killing it kills the daemon and the code server with it, as ECS stops a task.
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=log, start_new_session=True)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(1)


def test_a_missed_tick_runs_on_the_next_start_and_a_killed_start_publishes_and_notifies_once(world, tmp_path):
    instance, env, day = world["instance"], world["env"], world["day"]
    log_path = tmp_path / "control_plane.log"
    with open(log_path, "ab") as log:
        # A first start with nothing due: the daemon records the schedules' state, and the task leaves.
        first = start_control_plane(env, log)
        assert first.wait(timeout=240) == 0
    assert "leaving: idle" in log_path.read_text()
    assert not instance.get_run_records()

    # The control plane was last up eight days ago: every weekday's 18:00 since then was missed.
    state = next(
        s for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
        if s.name == DAILY.name
    )  # fmt: skip
    week_ago = time.time() - 8 * 86400
    instance.update_instigator_state(
        state.with_data(ScheduleInstigatorData(DAILY.cron, start_timestamp=week_ago, last_iteration_timestamp=week_ago))
    )
    trading = TradingCalendar().is_trading_day(day)

    with open(log_path, "ab") as log:
        second = start_control_plane(env, log)
        if trading:
            # Killed while a run is in progress (a Spot interruption): the run is a task of its own and goes on.
            started = lambda: instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))  # noqa: E731
            wait_for(started, 240, "a run starting")
        else:
            wait_for(lambda: second.poll() is not None, 240, "the control plane leaving")
        os.killpg(second.pid, signal.SIGKILL)
        second.wait()
        killed_at = time.time()
        third = start_control_plane(env, log)
        assert third.wait(timeout=600) == 0, log_path.read_text()[-3000:]
    # The control plane's own last line: the daemon it stops may print click's "Aborted!" after it.
    said = log_path.read_text()
    own = [line for line in said.splitlines() if " control_plane: " in line]
    assert own[-1].endswith("leaving: idle: no run queued or in progress, no tick awaited, the sensor has ticked since")

    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
    # Only the latest missed tick is evaluated (the schedule is not partitioned: Dagster catches up one).
    assert [dt.datetime.fromtimestamp(t.timestamp, dt.UTC) for t in ticks] == [
        latest_tick_before(dt.datetime.now(dt.UTC))
    ]
    runs = instance.get_run_records()
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.dagster_run.status for r in runs]
    published = instance.get_materialized_partitions(dg.AssetKey("signal_report"))
    messages = drain(world["queue"])
    if not trading:
        assert not runs and not published and not messages
        return
    assert published == {day.isoformat()}
    # A run was in progress when the control plane was killed, and finished on its own.
    assert any(r.start_time < killed_at < r.end_time for r in runs)
    materializations = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("signal_report"), asset_partitions=[day.isoformat()]), limit=10
    ).records
    assert len(materializations) == 1  # published once
    assert [m["MessageAttributes"]["trade_date"]["Value"] for m in messages] == [day.isoformat()]  # notified once
    assert "waiting for the notification sensor" in said
