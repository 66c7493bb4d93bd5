"""Reading and decoding request bodies: bounded, UTF-8, JSON, and judged by msgspec.

The event routes read the body here rather than take a Litestar `data` argument: they must
stop reading at their own limit, and land the bytes as sent rather than a re-encoding.
What this module accepts, PostgreSQL's jsonb should accept too; the one known gap (a number
beyond numeric's range under a key msgspec skips) is caught by the landing writer.
"""

from __future__ import annotations

import re

import msgspec
from litestar import Request

from ingest_api.errors import ClientError, PayloadTooLarge, UnsupportedMediaType
from ingest_api.schemas import EventIn, FieldError, FieldRuleError, RawEventBatch

# text/plain: navigator.sendBeacon cannot send application/json without a CORS preflight.
ACCEPTED_MEDIA_TYPES = frozenset({"application/json", "text/plain", ""})
# jsonb cannot hold U+0000; msgspec accepts it. After an even run of backslashes it is an
# escape; after an odd run it is the literal text "\u0000", which jsonb takes.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_AT_PATH = re.compile(r"^(?P<message>.*) - at `\$\.?(?P<path>[^`]*)`$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")

_event_decoder = msgspec.json.Decoder(EventIn)
_batch_decoder = msgspec.json.Decoder(RawEventBatch)


class InvalidEvent(ClientError):
    """JSON, but not an event; `summary` is the short form a batch result carries."""

    def __init__(self, fields: list[FieldError]):
        self.summary = "; ".join(f"{f.field}: {f.message}" if f.field else f.message for f in fields)
        super().__init__(
            f"the event is invalid: {self.summary}. Fix the listed fields and send it again "
            "(the event shape is documented under /schema)",
            fields,
        )


async def read_json_body(request: Request, limit: int, too_large_hint: str) -> bytes:
    """The whole body, refused (415, 413, 400) before it is read when the headers say so."""
    media_type, _ = request.content_type
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {media_type} is not accepted: send JSON as application/json "
            "(or as text/plain, as navigator.sendBeacon does)"
        )
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes, over the limit of {limit}: {too_large_hint}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes: {too_large_hint}")
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        body.decode()
    except UnicodeDecodeError as error:
        # msgspec does not check the bytes of keys it skips, and PostgreSQL refuses them.
        raise ClientError(f"the body is not valid UTF-8 (byte {error.start}): send JSON encoded as UTF-8") from None
    return body


def decode_event(raw: bytes) -> EventIn:
    """Check one event; raise `InvalidEvent` with the fields at fault."""
    try:
        event = _event_decoder.decode(raw)
    except msgspec.ValidationError as error:
        raise InvalidEvent([field_error(error)]) from None
    except msgspec.DecodeError as error:
        raise _not_json(raw, error, "one event as a JSON object") from None
    except RecursionError:
        raise InvalidEvent([FieldError(None, "the JSON nests too deeply: flatten it")]) from None
    if _NUL_ESCAPE.search(raw):
        raise InvalidEvent([FieldError(None, "a string contains \\u0000, which cannot be stored: remove it")])
    return event


def decode_batch(body: bytes, max_events: int) -> list[bytes]:
    """The batch's events, each as the exact JSON text it was sent as, still to be checked one by one."""
    try:
        batch = _batch_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise ClientError(
            f'the body is not a batch ({error}): send {{"events": [event, ...]}}', [field_error(error)]
        ) from None
    except msgspec.DecodeError as error:
        raise _not_json(body, error, 'a batch as {"events": [event, ...]}') from None
    except RecursionError:
        raise ClientError("the JSON nests too deeply: flatten it") from None
    if not batch.events:
        raise ClientError('the batch is empty: send at least one event in "events"', [FieldError("events", "empty")])
    if len(batch.events) > max_events:
        raise PayloadTooLarge(
            f"the batch has {len(batch.events)} events, over the limit of {max_events}: split it into smaller batches"
        )
    return [bytes(event) for event in batch.events]


def field_error(error: msgspec.ValidationError) -> FieldError:
    """msgspec's first complaint as a field and a message (msgspec stops at the first)."""
    if isinstance(error.__cause__, FieldRuleError):
        return FieldError(error.__cause__.field, str(error.__cause__))
    text = str(error)
    path = None
    if match := _AT_PATH.match(text):
        text, path = match["message"], match["path"] or None
    if match := _MISSING_FIELD.match(text):
        name = match["name"]
        return FieldError(f"{path}.{name}" if path else name, "is required")
    return FieldError(path, text)


def _not_json(body: bytes, error: msgspec.DecodeError, expected: str) -> ClientError:
    if not body.strip():
        return ClientError(f"the body is empty: send {expected}")
    return ClientError(f"the body is not JSON ({error}): send {expected}")
