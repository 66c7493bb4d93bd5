"""Request and response bodies of the ingest API, as msgspec Structs.

An event is decoded into `EventIn` only to check it: what lands is the JSON object as the
client sent it, unknown keys included, so processing judges exactly what arrived. Optional
fields accept null as "absent", as JavaScript clients often send it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

Source = Literal["web", "api", "mobile", "system", "webhook"]
EntityType = Literal[
    "project", "asset", "license", "creator", "brand", "user", "royalty", "payout", "post", "category", "job"
]
# An ISO-8601 string as RFC 3339 profiles it (what `Date.prototype.toISOString` and
# `datetime.isoformat` emit), or milliseconds since the Unix epoch.
Timestamp = datetime | Annotated[int, Meta(ge=0)]


class FieldRuleError(ValueError):
    """A rule across fields, raised from `__post_init__`; msgspec keeps it as the cause."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Page(Struct, rename="camel"):
    url: str | None = None
    referrer: str | None = None
    title: str | None = None


class Context(Struct, rename="camel"):
    page: Page | None = None
    user_agent: str | None = None
    locale: str | None = None
    timezone: str | None = None
    screen: dict[str, Any] | str | None = None
    ip: str | None = None


class Attribution(Struct, rename="camel"):
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    referrer: str | None = None
    landing_page: str | None = None


class EventIn(Struct, rename="camel"):
    """One event in the native shape; unknown top-level keys are allowed and kept."""

    event_type: Annotated[str, Meta(min_length=1, max_length=100)]
    source: Source = "web"
    event_id: Annotated[UUID | None, Meta(description="De-duplication key; assigned by the server when absent.")] = None
    user_id: str | None = None
    anonymous_id: str | None = None
    session_id: UUID | None = None
    entity_type: EntityType | None = None
    entity_id: Annotated[str, Meta(max_length=255)] | None = None
    occurred_at: Annotated[Timestamp | None, Meta(description="When it happened, by the client's clock.")] = None
    sent_at: Annotated[Timestamp | None, Meta(description="When the client sent it; corrects clock skew.")] = None
    props: dict[str, Any] | None = None
    attribution: Attribution | None = None
    context: Context | None = None
    idempotency_key: UUID | None = None
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        if self.entity_id is not None and self.entity_type is None:
            raise FieldRuleError("entityType", "is required when entityId is given")


class EventBatchIn(Struct):
    """The documented batch body. It is decoded as `RawEventBatch`, so each event is judged on its own."""

    events: Annotated[list[EventIn], Meta(min_length=1)]


class RawEventBatch(Struct):
    events: list[msgspec.Raw]


class Accepted(Struct, rename="camel"):
    event_id: UUID
    tracked: bool = True


class BatchResult(Struct, rename="camel"):
    index: int
    status: Literal["fulfilled", "rejected"]
    data: Accepted | None = None
    error: str | None = None


class BatchAccepted(Struct, rename="camel"):
    total: int
    successful: int
    failed: int
    results: list[BatchResult]


class FieldError(Struct):
    field: str | None
    """Dotted path in the event (`context.page.url`); null when the whole body is at fault."""
    message: str


class ErrorBody(Struct):
    """Every error answer: what was wrong and what to do, and the fields at fault."""

    error: str
    fields: list[FieldError] = msgspec.field(default_factory=list)


class Health(Struct):
    status: Literal["ok"]


class TenantStats(Struct, rename="camel"):
    tenant_id: UUID
    name: str
    landed: int
    backlog: int
    oldest_waiting_seconds: float | None
    """Age of the oldest event not yet processed; null when nothing waits."""
    last_processed_at: datetime | None
    events: int
    rejects: int
    duplicates: int
    reject_rate: float | None
    """Rejects / processed events; null before anything was processed."""
    duplicate_rate: float | None


class LastBatch(Struct, rename="camel"):
    batch_id: int
    finished_at: datetime
    claimed: int
    events: int
    rejects: int
    duplicates: int
    seconds: float


class Stats(Struct, rename="camel"):
    tenants: list[TenantStats]
    last_batch: LastBatch | None


class FlushStarted(Struct, rename="camel"):
    run_id: str
    started: bool
    """False when a run was already in flight: that run takes the backlog."""
    detail: str
