"""The Dagster definitions load, and the asset graph is landing → warehouse → staging → marts."""

import dagster as dg

from orchestration.assets.processing import _batch_metadata
from orchestration.batches import BatchResult
from orchestration.definitions import defs


def key(path: str) -> dg.AssetKey:
    return dg.AssetKey(path.split("/"))


def test_the_asset_graph_runs_from_landing_to_the_marts():
    graph = defs.resolve_asset_graph()
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()
    }
    assert parents["warehouse/events"] == {"landing/events_raw"}
    assert parents["warehouse/event_rejects"] == {"landing/events_raw"}
    assert parents["warehouse/event_duplicates"] == {"landing/events_raw"}
    assert parents["staging/stg_tributary__events"] == {"warehouse/events"}
    assert "intermediate/int_events_sessionized" in parents["marts/fct_sessions"]
    assert {"marts/fct_sessions", "marts/fct_jobs", "marts/agg_tenant_daily"} <= set(parents)


def test_conservation_and_dbt_tests_are_asset_checks():
    checks = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert "landing_is_conserved" in checks
    assert "backlog_is_fresh" in checks
    assert "unique_fct_sessions_session_key" in checks


def test_the_backlog_sensor_is_on_by_default_and_runs_processing_then_dbt():
    sensor = defs.resolve_sensor_def("landing_backlog_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "process_and_build"
    job = defs.resolve_job_def("process_and_build")
    assert {"process_landed_events", "tributary_dbt_models"} <= {n.name for n in job.nodes_in_topological_order}


def test_batch_metadata_adds_up_the_batches_of_a_run():
    results = [
        BatchResult(1, 10, 7, 2, 1, 0.5, {"too_old": 2}, {"event_id": 1}),
        BatchResult(2, 10, 9, 1, 0, 0.5, {"too_old": 1}, {}),
    ]
    metadata = _batch_metadata(results)
    assert metadata["claimed"].value == 20 and metadata["events"].value == 16
    assert metadata["rejects_by_reason"].value == {"too_old": 3}
    assert metadata["events_per_s"].value == 20.0


def test_a_nightly_schedule_checks_that_the_incremental_marts_equal_a_full_refresh():
    schedule = defs.resolve_schedule_def("nightly_marts_verification")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "verify_marts"
    assert schedule.cron_schedule == "30 3 * * *" and schedule.execution_timezone == "UTC"
    job = defs.resolve_job_def("verify_marts")
    assert [n.name for n in job.nodes_in_topological_order] == ["incremental_marts_equal_a_full_refresh"]


def test_every_mart_is_an_asset_and_is_verified():
    from orchestration.verify_marts import MARTS

    assets = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {f"marts/{table}" for table in MARTS} <= assets
    assert "intermediate/int_events_sessionized" in assets
