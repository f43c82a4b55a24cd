"""The operator hears when a day goes wrong: the failure and recovery sensors and the deadline's check, ticked
as the daemon ticks them, telling a channel on loopback over real HTTP (Apprise's JSON webhook)."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.settings import load_settings
from tests.conftest import tick_schedule, use_env
from tests.site_fixture import publish_demo_site

DAY = "2024-06-28"
UI = "http://dagster.example.com:3000"


@pytest.fixture
def operated(tmp_path, receivers):
    env = {
        "ALCHEMY_ENV": "local",
        "ALCHEMY_DATA_DIR": str(tmp_path / "data"),
        "ALCHEMY_PUBLISH_DIR": str(tmp_path / "site"),
        "ALCHEMY_NOTIFY_MAX_AGE_DAYS": "100000",
        "ALCHEMY_OPERATOR_URLS": f"json://{receivers.url}/operator",
        "ALCHEMY_UI_URL": UI,
    }
    (tmp_path / "dagster").mkdir()
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        use_env(mp, env)
        yield {"defs": build_definitions(load_settings()), "instance": instance, "tmp": tmp_path}


def alerts(receivers) -> list[dict]:
    return [json.loads(body) for path, _, body in receivers.posts if path == "/operator"]


def tick(operated, name: str):
    defs, instance = operated["defs"], operated["instance"]
    sensor = defs.resolve_sensor_def(name)
    cursor = operated.get(name)
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources={"operator": defs.resources["operator"]}, cursor=cursor
    ) as context:
        result = sensor.evaluate_tick(context)
    operated[name] = result.cursor
    return result


def run_job(operated, job: str, **kwargs) -> dg.ExecuteInProcessResult:
    return (
        operated["defs"]
        .resolve_job_def(job)
        .execute_in_process(instance=operated["instance"], raise_on_error=False, **kwargs)
    )


def test_a_failed_run_is_told_once_with_its_step_reason_and_link_and_the_success_after_says_so(operated, receivers):
    for name in ("operator_run_failure_sensor", "operator_recovery_sensor"):
        tick(operated, name)  # the first tick starts from now, as a freshly started daemon's does
    failed = run_job(operated, "notify_subscribers", partition_key=DAY)  # nothing published yet
    assert not failed.success
    tick(operated, "operator_run_failure_sensor")
    tick(operated, "operator_run_failure_sensor")  # once per failure
    (told,) = alerts(receivers)
    assert told["title"] == "Alchemy: notify_subscribers failed"
    assert told["message"] == (
        f"run {failed.run_id} of notify_subscribers failed at send_signal_notification: "
        f"No published report for {DAY}: nothing to notify {UI}/runs/{failed.run_id}"
    )

    publish_demo_site(operated["tmp"] / "site", 30)
    succeeded = run_job(operated, "notify_subscribers", partition_key=DAY)
    assert succeeded.success
    tick(operated, "operator_recovery_sensor")
    tick(operated, "operator_recovery_sensor")
    assert [a["title"] for a in alerts(receivers)] == [
        "Alchemy: notify_subscribers failed",
        "Alchemy: notify_subscribers succeeded again",
    ]
    assert (
        f"run {succeeded.run_id} of notify_subscribers succeeded after run {failed.run_id} failed"
        in (alerts(receivers)[1]["message"])
    )


def test_a_day_not_published_by_the_deadline_is_told_once_and_its_publication_after_says_so(operated, receivers):
    defs, instance = operated["defs"], operated["instance"]
    tick(operated, "operator_recovery_sensor")
    deadline = dt.datetime(2024, 6, 28, 23, tzinfo=ZoneInfo("Asia/Shanghai"))
    (request,) = tick_schedule(defs, instance, "operator_deadline_schedule", deadline).run_requests
    assert request.tags["alchemy/deadline_day"] == DAY

    def check(run) -> dg.AssetCheckEvaluation:
        (evaluation,) = run.get_asset_check_evaluations()
        return evaluation

    late = run_job(operated, "operator_deadline_job", tags=request.tags)
    assert not check(late).passed and check(late).severity == dg.AssetCheckSeverity.ERROR
    run_job(operated, "operator_deadline_job", tags=request.tags)  # told once, however often it is checked
    (told,) = alerts(receivers)
    assert told["title"] == f"Alchemy: {DAY} not published by 23:00 Asia/Shanghai"
    assert told["message"].endswith(f"{UI}/runs")

    instance.report_runless_asset_event(dg.AssetMaterialization("signal_report", partition=DAY))
    on_time = run_job(operated, "operator_deadline_job", tags=request.tags)
    assert check(on_time).passed
    tick(operated, "operator_recovery_sensor")
    assert [a["title"] for a in alerts(receivers)] == [told["title"], f"Alchemy: {DAY} published"]

    # A weekend is no trading day: nothing to publish, nothing to tell.
    weekend = run_job(operated, "operator_deadline_job", tags={"alchemy/deadline_day": "2024-06-29"})
    assert check(weekend).passed and len(alerts(receivers)) == 2
