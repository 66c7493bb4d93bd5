"""Admin routes: the admin token, the stats a person on call reads, and CORS kept closed."""

import json
import uuid
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest
from litestar.testing import TestClient

from ingest_api.app import create_app
from orchestration.batches import process_backlog
from orchestration.processing.validate import Limits
from tributary import tracking_plan
from tributary.settings import Settings

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def land(conn: psycopg.Connection, tenant_id, payloads: list[dict]) -> None:
    with conn.cursor().copy("copy landing.events_raw (tenant_id, wire_format, payload) from stdin") as copy:
        for payload in payloads:
            copy.write_row((tenant_id, "native", json.dumps(payload)))


def event(event_id: str | None = None, **extra) -> dict:
    return {"eventType": "page_viewed", "eventId": event_id or str(uuid.uuid4()), **extra}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}])
def test_admin_routes_refuse_without_the_admin_token(client, headers):
    for method, path in (("GET", "/v1/admin/stats"), ("POST", "/v1/admin/flush")):
        response = client.request(method, path, headers=headers)
        assert response.status_code == 403, (method, path)
        assert "admin token" in response.json()["error"]


def test_a_write_key_is_not_an_admin_token(client, tenant):
    assert client.get("/v1/admin/stats", headers={"Authorization": f"Bearer {tenant[1]}"}).status_code == 403


def test_stats_show_each_tenants_backlog_and_rates(client, conn, database_url, tenant):
    with psycopg.connect(database_url) as worker:  # whatever earlier tests left
        list(process_backlog(worker, tracking_plan.load(), Limits(), 10_000))
    repeated = str(uuid.uuid4())
    land(conn, tenant[0].id, [event(repeated), event(repeated), event(occurredAt="2001-01-01T00:00:00Z"), event()])
    with psycopg.connect(database_url) as worker:
        list(process_backlog(worker, tracking_plan.load(), Limits(), 10_000))
    land(conn, tenant[0].id, [event(), event()])  # waiting

    response = client.get("/v1/admin/stats", headers=ADMIN)

    assert response.status_code == 200
    body = response.json()
    [mine] = [t for t in body["tenants"] if t["tenantId"] == str(tenant[0].id)]
    assert (mine["landed"], mine["backlog"], mine["events"], mine["rejects"], mine["duplicates"]) == (6, 2, 2, 1, 1)
    assert mine["rejectRate"] == 0.25 and mine["duplicateRate"] == 0.25
    assert 0 <= mine["oldestWaitingSeconds"] < 60
    assert datetime.fromisoformat(mine["lastProcessedAt"])
    assert body["lastBatch"]["claimed"] >= 4


def test_flush_says_so_when_dagster_is_not_running(settings, tenant):
    import dataclasses

    elsewhere = dataclasses.replace(settings, dagster_url="http://127.0.0.1:9")  # nothing listens on 9
    with TestClient(app=create_app(elsewhere)) as client:
        response = client.post("/v1/admin/flush", headers=ADMIN)
    assert response.status_code == 503
    assert "Dagster is not reachable" in response.json()["error"]
    assert response.headers["retry-after"] == "1"


def test_cors_is_open_on_event_routes_and_closed_on_admin_routes(client):
    preflight = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    events = client.options("/v1/events", headers=preflight)
    assert events.status_code in (200, 204)
    assert events.headers["access-control-allow-origin"] == "*"

    admin = client.options("/v1/admin/stats", headers=preflight)
    assert "access-control-allow-origin" not in admin.headers
    stats = client.get("/v1/admin/stats", headers={**ADMIN, "Origin": "https://evil.example"})
    assert stats.status_code == 200 and "access-control-allow-origin" not in stats.headers
