"""Claim a batch of landed rows, run it through the rules, write the outcome: one transaction.

The claim is `SELECT … FOR UPDATE SKIP LOCKED` in landing-id order, so concurrent
runs never take the same rows, and everything the batch writes (warehouse rows,
processed markers, the ops.batches row) commits together: a run killed half way
leaves its rows unclaimed for the next run. The backlog is found by the
`processed_at is null` marker, never by a "max id seen" cursor, because identity
values from concurrent inserts commit out of order.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
import psycopg

from orchestration.processing.batch import Outcome, process
from orchestration.processing.validate import Limits
from tributary import contract
from tributary.tracking_plan import TrackingPlan

# Columns written to warehouse.events from the batch frame, in this order.
EVENT_COLUMNS = (
    "tenant_id",
    "event_id",
    "landing_id",
    "event_type",
    "category",
    "source",
    "wire_format",
    "user_id",
    "anonymous_id",
    "session_id",
    "entity_type",
    "entity_id",
    "idempotency_key",
    "correlation_id",
    "occurred_at",
    "client_occurred_at",
    "sent_at",
    "received_at",
    "page_url",
    "page_path",
    "page_referrer",
    "page_title",
    "user_agent",
    "locale",
    "timezone",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "props",
)


def claim_sql(limit: int) -> str:
    fields = ",\n       ".join(f"{contract.extraction_sql(f)} as {f.name}" for f in contract.RAW_FIELDS)
    return f"""
copy (
select r.id as landing_id, r.tenant_id, (extract(epoch from r.received_at) * 1000000)::bigint as received_at,
       r.wire_format, r.user_agent as header_user_agent,
       {fields}
from landing.events_raw r
where r.processed_at is null
order by r.id
limit {int(limit)}
for update skip locked
) to stdout (format csv, header)"""


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    claimed: int
    events: int
    rejects: int
    duplicates: int
    seconds: float
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    duplicates_by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.claimed / self.seconds if self.seconds > 0 else 0.0


def claim(conn: psycopg.Connection, limit: int) -> pl.DataFrame:
    """Lock up to `limit` unprocessed landing rows (inside the caller's transaction) and read them."""
    buffer = io.BytesIO()
    with conn.cursor().copy(claim_sql(limit)) as copy:
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    # Quoted empty strings stay strings, unquoted empties are NULL: the CSV form of both.
    return pl.read_csv(buffer, schema=contract.RAW_SCHEMA, raise_if_empty=False)


def _copy_frame(conn: psycopg.Connection, table: str, frame: pl.DataFrame) -> None:
    data = frame.write_csv(include_header=False, null_value="\\N", datetime_format="%Y-%m-%dT%H:%M:%S%.6f%z")
    with conn.cursor().copy(f"copy {table} ({', '.join(frame.columns)}) from stdin (format csv, null '\\N')") as copy:
        copy.write(data.encode())


def write(conn: psycopg.Connection, batch_id: int, outcome: Outcome, claimed_ids: pl.Series) -> tuple[int, int]:
    """Write a processed batch; return (events inserted, duplicates of earlier batches)."""
    conn.execute(
        f"create temp table batch_events on commit drop as"
        f" select {', '.join(EVENT_COLUMNS)} from warehouse.events with no data"
    )
    _copy_frame(conn, "batch_events", outcome.events.select(EVENT_COLUMNS))
    conn.execute(
        "create temp table batch_judged (landing_id bigint primary key, kind text not null,"
        " code text not null, detail text) on commit drop"
    )
    judged = pl.concat(
        [
            outcome.rejects.select(
                "landing_id",
                pl.lit("reject").alias("kind"),
                pl.col("reason_code").alias("code"),
                pl.col("reason_detail").alias("detail"),
            ),
            outcome.duplicates.select(
                "landing_id",
                pl.lit("duplicate").alias("kind"),
                pl.col("rule").alias("code"),
                pl.col("duplicate_of_event_id").alias("detail"),
            ),
        ]
    )
    _copy_frame(conn, "batch_judged", judged)

    # An event_id already in the warehouse (from an earlier batch, or a concurrent run
    # that committed first) makes this copy a duplicate: the primary key decides.
    inserted = conn.execute(
        f"""
        insert into warehouse.events ({", ".join(EVENT_COLUMNS)}, batch_id, processed_at)
        select {", ".join(EVENT_COLUMNS)}, %(batch)s, now() from batch_events
        on conflict (tenant_id, event_id) do nothing
        """,
        {"batch": batch_id},
    ).rowcount
    earlier = conn.execute(
        """
        insert into batch_judged (landing_id, kind, code, detail)
        select b.landing_id, 'duplicate', 'event_id', b.event_id
        from batch_events b
        where not exists (select 1 from warehouse.events e where e.landing_id = b.landing_id)
        """
    ).rowcount
    conn.execute(
        """
        insert into warehouse.event_rejects
            (landing_id, tenant_id, batch_id, received_at, wire_format, payload, reason_code, reason_detail)
        select r.id, r.tenant_id, %(batch)s, r.received_at, r.wire_format, r.payload, j.code, j.detail
        from batch_judged j join landing.events_raw r on r.id = j.landing_id
        where j.kind = 'reject'
        """,
        {"batch": batch_id},
    )
    conn.execute(
        """
        insert into warehouse.event_duplicates
            (landing_id, tenant_id, batch_id, received_at, wire_format, payload, rule, duplicate_of_event_id)
        select r.id, r.tenant_id, %(batch)s, r.received_at, r.wire_format, r.payload, j.code, j.detail
        from batch_judged j join landing.events_raw r on r.id = j.landing_id
        where j.kind = 'duplicate'
        """,
        {"batch": batch_id},
    )
    conn.execute(
        "update landing.events_raw set processed_at = now(), batch_id = %(batch)s where id = any(%(ids)s)",
        {"batch": batch_id, "ids": claimed_ids.to_list()},
    )
    return inserted, earlier


def run_batch(
    conn: psycopg.Connection, plan: TrackingPlan, limits: Limits, size: int, run_id: str | None = None
) -> BatchResult | None:
    """Claim, process and write one batch in one transaction; None when the backlog is empty."""
    started = datetime.now(UTC)
    clock = time.perf_counter()
    with conn.transaction():
        raw = claim(conn, size)
        if raw.height == 0:
            return None
        outcome = process(raw, plan, limits)
        batch_id = conn.execute("select nextval(pg_get_serial_sequence('ops.batches', 'id'))").fetchone()[0]
        inserted, earlier = write(conn, batch_id, outcome, raw["landing_id"])
        duplicates = outcome.duplicates.height + earlier
        seconds = time.perf_counter() - clock
        conn.execute(
            """
            insert into ops.batches (id, run_id, started_at, finished_at, claimed, events, rejects, duplicates,
                                     first_landing_id, last_landing_id)
            values (%s, %s, %s, now(), %s, %s, %s, %s, %s, %s)
            """,
            (
                batch_id,
                run_id,
                started,
                raw.height,
                inserted,
                outcome.rejects.height,
                duplicates,
                raw["landing_id"].min(),
                raw["landing_id"].max(),
            ),
        )
    by_rule = _counts(outcome.duplicates, "rule")
    if earlier:
        by_rule["event_id"] = by_rule.get("event_id", 0) + earlier
    return BatchResult(
        batch_id=batch_id,
        claimed=raw.height,
        events=inserted,
        rejects=outcome.rejects.height,
        duplicates=duplicates,
        seconds=seconds,
        rejects_by_reason=_counts(outcome.rejects, "reason_code"),
        duplicates_by_rule=by_rule,
    )


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    counted = frame.group_by(column).len()
    return dict(zip(counted[column].to_list(), counted["len"].to_list(), strict=True))


def process_backlog(
    conn: psycopg.Connection, plan: TrackingPlan, limits: Limits, size: int, run_id: str | None = None
) -> Iterator[BatchResult]:
    """Run batches until nothing is left to claim (rows another run has locked are skipped)."""
    while (result := run_batch(conn, plan, limits, size, run_id)) is not None:
        yield result


def backlog(conn: psycopg.Connection) -> int:
    return conn.execute("select count(*) from landing.events_raw where processed_at is null").fetchone()[0]
