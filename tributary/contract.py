"""The canonical event contract: one shape for every wire format.

Two steps, both defined here and nowhere else:

1. `RAW_FIELDS` says where each field sits in a landed payload, per wire format
   (native camelCase, Segment's spec). Processing pulls them out in PostgreSQL
   (`#>>` yields text whatever the JSON type, so a client sending a number where a
   string belongs cannot crash a batch), giving one text column per field.
2. `canonical()` turns those text columns into the typed canonical frame with
   Polars expressions: Segment call types become event types, timestamps are
   parsed, the client clock is corrected.

Segment messages (Segment's and RudderStack's SDKs, analytics.js) land as sent, with a
`messageId`, a `sentAt` and `context` keys (copied from the batch: server SDKs send
sentAt only there) and the route's `type` added when they lack one. Their fields are looked for where either SDK
family puts them: page details in `context.page` (browsers) or in a page call's
`properties` and `name` (server SDKs), traits at the top (Segment) or in `context.traits`
(RudderStack), an alias call's `previousId` as the anonymous id it merges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from tributary import tracking_plan

NATIVE = "native"
SEGMENT = "segment"
WIRE_FORMATS = (NATIVE, SEGMENT)

SOURCES = ("web", "api", "mobile", "system", "webhook")
ENTITY_TYPES = (
    "project",
    "asset",
    "license",
    "creator",
    "brand",
    "user",
    "royalty",
    "payout",
    "post",
    "category",
    "job",
)

# Segment call type → canonical event type (a `track` call carries its own name in `event`).
SEGMENT_CALL_TYPES = {
    "page": "page_viewed",
    "screen": "screen_viewed",
    "identify": "user_identified",
    "group": "group_identified",
    "alias": "user_aliased",
}

Path = tuple[str, ...]


@dataclass(frozen=True)
class RawField:
    """A field's location in a payload: for each wire format, paths tried in order."""

    name: str
    native: tuple[Path, ...] = ()
    segment: tuple[Path, ...] = ()
    json_object: bool = False
    """Kept as JSON text, and only when the value is an object (props)."""


def _p(dotted: str) -> Path:
    return tuple(dotted.split("."))


def _paths(*dotted: str) -> tuple[Path, ...]:
    return tuple(_p(d) for d in dotted)


RAW_FIELDS: tuple[RawField, ...] = (
    RawField("event_id", _paths("eventId"), _paths("messageId")),
    RawField("event_type", _paths("eventType"), _paths("event")),
    RawField("call_type", (), _paths("type")),
    RawField("source", _paths("source"), ()),
    RawField("user_id", _paths("userId"), _paths("userId")),
    # An alias call's previousId is the identity being merged into userId (usually the
    # anonymous id the visitor had): kept in anonymous_id, so the alias links the two.
    RawField("anonymous_id", _paths("anonymousId"), _paths("anonymousId", "previousId")),
    RawField("session_id", _paths("sessionId"), _paths("context.sessionId", "properties.sessionId")),
    RawField("entity_type", _paths("entityType"), ()),
    RawField("entity_id", _paths("entityId"), ()),
    RawField("occurred_at", _paths("occurredAt", "props.occurred_at"), _paths("timestamp", "originalTimestamp")),
    RawField("sent_at", _paths("sentAt"), _paths("sentAt")),
    RawField("idempotency_key", _paths("idempotencyKey"), ()),
    RawField("correlation_id", _paths("correlationId"), ()),
    RawField("page_url", _paths("context.page.url"), _paths("context.page.url", "properties.url")),
    RawField("page_path", (), _paths("context.page.path", "properties.path")),
    RawField(
        "page_referrer",
        _paths("context.page.referrer", "attribution.referrer"),
        _paths("context.page.referrer", "properties.referrer"),
    ),
    # Server SDKs (analytics-python) have no document title: a page or screen call's `name`
    # is the nearest thing. Only page and screen calls have a top-level `name`.
    RawField("page_title", _paths("context.page.title"), _paths("context.page.title", "properties.title", "name")),
    RawField("context_user_agent", _paths("context.userAgent"), _paths("context.userAgent")),
    RawField("locale", _paths("context.locale"), _paths("context.locale")),
    RawField("timezone", _paths("context.timezone"), _paths("context.timezone")),
    # An IP the client vouches for (a server relaying its visitor's request) beats the
    # address the request came from; processing keeps only its prefix (orchestration/processing/enrich.py).
    RawField("context_ip", _paths("context.ip"), _paths("context.ip")),
    # Where the visit began: carries the campaign's UTM parameters and ad click ids when
    # the page itself no longer does.
    RawField("landing_page", _paths("attribution.landingPage"), ()),
    RawField("utm_source", _paths("attribution.utmSource"), _paths("context.campaign.source")),
    RawField("utm_medium", _paths("attribution.utmMedium"), _paths("context.campaign.medium")),
    RawField("utm_campaign", _paths("attribution.utmCampaign"), _paths("context.campaign.name")),
    RawField("utm_term", _paths("attribution.utmTerm"), _paths("context.campaign.term")),
    RawField("utm_content", _paths("attribution.utmContent"), _paths("context.campaign.content")),
    # RudderStack's SDKs send an identify call's traits in context.traits, not at the top.
    RawField("props", _paths("props"), _paths("properties", "traits", "context.traits"), json_object=True),
)

# Columns of the landing row itself, beside the payload fields.
ENVELOPE_COLUMNS = {
    "landing_id": pl.Int64,
    "tenant_id": pl.String,
    "received_at": pl.Int64,  # microseconds since the epoch, UTC
    "wire_format": pl.String,
    "header_user_agent": pl.String,
    "client_ip": pl.String,  # the address the request came from (landing.events_raw.client_ip)
    "tracking_plan": pl.String,  # the tenant's plan mode (ops.tenants.settings->>'tracking_plan')
}

RAW_SCHEMA: dict[str, pl.DataType] = {**ENVELOPE_COLUMNS, **{f.name: pl.String for f in RAW_FIELDS}}

# The canonical frame: what every later stage (validate, enrich, dedup, write) sees.
CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "landing_id": pl.Int64,
    "tenant_id": pl.String,
    "wire_format": pl.String,
    "event_id": pl.String,
    "event_type": pl.String,
    "source": pl.String,
    "user_id": pl.String,
    "anonymous_id": pl.String,
    "session_id": pl.String,
    "entity_type": pl.String,
    "entity_id": pl.String,
    "idempotency_key": pl.String,
    "correlation_id": pl.String,
    "occurred_at": pl.Datetime("us", "UTC"),
    "client_occurred_at": pl.Datetime("us", "UTC"),
    "sent_at": pl.Datetime("us", "UTC"),
    "received_at": pl.Datetime("us", "UTC"),
    "page_url": pl.String,
    "page_path": pl.String,
    "page_referrer": pl.String,
    "page_title": pl.String,
    "user_agent": pl.String,
    # The full client IP: enrichment replaces it with ip_prefix; it is never written to the warehouse.
    "ip": pl.String,
    "landing_page": pl.String,
    "locale": pl.String,
    "timezone": pl.String,
    "utm_source": pl.String,
    "utm_medium": pl.String,
    "utm_campaign": pl.String,
    "utm_term": pl.String,
    "utm_content": pl.String,
    "props": pl.String,
    "strict_plan": pl.Boolean,
    # Set when a timestamp was sent but could not be read: validation rejects the event.
    "unparsed_timestamp": pl.String,
}


def extraction_sql(field: RawField) -> str:
    """SQL for one raw field over a landing row aliased `r` (payload jsonb, wire_format text)."""

    def one(path: Path) -> str:
        location = "'{" + ",".join(path) + "}'"
        if field.json_object:
            value = f"r.payload #> {location}"
            return f"case when jsonb_typeof({value}) = 'object' then ({value})::text end"
        return f"r.payload #>> {location}"

    def first_of(paths: tuple[Path, ...]) -> str:
        if not paths:
            return "null"
        parts = [one(p) for p in paths]
        return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"

    return f"case r.wire_format when 'segment' then {first_of(field.segment)} else {first_of(field.native)} end"


# What nearly every client sends (RFC 3339: `Z` or an offset, any fraction): one pass.
_RFC3339 = "%Y-%m-%dT%H:%M:%S%.f%#z"
_TIMESTAMP = pl.Datetime("us", "UTC")


def _parse_slowly(text: pl.Expr) -> pl.Expr:
    """Every other accepted form: naive ISO (taken as UTC), space-separated, a bare date, epoch ms."""
    iso = text.str.strip_chars().str.replace(r"Z$", "+00:00")

    def attempt(fmt: str) -> pl.Expr:
        return iso.str.to_datetime(fmt, strict=False, time_zone="UTC", time_unit="us")

    epoch_ms = (
        pl.when(text.str.contains(r"^\s*-?\d{1,15}\s*$"))
        .then(pl.from_epoch(text.str.strip_chars().cast(pl.Int64, strict=False), time_unit="ms"))
        .dt.replace_time_zone("UTC")
        .dt.cast_time_unit("us")
    )
    return pl.coalesce(
        attempt(_RFC3339),
        attempt("%Y-%m-%dT%H:%M:%S%.f"),
        attempt("%Y-%m-%dT%H:%M:%S"),
        attempt("%Y-%m-%d %H:%M:%S%.f%z"),
        attempt("%Y-%m-%d %H:%M:%S%.f"),
        attempt("%Y-%m-%d %H:%M:%S"),
        iso.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        epoch_ms,
    )


# ISO 8601's four-digit years: PostgreSQL can store later ones, but not read them back
# from the text that carries them there, and no event happens in the year 22040.
_FIRST = datetime(1, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def _parse_series(text: pl.Series) -> pl.Series:
    parsed = text.str.to_datetime(_RFC3339, strict=False, time_zone="UTC", time_unit="us")
    # Why not one coalesce of every form: Polars evaluates each form over every row, and
    # this was the costliest step of a batch. Only the rows the common form missed try the rest.
    missed = parsed.is_null() & text.is_not_null()
    if missed.any():
        rest = pl.select(_parse_slowly(pl.lit(text.filter(missed)))).to_series()
        parsed = parsed.scatter(missed.arg_true(), rest)
    return pl.select(pl.when(parsed.is_between(_FIRST, _LAST)).then(parsed)).to_series()


def parse_timestamp(text: pl.Expr) -> pl.Expr:
    """ISO-8601 (with or without zone, `Z`, fraction) or epoch milliseconds → UTC datetime.

    Naive times are taken as UTC. Null when the text is none of these."""
    return text.map_batches(_parse_series, return_dtype=_TIMESTAMP)


_UUID = r"^(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"


def canonical_uuid(text: pl.Expr) -> pl.Expr:
    """A UUID in any accepted spelling (upper case, no dashes) → lower case with dashes, as
    the API echoes it; other ids (Segment messageIds) are left exactly as sent. Why: the
    de-duplication key must be the id the client was told, whatever its spelling."""
    hexits = text.str.replace_all("-", "", literal=True).str.to_lowercase()
    dashed = pl.concat_str(
        hexits.str.slice(0, 8),
        hexits.str.slice(8, 4),
        hexits.str.slice(12, 4),
        hexits.str.slice(16, 4),
        hexits.str.slice(20, 12),
        separator="-",
    )
    return pl.when(text.str.contains(_UUID)).then(dashed).otherwise(text)


def event_type(aliases: dict[str, str]) -> pl.Expr:
    """The canonical event type: Segment call types mapped, aliases resolved, blanks null."""
    sent = pl.col("event_type").str.strip_chars()
    named = (
        pl.when(pl.col("wire_format") == SEGMENT)
        .then(
            pl.when(pl.col("call_type") == "track")
            .then(sent)
            .otherwise(pl.col("call_type").replace_strict(SEGMENT_CALL_TYPES, default=None, return_dtype=pl.String))
        )
        .otherwise(sent)
    )
    resolved = named.replace(aliases) if aliases else named
    return pl.when(resolved.str.len_chars() > 0).then(resolved).alias("event_type")


def corrected_occurred_at(client: pl.Expr, sent: pl.Expr, received: pl.Expr) -> pl.Expr:
    """Why: client clocks are wrong by minutes to years. When the client says when it sent
    the event, the delay it measured on its own clock is right even if the clock is not:
    occurred_at = received_at - (sent_at - client occurredAt)."""
    return (
        pl.when(client.is_null())
        .then(received)
        .when(sent.is_not_null())
        .then(received - (sent - client))
        .otherwise(client)
    )


def canonical(raw: pl.LazyFrame, aliases: dict[str, str]) -> pl.LazyFrame:
    """Raw text columns (RAW_SCHEMA) → the canonical frame (CANONICAL_SCHEMA)."""
    received = pl.from_epoch(pl.col("received_at"), time_unit="us").dt.replace_time_zone("UTC")
    client_occurred = pl.col("_client_occurred_at")
    sent = pl.col("_sent_at")
    unparsed = (
        pl.when(pl.col("occurred_at").is_not_null() & client_occurred.is_null())
        .then(pl.format("occurredAt {}", pl.col("occurred_at")))
        .when(pl.col("sent_at").is_not_null() & sent.is_null())
        .then(pl.format("sentAt {}", pl.col("sent_at")))
    )
    parsed = raw.with_columns(
        parse_timestamp(pl.col("occurred_at")).alias("_client_occurred_at"),
        parse_timestamp(pl.col("sent_at")).alias("_sent_at"),
    )
    return parsed.select(
        pl.col("landing_id"),
        pl.col("tenant_id"),
        pl.col("wire_format"),
        canonical_uuid(pl.col("event_id")).alias("event_id"),
        event_type(aliases),
        pl.col("source").fill_null("web"),
        pl.col("user_id"),
        pl.col("anonymous_id"),
        canonical_uuid(pl.col("session_id")).alias("session_id"),
        pl.col("entity_type"),
        pl.col("entity_id"),
        canonical_uuid(pl.col("idempotency_key")).alias("idempotency_key"),
        pl.col("correlation_id"),
        corrected_occurred_at(client_occurred, sent, received).alias("occurred_at"),
        client_occurred.alias("client_occurred_at"),
        sent.alias("sent_at"),
        received.alias("received_at"),
        pl.col("page_url"),
        pl.coalesce(pl.col("page_path"), pl.col("page_url").str.extract(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*([^?#]*)")),
        pl.col("page_referrer"),
        pl.col("page_title"),
        pl.coalesce(pl.col("context_user_agent"), pl.col("header_user_agent")).alias("user_agent"),
        pl.coalesce(pl.col("context_ip"), pl.col("client_ip")).str.strip_chars().alias("ip"),
        pl.col("landing_page"),
        pl.col("locale"),
        pl.col("timezone"),
        pl.col("utm_source"),
        pl.col("utm_medium"),
        pl.col("utm_campaign"),
        pl.col("utm_term"),
        pl.col("utm_content"),
        pl.col("props").fill_null("{}"),
        (pl.col("tracking_plan") == tracking_plan.STRICT).fill_null(False).alias("strict_plan"),
        unparsed.alias("unparsed_timestamp"),
    ).cast(CANONICAL_SCHEMA)
