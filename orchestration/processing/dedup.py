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

from hashlib import md5

import polars as pl

from tributary.tracking_plan import TrackingPlan

EVENT_ID = "event_id"
IDEMPOTENCY_KEY = "idempotency_key"
FINGERPRINT = "fingerprint"
RULES = (EVENT_ID, IDEMPOTENCY_KEY, FINGERPRINT)
"""In precedence order: the rule named when the earliest match shares several keys."""

KEY_SCHEMA: dict[str, pl.DataType] = {
    "tenant_id": pl.String,
    "landing_id": pl.Int64,
    "event_id": pl.String,
    **{f"{rule}_digest": pl.String for rule in RULES},
}
"""One row per valid event with its keys as digests (null: the key does not apply): what
warehouse.dedup_keys stores, one indexed column per rule."""
VERDICT_SCHEMA: dict[str, pl.DataType] = {
    "landing_id": pl.Int64,
    "rule": pl.String,
    "duplicate_of_event_id": pl.String,
    "duplicate_of_landing_id": pl.Int64,
}

# A separator no id contains, so ("a|b", "c") and ("a", "b|c") never share a fingerprint.
_SEP = "\x1f"
# The spelling contract.canonical_uuid gives every UUID-shaped eventId and idempotencyKey.
_UUID_GROUPS = ((0, 8), (8, 4), (12, 4), (16, 4), (20, 12))
_CANONICAL_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


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


def digest(keys: pl.Series) -> pl.Series:
    """Each key as a UUID in PostgreSQL's spelling: a UUID's own, any other text's md5.

    Why: a fixed 16 bytes whatever the client sent, so the index stays small and no long id
    can overflow a btree entry; and most eventIds and idempotencyKeys are UUIDs already, so
    only the rest (fingerprints, Segment's free-form messageIds) cost a hash."""
    keys = pl.select(pl.when(keys != "").then(keys)).to_series()
    uuid_like = keys.str.contains(_CANONICAL_UUID).fill_null(False)
    digests = pl.select(pl.when(uuid_like).then(keys)).to_series()
    to_hash = ~uuid_like & keys.is_not_null()
    if to_hash.any():
        # A Python call per key, not per distinct key: within a batch keys rarely repeat (a
        # repeat is a duplicate), and Polars has no stable hash to store (its own may change
        # between versions). About 0.4 µs a key.
        hexes = pl.Series([md5(key.encode()).hexdigest() for key in keys.filter(to_hash).to_list()])
        dashed = pl.select(
            pl.concat_str([hexes.str.slice(start, length) for start, length in _UUID_GROUPS], separator="-")
        ).to_series()
        digests = digests.scatter(to_hash.arg_true(), dashed)
    return digests


def keys(valid: pl.DataFrame, plan: TrackingPlan) -> pl.DataFrame:
    """Every valid event's keys (KEY_SCHEMA)."""
    off = sorted(name for name, t in plan.types.items() if not t.fingerprint_dedup)
    texts = valid.select(
        "tenant_id",
        "landing_id",
        "event_id",
        pl.col("event_id").alias(f"{EVENT_ID}_key"),
        pl.col("idempotency_key").alias(f"{IDEMPOTENCY_KEY}_key"),
        fingerprint(off).alias(f"{FINGERPRINT}_key"),
    )
    return texts.select(
        "tenant_id", "landing_id", "event_id", *(digest(texts[f"{rule}_key"]).alias(f"{rule}_digest") for rule in RULES)
    ).cast(KEY_SCHEMA)


def judge(key_rows: pl.LazyFrame) -> pl.LazyFrame:
    """Verdicts (VERDICT_SCHEMA) for every landing id among `key_rows` (KEY_SCHEMA) that is a duplicate.

    A landing id's verdict is complete when `key_rows` holds every event sharing one of
    its keys (the caller's job across batches); rows of other events may be partial."""
    verdicts = []
    for precedence, rule in enumerate(RULES):
        key = (pl.col("tenant_id"), pl.col(f"{rule}_digest"))
        # Most keys are unique: keep only those shared, before the costlier windows.
        shared = key_rows.filter(key[1].is_not_null() & pl.struct(*key).is_duplicated())
        verdicts.append(
            shared.select(
                "landing_id",
                pl.lit(rule).alias("rule"),
                pl.col("event_id").sort_by("landing_id").first().over(*key).alias("duplicate_of_event_id"),
                pl.col("landing_id").min().over(*key).alias("duplicate_of_landing_id"),
                pl.lit(precedence, pl.Int8).alias("precedence"),
            )
        )
    return (
        pl.concat(verdicts)
        .filter(pl.col("duplicate_of_landing_id") < pl.col("landing_id"))
        .sort("landing_id", "duplicate_of_landing_id", "precedence")
        .unique("landing_id", keep="first", maintain_order=True)
        .drop("precedence")
        .cast(VERDICT_SCHEMA)
    )
