"""Reading and decoding request bodies: bounded, UTF-8, JSON, and judged by msgspec.

The event routes read the body here rather than take a Litestar `data` argument: they must
stop reading at their own limit, and land the bytes as sent rather than a re-encoding.
What this module accepts, PostgreSQL's jsonb should accept too; the one known gap (a number
beyond numeric's range under a key msgspec skips) is caught by the landing writer.

A body sent with `Content-Encoding: gzip` (Segment's and RudderStack's SDKs compress their
batches) is inflated here, chunk by chunk as it arrives: the compressed bytes are held to
`max_compressed`, the inflated ones to the route's own limit, and inflating stops one byte
past that limit, so a gzip bomb costs a few kilobytes of memory, not its inflated size.
"""

from __future__ import annotations

import re
import zlib

import msgspec
from litestar import Request

from ingest_api.errors import ClientError, PayloadTooLarge, UnsupportedMediaType
from ingest_api.schemas import EventIn, FieldError, FieldRuleError, RawEventBatch

# text/plain: navigator.sendBeacon cannot send application/json without a CORS preflight.
ACCEPTED_MEDIA_TYPES = frozenset({"application/json", "text/plain", ""})
GZIP_ENCODINGS = frozenset({"gzip", "x-gzip"})
# Settings' default, for callers that do not pass their own.
DEFAULT_MAX_COMPRESSED_BYTES = 1024 * 1024
# wbits=31: a gzip header and trailer (CRC-32 and size checked), not raw deflate or zlib.
_GZIP_WBITS = 31
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


async def read_json_body(
    request: Request, limit: int, too_large_hint: str, max_compressed: int = DEFAULT_MAX_COMPRESSED_BYTES
) -> bytes:
    """The whole body, inflated when gzipped, refused (415, 413, 400) before it is read when the headers say so.

    `limit` bounds the body as JSON (after inflating); `max_compressed` bounds a gzip body on the wire."""
    media_type, _ = request.content_type
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {media_type} is not accepted: send JSON as application/json "
            "(or as text/plain, as navigator.sendBeacon does)"
        )
    gzipped = is_gzipped(request.headers.get("content-encoding"))
    declared = request.content_length
    if gzipped:
        if declared is not None and declared > max_compressed:
            raise PayloadTooLarge(_compressed_too_large(max_compressed, declared))
        inflater = GzipInflater(limit, too_large_hint)
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_compressed:
                raise PayloadTooLarge(_compressed_too_large(max_compressed))
            inflater.feed(chunk)
        body = inflater.finish()
    else:
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


def is_gzipped(content_encoding: str | None) -> bool:
    """True for a gzip body, False for an uncompressed one; 415 for any other encoding."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return False
    if len(codings) == 1 and codings[0] in GZIP_ENCODINGS:
        return True
    raise UnsupportedMediaType(
        f"Content-Encoding {content_encoding} is not accepted: send the body uncompressed or as gzip"
    )


class GzipInflater:
    """Inflates a gzip body fed chunk by chunk, holding at most `limit` + 1 inflated bytes.

    Why incremental, with `max_length`: a few hundred kilobytes of gzip can inflate to
    gigabytes. Each call may produce only what is left of the limit (plus one byte, to know
    that it is over), so a bomb is refused after inflating `limit` + 1 bytes, whatever its
    size; the input zlib has not used yet waits in `unconsumed_tail`, compressed.
    """

    def __init__(self, limit: int, too_large_hint: str):
        self._limit = limit
        self._too_large_hint = too_large_hint
        self._member = zlib.decompressobj(wbits=_GZIP_WBITS)
        self._parts: list[bytes] = []
        self._size = 0
        self._fed = False

    def feed(self, data: bytes) -> None:
        """Inflate one chunk; raise PayloadTooLarge past the limit, ClientError when it is not gzip."""
        self._fed = self._fed or bool(data)
        while data:
            if self._member.eof:
                # RFC 1952: a gzip stream may hold several members, one after the other
                # (what `cat a.gz b.gz` and some writers produce); each needs a fresh inflater.
                self._member = zlib.decompressobj(wbits=_GZIP_WBITS)
            try:
                # At least 1: _size never exceeds _limit here, and 0 would mean "no limit".
                out = self._member.decompress(data, self._limit + 1 - self._size)
            except zlib.error as error:
                raise ClientError(
                    f"the body is not valid gzip ({error}): send it gzipped whole, or uncompressed"
                ) from None
            self._size += len(out)
            if self._size > self._limit:
                raise PayloadTooLarge(
                    f"the body inflates to over the limit of {self._limit} bytes: {self._too_large_hint}"
                )
            self._parts.append(out)
            data = self._member.unused_data if self._member.eof else self._member.unconsumed_tail

    def finish(self) -> bytes:
        """The inflated body; ClientError when the gzip stream stops before its end."""
        if self._fed and not self._member.eof:
            raise ClientError("the gzip body is cut short (no gzip trailer): send the whole compressed body")
        return b"".join(self._parts)


def _compressed_too_large(max_compressed: int, declared: int | None = None) -> str:
    size = f"is {declared} bytes, " if declared is not None else "is "
    return (
        f"the gzip body {size}over the limit of {max_compressed} compressed bytes: "
        "send smaller batches, or raise TRIBUTARY_MAX_COMPRESSED_BYTES"
    )


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
    # The literal check first: the regex costs ~10x msgspec's whole decode, and any match contains it.
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
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
