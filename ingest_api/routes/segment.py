"""The Segment-compatible routes: Segment's and RudderStack's SDKs post here unchanged.

Point an SDK's host (dataPlaneUrl) at the API and its calls land as wire format `segment`;
processing maps them onto the canonical event (tributary.contract). Every route answers
`200 {"success": true}` once the messages are committed: RudderStack's SDKs count anything
but 200 as a failure, and Segment's retry 429 and 5xx, which is what an uncommitted request
should get. What is stored for each message is described in ingest_api.segment.
"""

from __future__ import annotations

from uuid import UUID

from litestar import Request, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec

from ingest_api.auth import WriteKeys, authenticate, authenticate_body_key, carries_write_key
from ingest_api.body import read_json_body
from ingest_api.database import Database
from ingest_api.errors import ClientError
from ingest_api.landing import Envelope, UnstorableEvent, land
from ingest_api.ratelimit import RateLimiter
from ingest_api.routes.events import ERROR_RESPONSES, WRITE_KEY_SECURITY
from ingest_api.schemas import ErrorBody, FieldError
from ingest_api.segment import (
    WIRE_FORMAT,
    CallType,
    Decoded,
    SegmentAccepted,
    SegmentBatch,
    SegmentMessage,
    decode_batch,
    decode_message,
)
from tributary.settings import Settings

SEGMENT_ERROR_RESPONSES = {
    **ERROR_RESPONSES,
    400: ResponseSpec(
        ErrorBody,
        generate_examples=False,
        description="Not messages: not JSON, not UTF-8, not an object, an empty batch or one holding a non-object, "
        "or a type other than the route's.",
    ),
    413: ResponseSpec(
        ErrorBody,
        generate_examples=False,
        description="The body (after inflating gzip), a message, or the number of messages is over the limit.",
    ),
    415: ResponseSpec(
        ErrorBody,
        generate_examples=False,
        description="The Content-Type is not JSON or text/plain, or the Content-Encoding is not gzip.",
    ),
}


# Never called (see routes.events): they put the request bodies in the OpenAPI document.
def _documents_message(data: SegmentMessage) -> None: ...


def _documents_batch(data: SegmentBatch) -> None: ...


def _route(path: str, operation_id: str, documents=_documents_message):
    return post(
        path,
        operation_id=operation_id,
        status_code=200,
        dependencies={"body_doc": Provide(documents, sync_to_thread=False)},
        request_max_body_size=None,
        responses=SEGMENT_ERROR_RESPONSES,
        security=WRITE_KEY_SECURITY,
        tags=["Segment-compatible"],
    )


@_route("/v1/track", "segmentTrack")
async def segment_track(
    request: Request, settings: Settings, database: Database, write_keys: WriteKeys, rate_limiter: RateLimiter
) -> SegmentAccepted:
    """Land one Segment track call (an event with a name of its own)."""
    return await _land_message(request, "track", settings, database, write_keys, rate_limiter)


@_route("/v1/page", "segmentPage")
async def segment_page(
    request: Request, settings: Settings, database: Database, write_keys: WriteKeys, rate_limiter: RateLimiter
) -> SegmentAccepted:
    """Land one Segment page call, stored as page_viewed."""
    return await _land_message(request, "page", settings, database, write_keys, rate_limiter)


@_route("/v1/screen", "segmentScreen")
async def segment_screen(
    request: Request, settings: Settings, database: Database, write_keys: WriteKeys, rate_limiter: RateLimiter
) -> SegmentAccepted:
    """Land one Segment screen call, stored as screen_viewed."""
    return await _land_message(request, "screen", settings, database, write_keys, rate_limiter)


@_route("/v1/identify", "segmentIdentify")
async def segment_identify(
    request: Request, settings: Settings, database: Database, write_keys: WriteKeys, rate_limiter: RateLimiter
) -> SegmentAccepted:
    """Land one Segment identify call, stored as user_identified."""
    return await _land_message(request, "identify", settings, database, write_keys, rate_limiter)


@_route("/v1/group", "segmentGroup")
async def segment_group(
    request: Request, settings: Settings, database: Database, write_keys: WriteKeys, rate_limiter: RateLimiter
) -> SegmentAccepted:
    """Land one Segment group call, stored as group_identified."""
    return await _land_message(request, "group", settings, database, write_keys, rate_limiter)


@_route("/v1/alias", "segmentAlias")
async def segment_alias(
    request: Request, settings: Settings, database: Database, write_keys: WriteKeys, rate_limiter: RateLimiter
) -> SegmentAccepted:
    """Land one Segment alias call, stored as user_aliased."""
    return await _land_message(request, "alias", settings, database, write_keys, rate_limiter)


@_route("/v1/batch", "segmentBatch", _documents_batch)
async def segment_batch(
    request: Request, settings: Settings, database: Database, write_keys: WriteKeys, rate_limiter: RateLimiter
) -> SegmentAccepted:
    """Land a batch of Segment messages of any call type in one commit (what the server SDKs send)."""
    tenant_id = await authenticate(request, write_keys) if carries_write_key(request) else None
    body = await read_json_body(
        request,
        settings.segment_max_batch_bytes,
        "split the batch, or raise TRIBUTARY_SEGMENT_MAX_BATCH_BYTES",
        settings.max_compressed_bytes,
    )
    decoded = decode_batch(body, settings.segment_max_batch_events, settings.segment_max_event_bytes)
    return await _land_decoded(request, tenant_id, decoded, database, write_keys, rate_limiter, batch=True)


async def _land_message(
    request: Request,
    call_type: CallType,
    settings: Settings,
    database: Database,
    write_keys: WriteKeys,
    rate_limiter: RateLimiter,
) -> SegmentAccepted:
    # A key in the headers or query string is checked before the body is read; only a request
    # without one has to be read first, for the writeKey in its body.
    tenant_id = await authenticate(request, write_keys) if carries_write_key(request) else None
    body = await read_json_body(
        request,
        settings.segment_max_event_bytes,
        "make its properties or traits smaller, or raise TRIBUTARY_SEGMENT_MAX_EVENT_BYTES",
        settings.max_compressed_bytes,
    )
    decoded = decode_message(body, call_type)
    return await _land_decoded(request, tenant_id, decoded, database, write_keys, rate_limiter, batch=False)


async def _land_decoded(
    request: Request,
    tenant_id: UUID | None,
    decoded: Decoded,
    database: Database,
    write_keys: WriteKeys,
    rate_limiter: RateLimiter,
    *,
    batch: bool,
) -> SegmentAccepted:
    if tenant_id is None:
        tenant_id = await authenticate_body_key(decoded.write_key, write_keys)
    rate_limiter.take(tenant_id, len(decoded.payloads))
    try:
        await land(database, Envelope.of(request, tenant_id, WIRE_FORMAT), decoded.payloads)
    except UnstorableEvent as error:
        # All or nothing: the answer has no per-message results to report one refusal in.
        if not batch:
            raise
        raise ClientError(
            f"message {error.position} of the batch cannot be stored as JSON ({error.detail}): "
            "change the value and send the batch again; nothing was stored",
            [FieldError(f"batch.{error.position}", error.detail)],
        ) from error
    return SegmentAccepted()


SEGMENT_ROUTES = [
    segment_track,
    segment_page,
    segment_screen,
    segment_identify,
    segment_group,
    segment_alias,
    segment_batch,
]
