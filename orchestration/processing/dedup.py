"""De-duplication: which valid events are re-sends of an earlier-landed one. Pure Polars.

The rule, within one tenant and never across tenants: a valid event is a duplicate
when an earlier-landed valid event (lower landing id) shares one of its keys:

- `event_id`: the same eventId (Segment: messageId);
- `idempotency_key`: the same idempotencyKey;
- `fingerprint`: the same event type, user (else anonymous) id, session, entity and
  client's occurredAt to the second (when sent), unless the tracking plan turns it off for the type.

It duplicates the earliest such event; when that event shares several keys, the rule
named is the first in the order above. Why this definition: it depends only on the
set of valid events and their landing ids, never on which batch saw what first, so
the outcome is the same however the backlog is split into batches and in whatever
order the batches run (orchestration/batches.py keeps every valid event's keys so a
later batch can be judged against earlier ones, and earlier ones against it).
"""

from __future__ import annotations

import polars as pl

from tributary.tracking_plan import TrackingPlan

EVENT_ID = "event_id"
IDEMPOTENCY_KEY = "idempotency_key"
FINGERPRINT = "fingerprint"
RULES = (EVENT_ID, IDEMPOTENCY_KEY, FINGERPRINT)
"""In precedence order: the rule named when the earliest match shares several keys."""

KEY_SCHEMA: dict[str, pl.DataType] = {
    "tenant_id": pl.String,
    "kind": pl.String,
    "key": pl.String,
    "landing_id": pl.Int64,
    "event_id": pl.String,
}
VERDICT_SCHEMA: dict[str, pl.DataType] = {
    "landing_id": pl.Int64,
    "rule": pl.String,
    "duplicate_of_event_id": pl.String,
    "duplicate_of_landing_id": pl.Int64,
}

# A separator no id contains, so ("a|b", "c") and ("a", "b|c") never share a fingerprint.
_SEP = "\x1f"


def fingerprint(fingerprint_off: list[str]) -> pl.Expr:
    """The same-second re-send key over the canonical frame; null where it does not apply.

    Why the client's occurredAt and not the corrected one: the correction adds each
    request's network delay, which can push two copies of one click into different
    seconds. Only events that state when they occurred, and whose user or anonymous id
    is known, get one: without occurredAt the time is the server's receipt, shared by
    every event of a request, and two strangers' clicks in one second are not one event."""
    identity = pl.coalesce("user_id", "anonymous_id")
    second = pl.col("client_occurred_at").dt.epoch("s").cast(pl.String)
    key = pl.concat_str(
        pl.col("event_type"),
        identity,
        pl.col("session_id").fill_null(""),
        pl.col("entity_type").fill_null(""),
        pl.col("entity_id").fill_null(""),
        second,
        separator=_SEP,
    )
    applies = identity.is_not_null() & pl.col("client_occurred_at").is_not_null()
    if fingerprint_off:
        applies = applies & ~pl.col("event_type").is_in(fingerprint_off)
    return pl.when(applies).then(key)


def keys(valid: pl.LazyFrame, plan: TrackingPlan) -> pl.LazyFrame:
    """Every key of every valid event: tenant_id, kind, key, landing_id, event_id (KEY_SCHEMA)."""
    off = sorted(name for name, t in plan.types.items() if not t.fingerprint_dedup)
    wide = valid.select(
        "tenant_id",
        "landing_id",
        "event_id",
        pl.col("event_id").alias(f"key_{EVENT_ID}"),
        pl.col("idempotency_key").alias(f"key_{IDEMPOTENCY_KEY}"),
        fingerprint(off).alias(f"key_{FINGERPRINT}"),
    )
    return (
        wide.unpivot(
            index=["tenant_id", "landing_id", "event_id"],
            on=[f"key_{rule}" for rule in RULES],
            variable_name="kind",
            value_name="key",
        )
        .filter(pl.col("key").is_not_null() & (pl.col("key") != ""))
        .with_columns(pl.col("kind").str.strip_prefix("key_"))
        .select(list(KEY_SCHEMA))
        .cast(KEY_SCHEMA)
    )


def judge(key_rows: pl.LazyFrame) -> pl.LazyFrame:
    """Verdicts (VERDICT_SCHEMA) for every landing id among `key_rows` that is a duplicate.

    A landing id's verdict is complete when `key_rows` holds every row sharing one of
    its keys (the caller's job across batches); rows of other events may be partial."""
    group = ("tenant_id", "kind", "key")
    precedence = {rule: i for i, rule in enumerate(RULES)}
    return (
        key_rows.with_columns(
            pl.col("landing_id").min().over(group).alias("duplicate_of_landing_id"),
            pl.col("event_id").sort_by("landing_id").first().over(group).alias("duplicate_of_event_id"),
            pl.col("kind").replace_strict(precedence, return_dtype=pl.Int8).alias("precedence"),
        )
        .filter(pl.col("duplicate_of_landing_id") < pl.col("landing_id"))
        .sort("landing_id", "duplicate_of_landing_id", "precedence")
        .unique("landing_id", keep="first", maintain_order=True)
        .select(
            "landing_id",
            pl.col("kind").alias("rule"),
            "duplicate_of_event_id",
            "duplicate_of_landing_id",
        )
        .cast(VERDICT_SCHEMA)
    )
