"""Validation: each landed event either passes or gets one reason code and a readable detail.

Rules are checked in order and the first that fails names the rejection, so a
reject always has exactly one reason. The reason codes are part of the product:
dashboards group by them and `replay` is run per reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

MISSING_EVENT_TYPE = "missing_event_type"
MISSING_EVENT_ID = "missing_event_id"
INVALID_TIMESTAMP = "invalid_timestamp"
TOO_OLD = "too_old"
IN_FUTURE = "in_future"


@dataclass(frozen=True)
class Limits:
    max_age_days: int = 30
    max_clock_skew_seconds: int = 300


def rejection(limits: Limits) -> tuple[pl.Expr, pl.Expr]:
    """(reason_code, reason_detail) expressions over the canonical frame; both null for a valid event."""
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
    ]
    code = pl.when(rules[0][1]).then(pl.lit(rules[0][0]))
    detail = pl.when(rules[0][1]).then(rules[0][2])
    for name, failed, text in rules[1:]:
        code = code.when(failed).then(pl.lit(name))
        detail = detail.when(failed).then(text)
    return code.alias("reason_code"), detail.alias("reason_detail")
