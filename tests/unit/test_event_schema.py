"""The native event's checks, the stored payload's eventId, and where a write key is read from."""

from __future__ import annotations

import base64
import json
import uuid

import msgspec
import pytest

from ingest_api.auth import basic_user, write_key_from
from ingest_api.body import InvalidEvent, decode_event
from ingest_api.errors import AuthError
from ingest_api.landing import with_event_id
from ingest_api.schemas import EventIn

FULL_EVENT = {
    "eventType": "asset_downloaded",
    "source": "mobile",
    "eventId": "0b0f5a5e-4a55-4d4b-9a8e-1f1f0c1e2d3a",
    "userId": "user_42",
    "anonymousId": "anon-7",
    "sessionId": "5f0c6a1e-8c1b-4a8e-9e63-2d6b1c3f4a5b",
    "entityType": "asset",
    "entityId": "clx3k2j9b0000qz8r4t6y1u2v",
    "occurredAt": "2025-03-01T12:00:00.123Z",
    "sentAt": 1740830400456,
    "props": {"format": "png", "sizeBytes": 1024, "tags": ["a", "b"], "nested": {"ok": True}},
    "attribution": {
        "utmSource": "newsletter",
        "utmMedium": "email",
        "utmCampaign": "spring",
        "utmTerm": "icons",
        "utmContent": "hero",
        "referrer": "https://mail.example/",
        "landingPage": "https://app.example/assets",
    },
    "context": {
        "page": {"url": "https://app.example/assets/1", "referrer": "https://app.example/", "title": "Asset"},
        "userAgent": "Mozilla/5.0",
        "locale": "en-GB",
        "timezone": "Europe/London",
        "screen": {"width": 1920, "height": 1080},
        "ip": "203.0.113.9",
    },
    "idempotencyKey": "7d9f2c1e-3b4a-4c5d-8e6f-0a1b2c3d4e5f",
    "correlationId": "req-123",
}


def encode(event: dict) -> bytes:
    return json.dumps(event).encode()


def test_a_full_native_event_is_accepted():
    event = decode_event(encode(FULL_EVENT))

    assert event.event_type == "asset_downloaded"
    assert event.source == "mobile"
    assert event.event_id == uuid.UUID(FULL_EVENT["eventId"])
    assert event.entity_type == "asset"
    assert event.sent_at == 1740830400456
    assert event.attribution.landing_page == "https://app.example/assets"
    assert event.context.page.title == "Asset"


def test_only_event_type_is_required_and_source_defaults_to_web():
    event = decode_event(b'{"eventType": "page_viewed"}')

    assert event.source == "web"
    assert event.event_id is None


def test_unknown_top_level_keys_are_allowed():
    assert decode_event(encode({"eventType": "x", "appVersion": "1.2.3", "experiment": {"arm": "b"}}))


def test_optional_fields_accept_null_as_absent():
    event = decode_event(encode({"eventType": "x", "eventId": None, "userId": None, "context": None}))

    assert event.event_id is None and event.user_id is None


@pytest.mark.parametrize("value", ["2025-03-01T12:00:00Z", "2025-03-01T13:00:00+01:00", "2025-03-01T12:00:00", 0])
def test_timestamps_are_iso_8601_strings_or_epoch_millis(value):
    assert decode_event(encode({"eventType": "x", "occurredAt": value}))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"eventId": "not-a-uuid"}, "eventId"),
        ({"sessionId": "1234"}, "sessionId"),
        ({"idempotencyKey": 7}, "idempotencyKey"),
        ({"source": "tv"}, "source"),
        ({"entityType": "planet", "entityId": "p1"}, "entityType"),
        ({"eventType": "e" * 101}, "eventType"),
        ({"eventType": ""}, "eventType"),
        ({"eventType": 12}, "eventType"),
        ({"entityId": "a1"}, "entityType"),
        ({"entityType": "asset", "entityId": "a" * 256}, "entityId"),
        ({"occurredAt": "yesterday"}, "occurredAt"),
        ({"sentAt": 1.5}, "sentAt"),
        ({"props": ["not", "an", "object"]}, "props"),
        ({"context": {"page": {"url": 3}}}, "context.page.url"),
        ({"attribution": {"utmSource": False}}, "attribution.utmSource"),
    ],
)
def test_a_wrong_field_is_named_in_the_error(change, field):
    with pytest.raises(InvalidEvent) as raised:
        decode_event(encode({"eventType": "x", **change}))

    assert [error.field for error in raised.value.fields] == [field]
    assert raised.value.summary.startswith(f"{field}: ")


def test_entity_id_without_entity_type_says_what_is_missing():
    with pytest.raises(InvalidEvent) as raised:
        decode_event(b'{"eventType": "x", "entityId": "a1"}')

    assert raised.value.summary == "entityType: is required when entityId is given"


def test_a_missing_event_type_is_reported_as_required():
    with pytest.raises(InvalidEvent) as raised:
        decode_event(b'{"props": {}}')

    assert raised.value.summary == "eventType: is required"


def test_a_nul_escape_is_refused_but_an_escaped_backslash_before_u0000_is_text():
    with pytest.raises(InvalidEvent):
        decode_event(b'{"eventType": "x", "note": "a\\u0000b"}')

    assert decode_event(b'{"eventType": "x", "note": "a\\\\u0000b"}')


def test_the_structs_are_msgspec_structs_with_camel_case_names():
    assert msgspec.json.encode(EventIn(event_type="x", entity_type="job", entity_id="j1")).startswith(
        b'{"eventType":"x","source":"web","eventId":null'
    )


def test_a_server_event_id_is_added_as_the_last_key_and_nothing_else_changes():
    payload = b'{ "eventType": "x",\n  "weird key": [1, 2.50, "\\u00e9"] }\n'
    event_id = uuid.uuid4()

    stored = with_event_id(payload, event_id)

    assert stored.startswith(b'{ "eventType": "x",\n  "weird key": [1, 2.50, "\\u00e9"] ,"eventId":"')
    assert json.loads(stored) == {"eventType": "x", "weird key": [1, 2.5, "é"], "eventId": str(event_id)}


def test_a_server_event_id_overrides_a_null_one_because_the_last_key_wins():
    event_id = uuid.uuid4()

    assert json.loads(with_event_id(b'{"eventId": null, "eventType": "x"}', event_id))["eventId"] == str(event_id)


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("credentials", ["trb_key123:", "trb_key123"])
def test_basic_auth_carries_the_key_as_user_name_with_or_without_the_colon(credentials):
    assert write_key_from(basic(credentials), None) == "trb_key123"


def test_basic_auth_without_base64_padding_is_read():
    unpadded = base64.b64encode(b"trb_k").decode().rstrip("=")

    assert basic_user(unpadded) == "trb_k"


def test_a_bearer_key_is_read_and_wins_over_the_query_string():
    assert write_key_from("Bearer trb_header", "trb_query") == "trb_header"


def test_the_query_string_key_is_read_when_there_is_no_header():
    assert write_key_from(None, "trb_query") == "trb_query"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer ", "Token trb_x", "Basic !!!notbase64", basic(":password-only")],
)
def test_no_usable_key_is_an_auth_error_that_says_how_to_send_one(authorization):
    with pytest.raises(AuthError) as raised:
        write_key_from(authorization, None)

    assert "Authorization: Bearer <key>" in raised.value.message
    assert raised.value.status_code == 401
