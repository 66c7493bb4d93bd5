"""The native event routes: one event, or a batch of them, landed before the answer."""

from __future__ import annotations

from uuid import UUID, uuid4

from litestar import Request, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec

from ingest_api.auth import authenticate
from ingest_api.body import InvalidEvent, decode_batch, decode_event, read_json_body
from ingest_api.database import Database
from ingest_api.landing import Envelope, UnstorableEvent, land, with_event_id
from ingest_api.ratelimit import RateLimiter
from ingest_api.schemas import Accepted, BatchAccepted, BatchResult, ErrorBody, EventBatchIn, EventIn
from tributary.settings import Settings

WRITE_KEY_SECURITY = [{"bearer": []}, {"basic": []}, {"writeKey": []}]


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(ErrorBody, description=description, generate_examples=False)


ERROR_RESPONSES = {
    400: _error("Not an event: not JSON, not UTF-8, not an object, or a field of the wrong type, format or value."),
    401: _error("The write key is missing, unknown or revoked."),
    413: _error("The body, or the number of events in a batch, is over the limit."),
    415: _error("The Content-Type is neither application/json nor text/plain, or the Content-Encoding is not gzip."),
    429: _error("The tenant is over its rate limit; nothing was stored. Retry after Retry-After seconds."),
    503: _error("Nothing was stored: the database is unavailable. Retry after Retry-After seconds."),
}


# The handlers read the body themselves (see ingest_api.body). Litestar documents a
# dependency's `data` argument as the request body; no handler asks for these, so they are
# never called and only put EventIn and EventBatchIn in the OpenAPI document.
def _documents_event(data: EventIn) -> None: ...


def _documents_batch(data: EventBatchIn) -> None: ...


@post(
    "/v1/events",
    operation_id="trackEvent",
    status_code=202,
    dependencies={"tenant_id": Provide(authenticate), "body_doc": Provide(_documents_event, sync_to_thread=False)},
    request_max_body_size=None,
    responses=ERROR_RESPONSES,
    security=WRITE_KEY_SECURITY,
)
async def track_event(
    request: Request, tenant_id: UUID, settings: Settings, database: Database, rate_limiter: RateLimiter
) -> Accepted:
    """Land one event; 202 means it is committed."""
    body = await read_json_body(
        request,
        settings.max_event_bytes,
        "send smaller props, or raise TRIBUTARY_MAX_EVENT_BYTES",
        settings.max_compressed_bytes,
    )
    event = decode_event(body)
    rate_limiter.take(tenant_id, 1)
    event_id = event.event_id or uuid4()
    payload = body if event.event_id else with_event_id(body, event_id)
    await land(database, Envelope.of(request, tenant_id), [payload])
    return Accepted(event_id)


@post(
    "/v1/events/batch",
    operation_id="trackEventBatch",
    status_code=202,
    dependencies={"tenant_id": Provide(authenticate), "body_doc": Provide(_documents_batch, sync_to_thread=False)},
    request_max_body_size=None,
    responses=ERROR_RESPONSES,
    security=WRITE_KEY_SECURITY,
)
async def track_event_batch(
    request: Request, tenant_id: UUID, settings: Settings, database: Database, rate_limiter: RateLimiter
) -> BatchAccepted:
    """Land the valid events of a batch in one commit; report each event by its index."""
    body = await read_json_body(
        request, settings.max_batch_bytes, "split the batch into smaller ones", settings.max_compressed_bytes
    )
    results: list[BatchResult] = []
    pending: list[tuple[int, bytes]] = []
    for index, raw in enumerate(decode_batch(body, settings.max_batch_events)):
        try:
            event = decode_event(raw)
        except InvalidEvent as error:
            results.append(BatchResult(index, "rejected", error=error.summary))
            continue
        event_id = event.event_id or uuid4()
        results.append(BatchResult(index, "fulfilled", Accepted(event_id)))
        pending.append((index, raw if event.event_id else with_event_id(raw, event_id)))
    rate_limiter.take(tenant_id, len(pending))
    await _land_storable(database, Envelope.of(request, tenant_id), pending, results)
    failed = sum(result.status == "rejected" for result in results)
    return BatchAccepted(total=len(results), successful=len(results) - failed, failed=failed, results=results)


async def _land_storable(
    database: Database, envelope: Envelope, pending: list[tuple[int, bytes]], results: list[BatchResult]
) -> None:
    """Land `pending` in one COPY. Should PostgreSQL refuse an event that passed the checks,
    that one is rejected and the rest are sent again, so one event cannot sink its batch."""
    while pending:
        try:
            await land(database, envelope, [payload for _, payload in pending])
            return
        except UnstorableEvent as error:
            index, _ = pending.pop(error.position)
            results[index] = BatchResult(index, "rejected", error=error.detail)
