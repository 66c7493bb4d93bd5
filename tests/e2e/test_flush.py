"""POST /v1/admin/flush starts processing through a real Dagster, without waiting for the sensor."""

import dataclasses
import time

import psycopg
import pytest
from litestar.testing import TestClient

from ingest_api.app import create_app
from orchestration.batches import process_backlog
from orchestration.processing.validate import Limits
from tributary import tracking_plan
from tributary.services import free_port, start_dagster


@pytest.fixture
def dagster(settings, database_url, monkeypatch):
    # A sensor that would not tick for an hour: only the flush can start the run.
    monkeypatch.setenv("TRIBUTARY_SENSOR_INTERVAL_SECONDS", "3600")
    with psycopg.connect(database_url) as worker:  # nothing waiting when the sensor first looks
        list(process_backlog(worker, tracking_plan.load(), Limits(), 10_000))
    service = start_dagster(settings, "127.0.0.1", free_port(), log=settings.home / "e2e-dagster.log")
    yield service
    service.stop()


def test_flush_processes_the_backlog_and_builds_the_marts_now(dagster, settings, tenant, conn):
    app = create_app(dataclasses.replace(settings, dagster_url=dagster.url))
    with TestClient(app=app) as client:
        posted = client.post(
            "/v1/events",
            headers={"Authorization": f"Bearer {tenant[1]}"},
            json={
                "eventType": "page_viewed",
                "anonymousId": "visitor-flush",
                "context": {"page": {"url": "https://e.x/f"}},
            },
        )
        assert posted.status_code == 202
        flushed = client.post("/v1/admin/flush", headers={"Authorization": "Bearer test-admin-token"})
    assert flushed.status_code == 202, flushed.text
    assert flushed.json()["started"] is True and flushed.json()["runId"]

    deadline = time.monotonic() + 180
    sessions: list = []
    while time.monotonic() < deadline and not sessions:
        time.sleep(1)
        if conn.execute("select to_regclass('marts.fct_sessions')").fetchone()[0]:
            sessions = conn.execute(
                "select landing_page from marts.fct_sessions where anonymous_id = 'visitor-flush'"
            ).fetchall()
    assert sessions == [("/f",)]
    run_id = conn.execute(
        "select run_id from ops.batches b join warehouse.events e on e.batch_id = b.id where e.tenant_id = %s",
        (tenant[0].id,),
    ).fetchone()[0]
    assert run_id == flushed.json()["runId"]
