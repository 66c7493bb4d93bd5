"""Abuse a client could send, by mistake or not: never a 5xx, never an unbounded cost."""

import dataclasses

import pytest
from litestar.testing import TestClient

from ingest_api.app import create_app


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_json_is_refused_or_kept_but_never_a_500(settings, tenant, depth):
    body = '{"eventType": "x", "props": {"a": ' + "[" * depth + "]" * depth + "}}"
    with TestClient(app=create_app(dataclasses.replace(settings, max_event_bytes=1_000_000))) as client:
        response = client.post(
            "/v1/events",
            content=body,
            headers={"Authorization": f"Bearer {tenant[1]}", "Content-Type": "application/json"},
        )
    assert response.status_code in (202, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]


def test_a_tenant_over_its_rate_gets_429_with_retry_after_and_others_are_not_slowed(settings, conn, tenant):
    from tributary import tenants

    other = tenants.create(conn, f"other-{tenant[0].name}")
    limited = dataclasses.replace(settings, rate_limit_per_s=1.0, rate_limit_burst=5)
    with TestClient(app=create_app(limited)) as client:
        batch = {"events": [{"eventType": "page_viewed"} for _ in range(5)]}
        mine = {"Authorization": f"Bearer {tenant[1]}"}
        assert client.post("/v1/events/batch", json=batch, headers=mine).status_code == 202
        over = client.post("/v1/events", json={"eventType": "page_viewed"}, headers=mine)
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) >= 1
        assert "rate" in over.json()["error"]
        theirs = client.post(
            "/v1/events", json={"eventType": "page_viewed"}, headers={"Authorization": f"Bearer {other[1]}"}
        )
        assert theirs.status_code == 202
    landed = conn.execute("select count(*) from landing.events_raw where tenant_id = %s", (tenant[0].id,)).fetchone()[0]
    assert landed == 5  # the refused event was not stored
