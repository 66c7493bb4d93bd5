"""Segment-spec messages (Segment's and RudderStack's SDKs, analytics.js): from a body to what lands.

The API checks only the structure: the body is a JSON object, a batch's `batch` is a
non-empty list of objects, a single-message route's body does not name another call type.
Everything else — ids of the wrong type, unreadable timestamps, a track call without
`event` — lands as sent and is judged in processing, where a reject keeps its reason and
can be replayed, so nothing an SDK sends is lost at the door.

Each stored message is the message as sent (each value's JSON text byte for byte), minus
`writeKey`, which must never be stored in clear, plus only:

- `messageId`: a new UUID4 when the message has none (absent or null), so that a re-send of
  the landed row is recognised as a duplicate;
- `sentAt`: the batch's `sentAt` when the message has none. analytics-python and
  RudderStack's Python SDK send it only at the batch level, and processing needs it on each
  event to correct the client's clock (occurred_at = received_at - (sentAt - timestamp));
- `type`: the call type a single-message route implies (`/v1/page` → "page"), when the body
  has none;
- `context`: the keys of the batch's `context` that the message's own context lacks (the
  Segment spec applies a batch's context to all its calls).

A message's `writeKey` (or the batch's) is returned beside the messages, for the routes to
authenticate with when the request's headers and query string carry no key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from ingest_api.errors import ClientError, PayloadTooLarge
from ingest_api.schemas import FieldError

# tributary.contract.SEGMENT, spelt out: importing the contract would load Polars into the API.
WIRE_FORMAT = "segment"
CallType = Literal["track", "page", "screen", "identify", "group", "alias"]

_NULL = b"null"
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()

Message = dict[str, msgspec.Raw]


@dataclass(frozen=True)
class Decoded:
    payloads: list[bytes]
    """What lands, one JSON object per message."""
    write_key: str | None
    """The body's writeKey, if it carries one."""


def decode_message(body: bytes, call_type: CallType) -> Decoded:
    """One message posted to `/v1/<call_type>`."""
    message = _as_object(body, f"one {call_type} message as a JSON object", None)
    sent_type = message.get("type")
    if _present(sent_type) and _value(sent_type) != call_type:
        raise ClientError(
            f"the message's type is {bytes(sent_type).decode()}, but this is /v1/{call_type}: post it to the route "
            "of its type, or to /v1/batch",
            [FieldError("type", f'must be "{call_type}" on /v1/{call_type}, or absent')],
        )
    write_key = _string(message.get("writeKey"))
    return Decoded([_stored(message, call_type, None, None)], write_key)


def decode_batch(body: bytes, max_messages: int, max_message_bytes: int) -> Decoded:
    """A `/v1/batch` body: `{"batch": [message, ...], "sentAt"?, "context"?, "writeKey"?}`."""
    envelope = _as_object(body, 'a batch as {"batch": [message, ...]}', None)
    raw_batch = envelope.get("batch")
    if raw_batch is None or not bytes(raw_batch).startswith(b"["):
        raise ClientError(
            'the body has no "batch" list: send {"batch": [message, ...]}',
            [FieldError("batch", "is required" if raw_batch is None else "must be a list of messages")],
        )
    elements = _list_decoder.decode(raw_batch)
    if not elements:
        raise ClientError('the batch is empty: send at least one message in "batch"', [FieldError("batch", "empty")])
    if len(elements) > max_messages:
        raise PayloadTooLarge(
            f"the batch has {len(elements)} messages, over the limit of {max_messages}: split it into smaller batches"
        )
    sent_at = envelope.get("sentAt")
    context = _context_of(envelope.get("context"))
    messages: list[Message] = []
    for index, element in enumerate(elements):
        if len(element) > max_message_bytes:
            raise PayloadTooLarge(
                f"message {index} of the batch is {len(element)} bytes, over the limit of {max_message_bytes} "
                "a message: make its properties or traits smaller",
                [FieldError(f"batch.{index}", "too large")],
            )
        messages.append(_as_object(element, "each message of the batch as a JSON object", index))
    write_key = _string(envelope.get("writeKey")) or _common_write_key(messages)
    payloads = [_stored(message, None, sent_at, context) for message in messages]
    return Decoded(payloads, write_key)


def _stored(
    message: Message, call_type: CallType | None, sent_at: msgspec.Raw | None, context: Message | None
) -> bytes:
    """The message as it lands: see the module docstring for what is removed and added."""
    message.pop("writeKey", None)
    if not _present(message.get("messageId")):
        message["messageId"] = _raw(str(uuid.uuid4()))
    if call_type and not _present(message.get("type")):
        message["type"] = _raw(call_type)
    if _present(sent_at) and not _present(message.get("sentAt")):
        message["sentAt"] = sent_at
    if context:
        message["context"] = _merged_context(message.get("context"), context)
    return _encoder.encode(message)


def _merged_context(own: msgspec.Raw | None, batch_context: Message) -> msgspec.Raw:
    if not _present(own):
        return _raw(batch_context)
    if not bytes(own).startswith(b"{"):
        return own  # not an object: left as sent, for processing to ignore
    merged = _object_decoder.decode(own)
    for key, value in batch_context.items():
        merged.setdefault(key, value)
    return _raw(merged)


def _context_of(raw: msgspec.Raw | None) -> Message | None:
    """The batch-level context when it is an object with keys; otherwise nothing to apply."""
    if raw is None or not bytes(raw).startswith(b"{"):
        return None
    return _object_decoder.decode(raw) or None


def _common_write_key(messages: list[Message]) -> str | None:
    """The messages' writeKey when those that carry one agree. Different keys would mean
    different tenants in one request, which cannot be landed as one."""
    keys = {key for message in messages if (key := _string(message.get("writeKey")))}
    if len(keys) > 1:
        raise ClientError(
            "the messages of the batch carry different writeKeys: send one batch per write key",
            [FieldError("writeKey", "differs between messages")],
        )
    return next(iter(keys), None)


def _as_object(raw: bytes | msgspec.Raw, expected: str, index: int | None) -> Message:
    where = f"message {index} of the batch" if index is not None else "the body"
    field = f"batch.{index}" if index is not None else None
    try:
        return _object_decoder.decode(raw)
    except msgspec.ValidationError:
        raise ClientError(
            f"{where} is not a JSON object: send {expected}", [FieldError(field, "not an object")]
        ) from None
    except msgspec.DecodeError as error:
        if not bytes(raw).strip():
            raise ClientError(f"the body is empty: send {expected}") from None
        raise ClientError(f"the body is not JSON ({error}): send {expected}") from None
    except RecursionError:
        raise ClientError(
            f"the JSON of {where} nests too deeply: flatten it", [FieldError(field, "too deep")]
        ) from None


def _present(raw: msgspec.Raw | None) -> bool:
    """Whether a key was sent with a value: JavaScript clients send null for "absent"."""
    return raw is not None and bytes(raw) != _NULL


def _value(raw: msgspec.Raw) -> Any:
    return msgspec.json.decode(raw)


def _string(raw: msgspec.Raw | None) -> str | None:
    if not _present(raw):
        return None
    value = _value(raw)
    return value if isinstance(value, str) and value else None


def _raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(_encoder.encode(value))


# Request bodies for the OpenAPI document. Bodies are decoded with the raw decoders above,
# never with these: what lands is what was sent, and its values are judged in processing,
# so the document gives each field's expected type in words and lets any JSON value through.


class SegmentMessage(Struct, rename="camel"):
    """One message of the Segment spec: any JSON object, kept as sent (minus writeKey). These are
    the fields processing reads; a value of the wrong type is rejected there, with its reason."""

    type: Annotated[Any, Meta(description="track, page, screen, identify, group or alias (or the route's)")] = None
    message_id: Annotated[Any, Meta(description="String: the de-duplication key; assigned when absent")] = None
    user_id: Annotated[Any, Meta(description="String (a number is kept as text)")] = None
    anonymous_id: Annotated[Any, Meta(description="String")] = None
    event: Annotated[Any, Meta(description="String: the event's name (track)")] = None
    name: Annotated[Any, Meta(description="String: the page's or screen's name (page, screen)")] = None
    properties: Annotated[Any, Meta(description="Object: the event's properties (track, page, screen)")] = None
    traits: Annotated[Any, Meta(description="Object: the user's or group's traits (identify, group)")] = None
    group_id: Annotated[Any, Meta(description="String (group)")] = None
    previous_id: Annotated[Any, Meta(description="String: the identity merged into userId (alias)")] = None
    timestamp: Annotated[Any, Meta(description="ISO-8601 or epoch ms: when it happened, client clock")] = None
    sent_at: Annotated[Any, Meta(description="ISO-8601: when the client sent it; else the batch's")] = None
    context: Annotated[Any, Meta(description="Object: page, userAgent, locale, timezone, campaign, ...")] = None
    write_key: Annotated[Any, Meta(description="String: the write key, if not in a header; never stored")] = None


class SegmentBatch(Struct, rename="camel"):
    """Messages of any call type; `sentAt` and `context` apply to those that lack their own."""

    batch: Annotated[list[SegmentMessage], Meta(min_length=1, description="Up to 2,500 messages, 4 MiB")]
    sent_at: Annotated[Any, Meta(description="ISO-8601: for each message without its own sentAt")] = None
    context: Annotated[Any, Meta(description="Object: keys added to each message's context lacking them")] = None
    write_key: Annotated[Any, Meta(description="String: the write key, if not in a header; never stored")] = None


class SegmentAccepted(Struct):
    """What Segment's and RudderStack's SDKs expect: 200 with this body means committed."""

    success: bool = True
