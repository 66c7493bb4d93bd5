"""The ingest API against the real embedded PostgreSQL: what lands, what is refused, and why."""

from __future__ import annotations

import base64
import dataclasses
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from litestar.testing import TestClient

from ingest_api.app import create_app
from tributary.settings import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def auth(tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant[1]}"}


def landed(conn: psycopg.Connection, tenant) -> list[dict]:
    rows = conn.execute(
        "select payload, received_at, wire_format, client_ip, user_agent"
        " from landing.events_raw where tenant_id = %s order by id",
        (tenant[0].id,),
    ).fetchall()
    names = ("payload", "received_at", "wire_format", "client_ip", "user_agent")
    return [dict(zip(names, row, strict=True)) for row in rows]


def test_a_posted_event_lands_with_its_payload_exactly_as_sent(client, auth, conn, tenant):
    event = {
        "eventType": "asset_downloaded",
        "eventId": str(uuid.uuid4()),
        "entityType": "asset",
        "entityId": "clx3k2j9b0000qz8r4t6y1u2v",
        "props": {"format": "png", "price": 12.5, "tags": ["a\tb", "back\\slash", "new\nline"]},
        "appVersion": "3.1.0",
        "experiment": {"arm": "b"},
    }

    response = client.post("/v1/events", json=event, headers={**auth, "User-Agent": "tests/1.0"})

    assert response.status_code == 202
    assert response.json() == {"eventId": event["eventId"], "tracked": True}
    [row] = landed(conn, tenant)
    assert row["payload"] == event
    assert row["wire_format"] == "native"
    assert row["user_agent"] == "tests/1.0"


def test_an_event_without_an_event_id_gets_a_server_one_in_the_answer_and_the_payload(client, auth, conn, tenant):
    response = client.post("/v1/events", json={"eventType": "page_viewed", "props": {"path": "/"}}, headers=auth)

    assert response.status_code == 202
    event_id = response.json()["eventId"]
    assert uuid.UUID(event_id).version == 4
    [row] = landed(conn, tenant)
    assert row["payload"] == {"eventType": "page_viewed", "props": {"path": "/"}, "eventId": event_id}


def test_a_batch_with_invalid_events_lands_only_the_valid_ones(client, auth, conn, tenant):
    given_id = str(uuid.uuid4())
    events = [
        {"eventType": "page_viewed", "eventId": given_id},
        {"eventType": 42},
        {"eventType": "asset_viewed", "entityId": "a1"},
        "not an object",
        {"eventType": "job_created", "entityType": "job", "entityId": "j1", "extra": True},
    ]

    response = client.post("/v1/events/batch", json={"events": events}, headers=auth)

    assert response.status_code == 202
    answer = response.json()
    assert (answer["total"], answer["successful"], answer["failed"]) == (5, 2, 3)
    assert [(r["index"], r["status"]) for r in answer["results"]] == [
        (0, "fulfilled"),
        (1, "rejected"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "fulfilled"),
    ]
    assert answer["results"][0] == {
        "index": 0,
        "status": "fulfilled",
        "data": {"eventId": given_id, "tracked": True},
        "error": None,
    }
    assert answer["results"][1]["data"] is None and answer["results"][1]["error"].startswith("eventType: ")
    assert answer["results"][2]["error"] == "entityType: is required when entityId is given"
    rows = landed(conn, tenant)
    assert [row["payload"] for row in rows] == [
        events[0],
        {**events[4], "eventId": answer["results"][4]["data"]["eventId"]},
    ]
    # One COPY in one transaction: now() is the transaction's start, shared by every row.
    assert len({row["received_at"] for row in rows}) == 1


def test_a_batch_lands_an_event_postgres_refuses_alone_and_the_rest_with_it(client, auth, conn, tenant):
    body = b'{"events": [{"eventType": "a"}, {"eventType": "b", "huge": 1e131072}, {"eventType": "c"}]}'

    response = client.post("/v1/events/batch", content=body, headers={**auth, "Content-Type": "application/json"})

    assert response.status_code == 202
    assert [r["status"] for r in response.json()["results"]] == ["fulfilled", "rejected", "fulfilled"]
    assert [row["payload"]["eventType"] for row in landed(conn, tenant)] == ["a", "c"]


@pytest.mark.parametrize(
    "body", [[], {"events": []}, {"events": {"eventType": "x"}}, {"batch": [{"eventType": "x"}]}, "x"]
)
def test_a_body_that_is_not_a_list_of_events_is_a_400(client, auth, body):
    response = client.post("/v1/events/batch", json=body, headers=auth)

    assert response.status_code == 400
    assert "events" in response.json()["error"]


def test_a_batch_over_the_event_limit_is_a_413(settings, auth):
    with TestClient(app=create_app(dataclasses.replace(settings, max_batch_events=3))) as small:
        response = small.post("/v1/events/batch", json={"events": [{"eventType": "x"}] * 4}, headers=auth)

    assert response.status_code == 413
    assert "limit of 3" in response.json()["error"]


def test_a_request_without_a_write_key_is_a_401_that_says_how_to_send_one(client, conn, tenant):
    response = client.post("/v1/events", json={"eventType": "x"})

    assert response.status_code == 401
    assert "Authorization: Bearer <key>" in response.json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert landed(conn, tenant) == []


def test_an_unknown_key_is_a_401(client):
    response = client.post("/v1/events", json={"eventType": "x"}, headers={"Authorization": "Bearer trb_not-a-key"})

    assert response.status_code == 401
    assert "unknown or revoked" in response.json()["error"]


def test_a_revoked_key_is_a_401(client, conn, tenant):
    conn.execute("update ops.write_keys set revoked_at = now() where tenant_id = %s", (tenant[0].id,))

    response = client.post("/v1/events", json={"eventType": "x"}, headers={"Authorization": f"Bearer {tenant[1]}"})

    assert response.status_code == 401


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("way", ["bearer", "basic with colon", "basic without colon", "query"])
def test_the_write_key_works_as_bearer_as_basic_with_or_without_colon_and_as_query(client, conn, tenant, way):
    key = tenant[1]
    headers, params = {
        "bearer": ({"Authorization": f"Bearer {key}"}, {}),
        "basic with colon": ({"Authorization": _basic(f"{key}:")}, {}),
        "basic without colon": ({"Authorization": _basic(key)}, {}),
        "query": ({}, {"writeKey": key}),
    }[way]

    response = client.post("/v1/events", json={"eventType": "x"}, headers=headers, params=params)

    assert response.status_code == 202
    assert len(landed(conn, tenant)) == 1


def test_a_beacon_posts_json_as_text_plain_with_the_key_in_the_query(client, conn, tenant):
    response = client.post(
        "/v1/events",
        params={"writeKey": tenant[1]},
        content=b'{"eventType": "page_left"}',
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )

    assert response.status_code == 202
    assert landed(conn, tenant)[0]["payload"]["eventType"] == "page_left"


def test_an_event_over_the_size_limit_is_a_413(client, auth, conn, tenant):
    response = client.post("/v1/events", json={"eventType": "x", "props": {"blob": "a" * 40_000}}, headers=auth)

    assert response.status_code == 413
    assert "32768" in response.json()["error"]
    assert landed(conn, tenant) == []


def test_a_streamed_body_without_content_length_is_cut_off_at_the_limit(client, auth):
    chunks = iter([b'{"eventType": "x", "blob": "', b"a" * 20_000, b"a" * 20_000, b'"}'])

    response = client.post("/v1/events", content=chunks, headers={**auth, "Content-Type": "application/json"})

    assert response.status_code == 413


def test_a_batch_over_the_byte_limit_is_a_413(settings, auth):
    with TestClient(app=create_app(dataclasses.replace(settings, max_batch_bytes=1000))) as small:
        response = small.post("/v1/events/batch", json={"events": [{"eventType": "x" * 50}] * 30}, headers=auth)

    assert response.status_code == 413


@pytest.mark.parametrize(
    "content_type", ["application/xml", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_content_type_other_than_json_or_text_plain_is_a_415(client, auth, content_type):
    response = client.post("/v1/events", content=b'{"eventType": "x"}', headers={**auth, "Content-Type": content_type})

    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"eventType": "x",', None),
        (b'{"eventType": "caf\xe9"}', None),
        (b"", None),
        (b'["eventType", "x"]', None),
        (b'"page_viewed"', None),
        (b'{"props": {}}', "eventType"),
        (b'{"eventType": "x", "sessionId": "abc"}', "sessionId"),
        (b'{"eventType": "x", "source": "fax"}', "source"),
        (b'{"eventType": "x", "entityId": "e1"}', "entityType"),
        (b'{"eventType": "x", "unknown": "nul \\u0000 byte"}', None),
    ],
)
def test_what_is_not_an_event_is_a_400_with_the_field_at_fault(client, auth, conn, tenant, body, field):
    response = client.post("/v1/events", content=body, headers={**auth, "Content-Type": "application/json"})

    assert response.status_code == 400
    answer = response.json()
    assert set(answer) == {"error", "fields"} and answer["error"]
    if field:
        assert [error["field"] for error in answer["fields"]] == [field]
    assert landed(conn, tenant) == []


def test_unknown_routes_answer_in_the_same_error_shape(client):
    response = client.get("/v1/nothing-here")

    assert response.status_code == 404
    assert set(response.json()) == {"error", "fields"}


def test_the_openapi_document_lists_the_routes_with_their_bodies(client):
    document = client.get("/schema/openapi.json").json()

    operations = {path: sorted(item) for path, item in document["paths"].items()}
    assert operations == {
        "/v1/events": ["post"],
        "/v1/events/batch": ["post"],
        "/healthz": ["get"],
        "/readyz": ["get"],
        "/v1/admin/stats": ["get"],
        "/v1/admin/flush": ["post"],
        **{f"/v1/{call}": ["post"] for call in ("track", "page", "screen", "identify", "group", "alias", "batch")},
    }
    track = document["paths"]["/v1/events"]["post"]
    assert track["operationId"] == "trackEvent"
    assert track["description"]
    assert track["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EventIn"}
    error_schema = track["responses"]["400"]["content"]["application/json"]["schema"]
    assert error_schema == {"$ref": "#/components/schemas/ErrorBody"}
    schemas = set(document["components"]["schemas"])
    assert {"EventIn", "EventBatchIn", "Accepted", "BatchAccepted", "ErrorBody"} <= schemas
    assert all(op.get("operationId") for item in document["paths"].values() for op in item.values())


def test_healthz_and_readyz_answer_ok_while_the_database_is_up(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})


def test_a_cors_preflight_on_events_is_answered_for_any_origin(client):
    response = client.options(
        "/v1/events",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )

    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_an_error_answer_carries_cors_headers_so_browsers_can_read_it(client):
    response = client.post("/v1/events", json={"eventType": "x"}, headers={"Origin": "https://shop.example"})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_an_unreachable_database_is_a_quick_503_with_retry_after_and_never_a_500(settings, tmp_path):
    nowhere = dataclasses.replace(settings, database_url=f"postgresql://postgres@/tributary?host={tmp_path}&port=1")
    with TestClient(app=create_app(nowhere)) as down:
        started = time.monotonic()
        response = down.post("/v1/events", json={"eventType": "x"}, headers={"Authorization": "Bearer trb_any"})
        elapsed = time.monotonic() - started

        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "retry" in response.json()["error"]
        assert elapsed < 5
        assert down.get("/readyz").status_code == 503
        assert down.get("/healthz").status_code == 200


def test_a_full_pool_answers_503_instead_of_making_the_client_wait(settings, auth, conn, tenant):
    one_connection = dataclasses.replace(settings, db_pool_size=1)
    with TestClient(app=create_app(one_connection)) as client, ThreadPoolExecutor(1) as background:
        with conn.transaction():
            conn.execute("lock table landing.events_raw in access exclusive mode")
            stuck = background.submit(client.post, "/v1/events", json={"eventType": "first"}, headers=auth)
            # pg_locks, not pg_stat_activity: the latter is a snapshot taken once per transaction.
            _wait_for(
                lambda: (
                    conn.execute(
                        "select count(*) from pg_locks where relation = 'landing.events_raw'::regclass and not granted"
                    ).fetchone()[0]
                    == 1
                )
            )

            response = client.post("/v1/events", json={"eventType": "second"}, headers=auth)

            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
        assert stuck.result(timeout=10).status_code == 202
    assert [row["payload"]["eventType"] for row in landed(conn, tenant)] == ["first"]


def test_the_api_answers_503_while_the_database_is_down_and_serves_again_when_it_returns(stoppable_server):
    own, server, key = stoppable_server
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(app=create_app(own)) as client:
        assert client.post("/v1/events", json={"eventType": "before"}, headers=headers).status_code == 202

        server.stop()
        response = client.post("/v1/events", json={"eventType": "during"}, headers=headers)
        assert response.status_code == 503
        assert client.get("/readyz").status_code == 503

        server.start()
        _wait_for(lambda: client.post("/v1/events", json={"eventType": "after"}, headers=headers).is_success)
        assert client.get("/readyz").status_code == 200
    with psycopg.connect(server.url(), autocommit=True) as admin:
        rows = admin.execute("select payload->>'eventType' from landing.events_raw order by id").fetchall()
    landed_types = [row[0] for row in rows]
    assert landed_types == ["before", "after"]


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
