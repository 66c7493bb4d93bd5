"""Validation: each landed event either passes or gets one reason code and a readable detail.

Rules are checked in order and the first that fails names the rejection, so a
reject always has exactly one reason. The reason codes are part of the product:
dashboards group by them and `replay` is run per reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tributary.tracking_plan import TrackingPlan

MISSING_EVENT_TYPE = "missing_event_type"
MISSING_EVENT_ID = "missing_event_id"
OVERSIZED = "oversized"
INVALID_TIMESTAMP = "invalid_timestamp"
TOO_OLD = "too_old"
IN_FUTURE = "in_future"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
MISSING_REQUIRED_PROPS = "missing_required_props"
REASON_CODES = (
    MISSING_EVENT_TYPE,
    MISSING_EVENT_ID,
    OVERSIZED,
    INVALID_TIMESTAMP,
    TOO_OLD,
    IN_FUTURE,
    UNKNOWN_EVENT_TYPE,
    MISSING_REQUIRED_PROPS,
)
"""Every reason code, in the order the rules are checked."""

# The catalogue's own limit on eventType, whatever the general string limit.
MAX_EVENT_TYPE_CHARS = 100
# Text columns of the canonical frame held to `max_string_chars` (props has its own limit;
# the others are set by Tributary, not the client). Names as the client knows them.
LIMITED_STRINGS = {
    "event_id": "eventId",
    "source": "source",
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "session_id": "sessionId",
    "entity_type": "entityType",
    "entity_id": "entityId",
    "idempotency_key": "idempotencyKey",
    "correlation_id": "correlationId",
    "page_url": "page url",
    "page_path": "page path",
    "page_referrer": "referrer",
    "page_title": "page title",
    "user_agent": "userAgent",
    "ip": "ip",
    "landing_page": "landingPage",
    "locale": "locale",
    "timezone": "timezone",
    "utm_source": "utmSource",
    "utm_medium": "utmMedium",
    "utm_campaign": "utmCampaign",
    "utm_term": "utmTerm",
    "utm_content": "utmContent",
}
# A required prop these entity types satisfy with entityType + entityId instead
# (CATALOGUE: jobs are keyed by props.job_id or by a `job` entity).
ENTITY_ALTERNATIVES = {"job_id": "job"}


@dataclass(frozen=True)
class Limits:
    max_age_days: int = 30
    max_clock_skew_seconds: int = 300
    max_string_chars: int = 4096
    """Longest text field (URL, user agent, ids, …), in characters."""
    max_props_bytes: int = 16 * 1024
    """Largest props object, in bytes of its JSON text."""


def oversized(limits: Limits) -> pl.Expr:
    """What is too large, e.g. "page url is 5000 characters; the limit is 4096"; null when nothing is.

    Why: one huge field costs every query that reads the column, and is never analytics."""
    too_long = [
        pl.when(pl.col("event_type").str.len_chars() > MAX_EVENT_TYPE_CHARS).then(
            pl.format(
                "eventType is {} characters; the limit is {}",
                pl.col("event_type").str.len_chars(),
                pl.lit(MAX_EVENT_TYPE_CHARS),
            )
        ),
        *(
            pl.when(pl.col(column).str.len_chars() > limits.max_string_chars).then(
                pl.format(
                    "{} is {} characters; the limit is {}",
                    pl.lit(name),
                    pl.col(column).str.len_chars(),
                    pl.lit(limits.max_string_chars),
                )
            )
            for column, name in LIMITED_STRINGS.items()
        ),
        pl.when(pl.col("props").str.len_bytes() > limits.max_props_bytes).then(
            pl.format(
                "props is {} bytes of JSON; the limit is {}",
                pl.col("props").str.len_bytes(),
                pl.lit(limits.max_props_bytes),
            )
        ),
    ]
    return pl.coalesce(too_long)


def _json_key(name: str) -> str:
    return "$['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def missing_props(plan: TrackingPlan) -> pl.Expr:
    """The required props an event lacks, comma-separated ("amount_cents, payment_method"); else null.

    A prop sent as JSON null counts as missing. Each key is looked up only in the rows of
    the types that require it (the others are null to json_path_match, which skips them)."""
    requiring: dict[str, list[str]] = {}
    for name, event_type in plan.types.items():
        for prop in event_type.required:
            requiring.setdefault(prop, []).append(name)
    lacking = []
    for prop, types in sorted(requiring.items()):
        wanted = pl.col("event_type").is_in(types)
        present = pl.when(wanted).then(pl.col("props")).str.json_path_match(_json_key(prop)).is_not_null()
        if prop in ENTITY_ALTERNATIVES:
            present = present | (
                (pl.col("entity_type") == ENTITY_ALTERNATIVES[prop]) & (pl.col("entity_id").str.len_chars() > 0)
            )
        lacking.append(pl.when(wanted & ~present.fill_null(False)).then(pl.lit(prop)))
    if not lacking:
        return pl.lit(None, dtype=pl.String)
    listed = pl.concat_str(lacking, separator=", ", ignore_nulls=True)
    return pl.when(listed != "").then(listed)


def rejection(limits: Limits, plan: TrackingPlan) -> tuple[pl.Expr, pl.Expr]:
    """(reason_code, reason_detail) expressions over the canonical frame; both null for a valid event."""
    too_large = oversized(limits)
    lacking = missing_props(plan)
    known = pl.col("event_type").is_in(list(plan.types))
    age = pl.col("received_at") - pl.col("occurred_at")
    too_old = age > pl.duration(days=limits.max_age_days)
    in_future = -age > pl.duration(seconds=limits.max_clock_skew_seconds)
    rules: list[tuple[str, pl.Expr, pl.Expr]] = [
        (
            MISSING_EVENT_TYPE,
            pl.col("event_type").is_null(),
            pl.lit("eventType is missing or empty (Segment: a track call needs `event`)"),
        ),
        (
            MISSING_EVENT_ID,
            pl.col("event_id").is_null() | (pl.col("event_id").str.len_chars() == 0),
            pl.lit("the event has no eventId/messageId, so re-sends could not be recognised"),
        ),
        (OVERSIZED, too_large.is_not_null(), too_large),
        (
            INVALID_TIMESTAMP,
            pl.col("unparsed_timestamp").is_not_null(),
            pl.format("could not read {}: send ISO-8601 or epoch milliseconds", pl.col("unparsed_timestamp")),
        ),
        (
            TOO_OLD,
            too_old,
            pl.format(
                "occurredAt {} is {} days before it was received; the limit is {} days",
                pl.col("occurred_at"),
                age.dt.total_days(),
                pl.lit(limits.max_age_days),
            ),
        ),
        (
            IN_FUTURE,
            in_future,
            pl.format(
                "occurredAt {} is {} s after it was received; the clock-skew tolerance is {} s",
                pl.col("occurred_at"),
                (-age).dt.total_seconds(),
                pl.lit(limits.max_clock_skew_seconds),
            ),
        ),
        (
            UNKNOWN_EVENT_TYPE,
            pl.col("strict_plan") & ~known,
            pl.format(
                "event type {} is not in the tracking plan, and this tenant's plan is strict:"
                " add it to the plan (or fix its name), then replay",
                pl.col("event_type"),
            ),
        ),
        (
            MISSING_REQUIRED_PROPS,
            lacking.is_not_null(),
            pl.format("{} requires props: {} (missing or null)", pl.col("event_type"), lacking),
        ),
    ]
    code = pl.when(rules[0][1]).then(pl.lit(rules[0][0]))
    detail = pl.when(rules[0][1]).then(rules[0][2])
    for name, failed, text in rules[1:]:
        code = code.when(failed).then(pl.lit(name))
        detail = detail.when(failed).then(text)
    return code.alias("reason_code"), detail.alias("reason_detail")
