"""The Segment-compatible routes against the real embedded PostgreSQL: what lands, what is refused."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import os
import time
import tracemalloc
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from litestar.testing import TestClient

from ingest_api.app import create_app
from orchestration.batches import process_backlog
from orchestration.processing.validate import Limits
from tributary import tracking_plan
from tributary.settings import Settings

SINGLE_ROUTES = ["track", "page", "screen", "identify", "group", "alias"]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def auth(tenant) -> dict[str, str]:
    return {"Authorization": _basic(f"{tenant[1]}:")}


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def landed(conn: psycopg.Connection, tenant) -> list[dict]:
    rows = conn.execute(
        "select payload, wire_format from landing.events_raw where tenant_id = %s order by id", (tenant[0].id,)
    ).fetchall()
    assert all(wire_format == "segment" for _, wire_format in rows)
    return [payload for payload, _ in rows]


def _json_gzip(body: object) -> bytes:
    return gzip.compress(json.dumps(body).encode())


def _gzip_bomb(mib: int) -> bytes:
    """`mib` MiB of zeros as gzip (about 1 KiB a MiB), made without holding the zeros whole."""
    compressor = zlib.compressobj(9, wbits=31)
    zeros = bytes(1024 * 1024)
    return b"".join(compressor.compress(zeros) for _ in range(mib)) + compressor.flush()


@pytest.mark.parametrize("route", SINGLE_ROUTES)
def test_each_single_message_route_lands_its_message_with_the_type_it_implies(client, auth, conn, tenant, route):
    message = {"userId": "u1", "event": "Order Completed", "properties": {"total": 12.5}, "extra": [1, "two"]}

    response = client.post(f"/v1/{route}", json=message, headers=auth)

    assert (response.status_code, response.json()) == (200, {"success": True})
    [payload] = landed(conn, tenant)
    assert uuid.UUID(payload.pop("messageId")).version == 4
    assert payload == {**message, "type": route}


def test_a_message_keeps_its_own_message_id_type_and_sent_at(client, auth, conn, tenant):
    message = {
        "type": "track",
        "event": "Signed Up",
        "messageId": "ajs-next-1700000000000-abc",
        "sentAt": "2026-01-01T00:00:01.000Z",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "anonymousId": "a1",
    }

    assert client.post("/v1/track", json=message, headers=auth).status_code == 200

    assert landed(conn, tenant) == [message]


@pytest.mark.parametrize("route", ["page", "identify"])
def test_a_single_message_whose_type_contradicts_its_route_is_a_400(client, auth, conn, tenant, route):
    response = client.post(f"/v1/{route}", json={"type": "track", "event": "x", "userId": "u1"}, headers=auth)

    assert response.status_code == 400
    assert f"/v1/{route}" in response.json()["error"]
    assert [field["field"] for field in response.json()["fields"]] == ["type"]
    assert landed(conn, tenant) == []


def test_a_batch_lands_every_message_in_one_request_with_the_batch_sent_at_copied(client, auth, conn, tenant):
    own_id = str(uuid.uuid4())
    body = {
        "batch": [
            {"type": "track", "event": "A", "userId": "u1", "messageId": own_id},
            {"type": "page", "name": "Home", "anonymousId": "a1", "sentAt": "2026-01-01T00:00:09Z"},
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "sentAt": None},
        ],
        "sentAt": "2026-01-01T00:00:10Z",
    }

    response = client.post("/v1/batch", json=body, headers=auth)

    assert (response.status_code, response.json()) == (200, {"success": True})
    first, second, third = landed(conn, tenant)
    assert first["messageId"] == own_id
    assert uuid.UUID(second["messageId"]) and uuid.UUID(third["messageId"])
    assert [m["sentAt"] for m in (first, second, third)] == [
        "2026-01-01T00:00:10Z",
        "2026-01-01T00:00:09Z",  # its own wins
        "2026-01-01T00:00:10Z",  # null counts as absent
    ]
    assert [m["type"] for m in (first, second, third)] == ["track", "page", "identify"]


def test_the_batch_context_fills_in_what_each_message_context_lacks(client, auth, conn, tenant):
    body = {
        "batch": [
            {"type": "track", "event": "A", "userId": "u1", "context": {"locale": "fr-FR", "ip": "10.0.0.1"}},
            {"type": "track", "event": "B", "userId": "u1"},
        ],
        "context": {"locale": "de-DE", "userAgent": "Mozilla/5.0 batch"},
    }

    assert client.post("/v1/batch", json=body, headers=auth).status_code == 200

    first, second = landed(conn, tenant)
    assert first["context"] == {"locale": "fr-FR", "ip": "10.0.0.1", "userAgent": "Mozilla/5.0 batch"}
    assert second["context"] == {"locale": "de-DE", "userAgent": "Mozilla/5.0 batch"}


def test_what_sdks_vary_on_lands_for_processing_to_judge(client, auth, conn, tenant):
    body = {
        "batch": [
            {"type": "track", "event": "A", "userId": 42, "messageId": 7},
            {"type": "track", "userId": "u1"},
            {"type": "track", "event": "B", "userId": "u1", "timestamp": "yesterday"},
            {"type": "Unknown", "userId": "u1"},
            {"event": "C"},
        ]
    }

    assert client.post("/v1/batch", json=body, headers=auth).status_code == 200

    assert len(landed(conn, tenant)) == 5


@pytest.mark.parametrize("way", ["bearer", "basic with colon", "basic without colon", "query"])
def test_the_write_key_works_as_bearer_as_basic_with_or_without_colon_and_as_query(client, conn, tenant, way):
    key = tenant[1]
    headers, params = {
        "bearer": ({"Authorization": f"Bearer {key}"}, {}),
        "basic with colon": ({"Authorization": _basic(f"{key}:")}, {}),
        "basic without colon": ({"Authorization": _basic(key)}, {}),
        "query": ({}, {"writeKey": key}),
    }[way]

    response = client.post(
        "/v1/batch", json={"batch": [{"type": "track", "event": "x"}]}, headers=headers, params=params
    )

    assert response.status_code == 200
    assert len(landed(conn, tenant)) == 1


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/batch", lambda key: {"batch": [{"type": "track", "event": "x", "userId": "u1"}], "writeKey": key}),
        ("/v1/batch", lambda key: {"batch": [{"type": "track", "event": "x", "userId": "u1", "writeKey": key}]}),
        ("/v1/track", lambda key: {"event": "x", "userId": "u1", "writeKey": key}),
    ],
    ids=["batch level", "in the message", "single route"],
)
def test_a_write_key_in_the_body_authenticates_and_is_never_stored(client, conn, tenant, route, body):
    key = tenant[1]

    response = client.post(route, json=body(key))

    assert response.status_code == 200
    [payload] = landed(conn, tenant)
    assert "writeKey" not in payload
    stored_text = conn.execute("select payload::text from landing.events_raw where tenant_id = %s", (tenant[0].id,))
    assert key not in stored_text.fetchone()[0]


def test_a_write_key_in_a_message_is_removed_even_when_the_header_carries_the_key(client, auth, conn, tenant):
    body = {"batch": [{"type": "track", "event": "x", "writeKey": "someone-elses-key"}], "writeKey": tenant[1]}

    assert client.post("/v1/batch", json=body, headers=auth).status_code == 200

    [payload] = landed(conn, tenant)
    assert "writeKey" not in payload


def test_a_request_without_any_write_key_is_a_401_that_mentions_the_body(client, conn, tenant):
    response = client.post("/v1/batch", json={"batch": [{"type": "track", "event": "x"}]})

    assert response.status_code == 401
    assert '"writeKey" in the JSON body' in response.json()["error"]


def test_an_unknown_write_key_in_the_body_is_a_401(client):
    response = client.post("/v1/track", json={"event": "x", "writeKey": "trb_not-a-key"})

    assert response.status_code == 401
    assert "unknown or revoked" in response.json()["error"]


def test_messages_carrying_different_write_keys_are_a_400(client, conn, tenant):
    body = {"batch": [{"type": "track", "event": "x", "writeKey": tenant[1]}, {"type": "track", "writeKey": "other"}]}

    response = client.post("/v1/batch", json=body)

    assert response.status_code == 400
    assert landed(conn, tenant) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"batch": [', None),
        (b'{"batch": [{"type": "track", "event": "caf\xe9"}]}', None),
        (b"", None),
        (b'[{"type": "track"}]', None),
        (b'{"events": [{"type": "track"}]}', "batch"),
        (b'{"batch": {"type": "track"}}', "batch"),
        (b'{"batch": []}', "batch"),
        (b'{"batch": [{"type": "track"}, "track", {"type": "page"}]}', "batch.1"),
        (b'{"batch": [{"type": "track"}, null]}', "batch.1"),
    ],
)
def test_what_is_not_a_batch_of_messages_is_a_400_and_nothing_lands(client, auth, conn, tenant, body, field):
    response = client.post("/v1/batch", content=body, headers={**auth, "Content-Type": "application/json"})

    assert response.status_code == 400
    answer = response.json()
    assert set(answer) == {"error", "fields"} and answer["error"]
    if field:
        assert [error["field"] for error in answer["fields"]] == [field]
    assert landed(conn, tenant) == []


@pytest.mark.parametrize("body", [b'"track"', b"[]", b"not json", b"null"])
def test_a_single_route_body_that_is_not_an_object_is_a_400(client, auth, body):
    response = client.post("/v1/track", content=body, headers={**auth, "Content-Type": "application/json"})

    assert response.status_code == 400


def test_a_message_postgres_cannot_store_fails_its_batch_with_its_index(client, auth, conn, tenant):
    body = b'{"batch": [{"type": "track", "event": "ok"}, {"type": "track", "event": "nul \\u0000 byte"}]}'

    response = client.post("/v1/batch", content=body, headers={**auth, "Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["fields"][0]["field"] == "batch.1"
    assert landed(conn, tenant) == []


def test_a_batch_over_2500_messages_is_a_413(client, auth, conn, tenant):
    response = client.post("/v1/batch", json={"batch": [{"type": "track", "event": "x"}] * 2501}, headers=auth)

    assert response.status_code == 413
    assert "limit of 2500" in response.json()["error"]
    assert landed(conn, tenant) == []


def test_a_batch_of_exactly_2500_messages_lands(client, auth, conn, tenant):
    response = client.post("/v1/batch", json={"batch": [{"type": "track", "event": "x"}] * 2500}, headers=auth)

    assert response.status_code == 200
    assert conn.execute("select count(*) from landing.events_raw where tenant_id = %s", (tenant[0].id,)).fetchone() == (
        2500,
    )


def test_a_message_over_32_kib_is_a_413_alone_or_in_a_batch(client, auth, conn, tenant):
    big = {"type": "track", "event": "x", "properties": {"blob": "a" * 33_000}}

    alone = client.post("/v1/track", json=big, headers=auth)
    batched = client.post("/v1/batch", json={"batch": [{"type": "track", "event": "y"}, big]}, headers=auth)

    assert (alone.status_code, batched.status_code) == (413, 413)
    assert batched.json()["fields"][0]["field"] == "batch.1"
    assert landed(conn, tenant) == []


def test_a_batch_over_the_byte_limit_is_a_413(settings, auth):
    with TestClient(app=create_app(dataclasses.replace(settings, segment_max_batch_bytes=1000))) as small:
        response = small.post("/v1/batch", json={"batch": [{"type": "track", "event": "x" * 50}] * 30}, headers=auth)

    assert response.status_code == 413


def test_the_rate_limit_counts_the_messages_of_a_batch(settings, auth, conn, tenant):
    with TestClient(app=create_app(dataclasses.replace(settings, rate_limit_burst=5, rate_limit_per_s=0.001))) as app:
        first = app.post("/v1/batch", json={"batch": [{"type": "track", "event": "x"}] * 3}, headers=auth)
        second = app.post("/v1/batch", json={"batch": [{"type": "track", "event": "y"}] * 3}, headers=auth)

    assert (first.status_code, second.status_code) == (200, 429)
    assert int(second.headers["Retry-After"]) >= 1
    assert [payload["event"] for payload in landed(conn, tenant)] == ["x"] * 3


def test_a_gzipped_batch_lands_as_if_it_were_sent_plain(client, auth, conn, tenant):
    body = {"batch": [{"type": "track", "event": "Gzipped", "userId": "u1"}], "sentAt": "2026-01-01T00:00:00Z"}

    response = client.post(
        "/v1/batch",
        content=_json_gzip(body),
        headers={**auth, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )

    assert response.status_code == 200
    [payload] = landed(conn, tenant)
    assert (payload["event"], payload["sentAt"]) == ("Gzipped", "2026-01-01T00:00:00Z")


def test_a_gzip_body_of_several_members_is_read_whole(client, auth, conn, tenant):
    text = json.dumps({"batch": [{"type": "track", "event": "Two members"}]}).encode()
    body = gzip.compress(text[:10]) + gzip.compress(text[10:])

    response = client.post("/v1/batch", content=body, headers={**auth, "Content-Encoding": "gzip"})

    assert response.status_code == 200
    assert landed(conn, tenant)[0]["event"] == "Two members"


def test_the_native_routes_accept_gzip_too(client, tenant, conn):
    headers = {"Authorization": f"Bearer {tenant[1]}", "Content-Encoding": "gzip", "Content-Type": "application/json"}

    single = client.post("/v1/events", content=_json_gzip({"eventType": "page_viewed"}), headers=headers)
    batch = client.post("/v1/events/batch", content=_json_gzip({"events": [{"eventType": "x"}]}), headers=headers)

    assert (single.status_code, batch.status_code) == (202, 202)
    assert conn.execute(
        "select count(*) from landing.events_raw where tenant_id = %s and wire_format = 'native'", (tenant[0].id,)
    ).fetchone() == (2,)


def test_a_native_event_that_inflates_past_its_limit_is_a_413(client, auth):
    body = _json_gzip({"eventType": "x", "props": {"blob": "a" * 40_000}})  # ~200 bytes compressed

    response = client.post("/v1/events", content=body, headers={**auth, "Content-Encoding": "gzip"})

    assert response.status_code == 413
    assert "inflates to over the limit of 32768" in response.json()["error"]


def test_a_gzip_bomb_is_refused_quickly_without_being_inflated_in_memory(client, auth, conn, tenant):
    bomb = _gzip_bomb(100)  # ~100 KiB on the wire
    assert len(bomb) < 200_000

    tracemalloc.start()
    started = time.perf_counter()
    try:
        response = client.post("/v1/batch", content=bomb, headers={**auth, "Content-Encoding": "gzip"})
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 413
    assert "inflates to over the limit" in response.json()["error"]
    assert seconds < 2.0
    # The limit is 4 MiB inflated; 100 MiB would show here. Everything else the request
    # allocates (the compressed body, the test client) stays far below.
    assert peak < 16 * 1024 * 1024
    assert landed(conn, tenant) == []


def test_a_gzip_body_over_the_compressed_limit_is_a_413(settings, auth):
    noise = os.urandom(4000).hex()  # does not compress
    body = _json_gzip({"batch": [{"type": "track", "event": "x", "properties": {"noise": noise}}]})
    with TestClient(app=create_app(dataclasses.replace(settings, max_compressed_bytes=2000))) as small:
        declared = small.post("/v1/batch", content=body, headers={**auth, "Content-Encoding": "gzip"})
        streamed = small.post(
            "/v1/batch", content=iter([body[:1500], body[1500:]]), headers={**auth, "Content-Encoding": "gzip"}
        )

    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert "compressed bytes" in declared.json()["error"]
    assert "TRIBUTARY_MAX_COMPRESSED_BYTES" in streamed.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        b"this is not gzip at all",
        gzip.compress(b'{"batch": [{"type": "track"}]}')[:-6],  # cut short
        gzip.compress(b'{"batch": [{"type": "track"}]}')[:-8] + b"\0\0\0\0" + gzip.compress(b"{}")[-4:],  # bad CRC
        gzip.compress(b'{"batch": [{"type": "track"}]}') + b"trailing junk",
    ],
    ids=["not gzip", "truncated", "bad checksum", "trailing junk"],
)
def test_a_corrupt_gzip_body_is_a_400(client, auth, conn, tenant, body):
    response = client.post("/v1/batch", content=body, headers={**auth, "Content-Encoding": "gzip"})

    assert response.status_code == 400
    assert "gzip" in response.json()["error"]
    assert landed(conn, tenant) == []


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, br", "compress"])
def test_an_unsupported_content_encoding_is_a_415(client, auth, encoding):
    response = client.post("/v1/batch", content=b'{"batch": []}', headers={**auth, "Content-Encoding": encoding})

    assert response.status_code == 415
    assert "Content-Encoding" in response.json()["error"]


def test_identity_content_encoding_is_the_plain_body(client, auth, conn, tenant):
    response = client.post("/v1/track", content=b'{"event": "plain"}', headers={**auth, "Content-Encoding": "identity"})

    assert response.status_code == 200


def test_the_openapi_document_lists_the_segment_routes(client):
    document = client.get("/schema/openapi.json").json()

    operations = {path: item["post"]["operationId"] for path, item in document["paths"].items() if "post" in item}
    assert {path: operations[path] for path in operations if not path.startswith(("/v1/events", "/v1/admin"))} == {
        "/v1/track": "segmentTrack",
        "/v1/page": "segmentPage",
        "/v1/screen": "segmentScreen",
        "/v1/identify": "segmentIdentify",
        "/v1/group": "segmentGroup",
        "/v1/alias": "segmentAlias",
        "/v1/batch": "segmentBatch",
    }
    batch = document["paths"]["/v1/batch"]["post"]
    assert batch["description"]
    assert batch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SegmentBatch"
    }
    assert batch["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SegmentAccepted"
    }


def test_segment_messages_land_in_the_warehouse_mapped_onto_the_canonical_event(client, auth, database_url, tenant):
    """Both SDK families' shapes: a browser's (context.page) and a server's (a page call's
    properties and name, batch-level sentAt, RudderStack's traits in context.traits)."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    browser_page, server_page, track, identify, alias = (str(uuid.uuid4()) for _ in range(5))
    body = {
        "batch": [
            {
                "type": "page",
                "messageId": browser_page,
                "anonymousId": "anon-1",
                "name": "Pricing",
                "properties": {"plan": "pro"},
                "timestamp": at.isoformat(),
                "context": {
                    "page": {
                        "url": "https://shop.example/pricing?utm_source=news",
                        "path": "/pricing",
                        "referrer": "https://www.google.com/",
                        "title": "Pricing | Shop",
                    },
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
                    "locale": "de-DE",
                    "campaign": {"source": "news", "medium": "email", "name": "spring", "term": "t", "content": "c"},
                },
            },
            {
                "type": "page",
                "messageId": server_page,
                "userId": 42,
                "name": "Docs",
                "properties": {"url": "https://shop.example/docs/start", "referrer": "https://example.org/"},
                "timestamp": (at + timedelta(minutes=1)).isoformat(),
            },
            {
                "type": "track",
                "messageId": track,
                "userId": "u-1",
                "event": "Order Completed",
                "properties": {"total": 30},
                "timestamp": (at + timedelta(minutes=2)).isoformat(),
            },
            {
                "type": "identify",
                "messageId": identify,
                "userId": "u-1",
                "context": {"traits": {"email": "ada@example.com"}},
                "timestamp": (at + timedelta(minutes=3)).isoformat(),
            },
            {
                "type": "alias",
                "messageId": alias,
                "userId": "u-1",
                "previousId": "anon-1",
                "timestamp": (at + timedelta(minutes=4)).isoformat(),
            },
        ],
        # The client's clock is an hour fast: timestamps and sentAt alike.
        "sentAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }
    for message in body["batch"]:
        message["timestamp"] = (datetime.fromisoformat(message["timestamp"]) + timedelta(hours=1)).isoformat()
    assert client.post("/v1/batch", json=body, headers=auth).status_code == 200

    with psycopg.connect(database_url) as worker:
        list(process_backlog(worker, tracking_plan.load(), Limits(), 10_000))
    with psycopg.connect(database_url) as reader:
        rows = reader.execute(
            """
            select event_id, event_type, wire_format, user_id, anonymous_id, occurred_at, page_url, page_path,
                   page_referrer, page_title, user_agent, locale, utm_source, utm_medium, utm_campaign, utm_term,
                   utm_content, props
            from warehouse.events where tenant_id = %s
            """,
            (tenant[0].id,),
        ).fetchall()
        rejects = reader.execute("select count(*) from warehouse.event_rejects where tenant_id = %s", (tenant[0].id,))
        assert rejects.fetchone() == (0,)
    by_id = {row[0]: row for row in rows}
    assert set(by_id) == {browser_page, server_page, track, identify, alias}

    page = by_id[browser_page]
    assert page[1:5] == ("page_viewed", "segment", None, "anon-1")
    assert abs(page[5] - at) < timedelta(seconds=10)  # the hour of skew corrected
    assert page[6:12] == (
        "https://shop.example/pricing?utm_source=news",
        "/pricing",
        "https://www.google.com/",
        "Pricing | Shop",
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        "de-DE",
    )
    assert page[12:17] == ("news", "email", "spring", "t", "c")
    assert page[17] == {"plan": "pro"}

    server = by_id[server_page]
    assert server[1:5] == ("page_viewed", "segment", "42", None)
    assert server[6:10] == ("https://shop.example/docs/start", "/docs/start", "https://example.org/", "Docs")

    assert by_id[track][1] == "Order Completed" and by_id[track][17] == {"total": 30}
    assert by_id[identify][1] == "user_identified" and by_id[identify][17] == {"email": "ada@example.com"}
    assert by_id[alias][1:5] == ("user_aliased", "segment", "u-1", "anon-1")


@pytest.mark.parametrize("depth", [100, 3000, 100_000])
@pytest.mark.parametrize("route", ["/v1/track", "/v1/batch"])
def test_deeply_nested_json_is_refused_or_kept_but_never_a_500(settings, auth, route, depth):
    message = '{"type": "track", "event": "x", "properties": {"a": ' + "[" * depth + "]" * depth + "}}"
    body = message if route == "/v1/track" else '{"batch": [' + message + "]}"
    roomy = dataclasses.replace(settings, segment_max_event_bytes=1_000_000, segment_max_batch_bytes=1_000_000)
    with TestClient(app=create_app(roomy)) as client:
        response = client.post(route, content=body, headers={**auth, "Content-Type": "application/json"})

    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]
