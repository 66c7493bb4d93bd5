"""Decoding Segment bodies into what lands: values byte for byte, writeKey out, a few keys in."""

from __future__ import annotations

import json
import uuid

import pytest

from ingest_api.errors import ClientError, PayloadTooLarge
from ingest_api.segment import WIRE_FORMAT, decode_batch, decode_message
from tributary import contract


def batch(body: bytes | dict, max_messages: int = 2500, max_message_bytes: int = 32 * 1024):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return decode_batch(raw, max_messages, max_message_bytes)


def test_values_land_byte_for_byte_as_sent():
    body = b'{"batch": [{"type": "track", "messageId": "m1", "properties": {"price": 1.10, "big": 123456789012345678901234567890, "s": "caf\\u00e9"}}]}'

    [payload] = batch(body).payloads

    assert payload == (
        b'{"type":"track","messageId":"m1",'
        b'"properties":{"price": 1.10, "big": 123456789012345678901234567890, "s": "caf\\u00e9"}}'
    )


def test_the_write_key_is_returned_for_authentication_and_removed_from_every_message():
    decoded = batch({"batch": [{"type": "track", "writeKey": "k"}, {"type": "page"}], "writeKey": "k"})

    assert decoded.write_key == "k"
    assert all(b"writeKey" not in payload for payload in decoded.payloads)


def test_a_write_key_sent_twice_in_one_message_is_removed_whole():
    decoded = decode_message(b'{"event": "x", "writeKey": "first", "writeKey": "second"}', "track")

    assert decoded.write_key == "second"
    assert b"first" not in decoded.payloads[0] and b"second" not in decoded.payloads[0]


def test_a_message_without_a_message_id_gets_a_uuid4_and_one_with_null_too():
    first, second = (json.loads(p) for p in batch({"batch": [{"type": "track"}, {"messageId": None}]}).payloads)

    assert uuid.UUID(first["messageId"]).version == 4
    assert uuid.UUID(second["messageId"]).version == 4
    assert first["messageId"] != second["messageId"]


def test_a_single_route_adds_its_type_only_when_the_message_has_none():
    assert json.loads(decode_message(b'{"event": "x"}', "track").payloads[0])["type"] == "track"
    assert json.loads(decode_message(b'{"type": null}', "page").payloads[0])["type"] == "page"
    assert json.loads(decode_message(b'{"type": "screen"}', "screen").payloads[0])["type"] == "screen"
    with pytest.raises(ClientError, match="/v1/page"):
        decode_message(b'{"type": "track"}', "page")


def test_a_non_string_write_key_is_no_key():
    assert decode_message(b'{"event": "x", "writeKey": 12}', "track").write_key is None


def test_the_message_count_limit_is_inclusive():
    body = {"batch": [{"type": "track"}] * 3}

    assert len(batch(body, max_messages=3).payloads) == 3
    with pytest.raises(PayloadTooLarge, match="limit of 2"):
        batch(body, max_messages=2)


def test_a_message_over_its_size_limit_is_named_by_its_index():
    with pytest.raises(PayloadTooLarge) as error:
        batch({"batch": [{"type": "track"}, {"type": "track", "event": "x" * 100}]}, max_message_bytes=50)

    assert error.value.fields[0].field == "batch.1"


def test_the_api_lands_segment_messages_under_the_wire_format_processing_reads():
    assert WIRE_FORMAT == contract.SEGMENT
