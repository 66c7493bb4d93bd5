"""Claim a batch of landed rows, run it through the rules, write the outcome: one transaction.

The claim is `SELECT … FOR UPDATE SKIP LOCKED` on `landing.backlog` (the ids of landed
rows not yet processed) in landing-id order, so concurrent runs never take the same
rows, and everything the batch does (warehouse rows, deleting its ids from the backlog,
the ops.batches row) commits together: a run killed half way leaves its rows queued for
the next run. The backlog is that queue, never a "max id seen" cursor, because identity
values from concurrent inserts commit out of order.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
import psycopg

from orchestration.processing import ENGINE, dedup
from orchestration.processing.batch import Outcome, process
from orchestration.processing.enrich import Enrichment
from orchestration.processing.validate import Limits
from tributary import contract
from tributary.tracking_plan import TrackingPlan

# Rejects and duplicates keep the payload as sent, for replay and tracing, less the
# client's IP: a whole IP never reaches the warehouse (landing keeps it). (`#-` fails on a
# path through a list, and lenient SDKs may send any JSON as `context`.)
KEPT_PAYLOAD = (
    "case when jsonb_typeof(r.payload->'context') = 'object' then r.payload #- '{context,ip}' else r.payload end"
)
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
    *("browser", "browser_version", "os", "device", "device_type", "is_bot", "ip_prefix", "country", "referrer_medium"),
)


_CLAIMED_SCHEMA = {name: dtype for name, dtype in contract.RAW_SCHEMA.items() if name != "tracking_plan"}


def claim_sql(limit: int, only_ids: list[int] | None = None) -> str:
    fields = ",\n       ".join(f"{contract.extraction_sql(f)} as {f.name}" for f in contract.RAW_FIELDS)
    return f"""
copy (
with claimed as (
    select b.id from landing.backlog b
    where true{_only(only_ids)}
    order by b.id
    limit {int(limit)}
    for update skip locked
)
select r.id as landing_id, r.tenant_id, (extract(epoch from r.received_at) * 1000000)::bigint as received_at,
       r.wire_format, r.user_agent as header_user_agent, host(r.client_ip) as client_ip,
       {fields}
from landing.events_raw r
-- One primary-key probe per claimed id, whatever the planner thinks of the backlog's size.
where r.id = any(array(select id from claimed))
order by r.id
) to stdout (format csv, header)"""


def _only(ids: list[int] | None) -> str:
    """Restrict a claim to chosen landing ids (tests run chosen batches in a chosen order)."""
    if ids is None:
        return ""
    return f" and b.id = any('{{{','.join(str(int(i)) for i in ids)}}}'::bigint[])"


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
    reclassified: int = 0
    """Events of earlier batches found to re-send an event of this one that landed before
    them: moved from warehouse.events (or re-pointed within event_duplicates)."""

    @property
    def events_per_s(self) -> float:
        return self.claimed / self.seconds if self.seconds > 0 else 0.0


def claim(conn: psycopg.Connection, limit: int, only_ids: list[int] | None = None) -> pl.DataFrame:
    """Lock up to `limit` unprocessed landing rows (inside the caller's transaction) and read them;
    with `only_ids`, only among those landing ids."""
    buffer = io.BytesIO()
    with conn.cursor().copy(claim_sql(limit, only_ids)) as copy:
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    # Quoted empty strings stay strings, unquoted empties are NULL: the CSV form of both.
    raw = pl.read_csv(buffer, schema=_CLAIMED_SCHEMA, raise_if_empty=False)
    # Each tenant's plan mode, read once per batch rather than once per row.
    modes = conn.execute(
        "select id::text, settings->>'tracking_plan' from ops.tenants where id = any(%s::uuid[])",
        (raw["tenant_id"].unique().to_list(),),
    ).fetchall()
    plans = pl.DataFrame(modes, schema={"tenant_id": pl.String, "tracking_plan": pl.String}, orient="row")
    return raw.join(plans, on="tenant_id", how="left", maintain_order="left").select(list(contract.RAW_SCHEMA))


def _copy_frame(conn: psycopg.Connection, table: str, frame: pl.DataFrame) -> None:
    # Polars' own spelling of a UTC microsecond timestamp (2026-01-02T03:04:05.123456+0000)
    # is what PostgreSQL reads; naming a format instead takes a slower path (+40% CSV time).
    # CSV's own null, as PostgreSQL reads it: an unquoted empty field; Polars quotes an empty
    # string (""). A marker such as \N is written unquoted, so a client's "\N" came back
    # NULL (the fuzzer sent one as an event type: a not-null violation failed the batch).
    data = io.BytesIO()
    frame.write_csv(data, include_header=False)
    with conn.cursor().copy(f"copy {table} ({', '.join(frame.columns)}) from stdin (format csv)") as copy:
        copy.write(data.getbuffer())


@dataclass(frozen=True)
class Written:
    events: int
    duplicates: pl.DataFrame
    """landing_id, rule, duplicate_of_event_id: this batch's duplicates, judged against every batch."""
    reclassified: int


def _probe(outer: str, where: str = "") -> str:
    """warehouse.dedup_keys rows sharing a key with a row of `outer` (alias b): one index probe
    per key and rule. LATERAL with `offset 0` (which keeps PostgreSQL from flattening it
    into a plain join), so that no statistics can turn the probes into a scan of every key
    ever kept: a hash join over the whole table is what the planner chose at 500k keys."""
    return "\n    union\n    ".join(
        f"select k.* from {outer} cross join lateral (select * from warehouse.dedup_keys k"
        f" where (k.tenant_id, k.{rule}_digest) = (b.tenant_id, b.{rule}_digest) offset 0) k"
        f" where b.{rule}_digest is not null{where}"
        for rule in dedup.RULES
    )


def _sharing_with(left: str, right: str, where: str) -> str:
    """Rows of the small `left` sharing a key with a row of the small `right` (both CTEs)."""
    return "\n    union\n    ".join(
        f"select h.landing_id from {left} h join {right} b"
        f" on (h.tenant_id, h.{rule}_digest) = (b.tenant_id, b.{rule}_digest) where {where}"
        for rule in dedup.RULES
    )


_KEY_COLUMNS = ", ".join(dedup.KEY_SCHEMA)


# The batch's keys, in a temporary table: sent once, by COPY, then looked up from there and
# kept from there. (As array literals in the query text they cost more to send and parse
# than the probes; a second COPY straight into warehouse.dedup_keys, another parse.)
_BATCH_KEYS_TABLE = "create temp table batch_keys on commit drop as select * from warehouse.dedup_keys with no data"


def related_keys_sql() -> str:
    """The keys of earlier-processed events that share one with this batch's (`batch_keys`:
    they decide its verdicts), plus, for those that landed *after* a batch event sharing
    their key (their own verdicts change), every event sharing one of theirs."""
    return f"""
copy (
with mine as materialized (
    select * from batch_keys
), hits as (
    {_probe("mine b")}
), later as (
    {_sharing_with("hits", "mine", "b.landing_id < h.landing_id")}
), theirs as (
    {_probe("hits b", " and b.landing_id in (select landing_id from later)")}
)
select {_KEY_COLUMNS}, (landing_id in (select landing_id from later))::int as rejudge
from (select * from hits union select * from theirs) r
) to stdout (format csv, header)"""


_RELATED_KEYS_SQL = related_keys_sql()


def _read(conn: psycopg.Connection, sql: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    buffer = io.BytesIO()
    with conn.cursor().copy(sql) as copy:
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    return pl.read_csv(buffer, schema=schema, raise_if_empty=False)


def _lock_tenants(conn: psycopg.Connection, tenant_ids: list[str]) -> None:
    """Serialise the de-duplication and write step per tenant, until commit.

    Why: a batch must see the keys of every batch of its tenants that committed before it,
    and none may commit in between. Locks are taken in key order, so two runs whose
    batches share tenants cannot deadlock; a hash collision only serialises more."""
    locks = conn.execute(
        "select distinct hashtextextended(t, 0x74726962) as k from unnest(%s::text[]) t order by k", (tenant_ids,)
    ).fetchall()
    for (key,) in locks:
        conn.execute("select pg_advisory_xact_lock(%s)", (key,))


def _judge_across_batches(
    conn: psycopg.Connection, batch_id: int, outcome: Outcome
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(this batch's duplicates, earlier-processed events' new verdicts), both VERDICT_SCHEMA.

    Then the batch's keys are stored, whatever the verdicts: later batches are judged against them."""
    conn.execute(_BATCH_KEYS_TABLE)
    _copy_frame(conn, "batch_keys", outcome.keys.with_columns(pl.lit(batch_id).alias("batch_id")))
    related = _read(conn, _RELATED_KEYS_SQL, {**dedup.KEY_SCHEMA, "rejudge": pl.Int8})
    conn.execute("insert into warehouse.dedup_keys select * from batch_keys")
    within = outcome.duplicates.with_columns(pl.lit(None, pl.Int64).alias("duplicate_of_landing_id"))
    if related.height == 0:
        return within.cast(dedup.VERDICT_SCHEMA), pl.DataFrame(schema=dedup.VERDICT_SCHEMA)
    verdicts = dedup.judge(pl.concat([outcome.keys, related.drop("rejudge")]).lazy()).collect(engine=ENGINE)
    batch_ids = outcome.keys["landing_id"]
    rejudged = related.filter(pl.col("rejudge") == 1)["landing_id"].unique()
    return (
        verdicts.filter(pl.col("landing_id").is_in(batch_ids.implode())),
        verdicts.filter(pl.col("landing_id").is_in(rejudged.implode())),
    )


def write(conn: psycopg.Connection, batch_id: int, outcome: Outcome, claimed_ids: pl.Series) -> Written:
    """Write a processed batch, judged against every earlier-processed batch of its tenants."""
    # The batch's own survivors go in before the tenant lock: the costliest write of a batch
    # then overlaps another batch's judging instead of waiting for it. Those the judging
    # below finds to re-send an earlier event leave again in this same transaction. (No
    # `on conflict` or unique event id to trip over: the keys make (tenant_id, event_id)
    # unique among kept events, and dbt's stg_events test checks it on every build.)
    _copy_frame(conn, "warehouse.events", outcome.events.select(*EVENT_COLUMNS, pl.lit(batch_id).alias("batch_id")))
    _lock_tenants(conn, outcome.keys["tenant_id"].unique().sort().to_list())
    duplicates, rejudged = _judge_across_batches(conn, batch_id, outcome)
    # Survivors of this batch's own judging that re-send an event of an earlier batch.
    resent = outcome.events.join(duplicates, on="landing_id", how="semi").height

    reclassified = 0
    if rejudged.height:
        conn.execute(
            "create temp table batch_rejudged (landing_id bigint primary key, rule text not null,"
            " duplicate_of_event_id text not null) on commit drop"
        )
        _copy_frame(conn, "batch_rejudged", rejudged.select("landing_id", "rule", "duplicate_of_event_id"))
        # An earlier-landed copy arrived after this event was judged: re-point a duplicate...
        reclassified += conn.execute(
            """
            update warehouse.event_duplicates d set rule = j.rule, duplicate_of_event_id = j.duplicate_of_event_id
            from batch_rejudged j
            where d.landing_id = j.landing_id
              and (d.rule, d.duplicate_of_event_id) is distinct from (j.rule, j.duplicate_of_event_id)
            """
        ).rowcount
        # ...or move a kept event to the duplicates (dbt rebuilds the marts that counted it).
        reclassified += conn.execute(
            f"""
            with moved as (
                delete from warehouse.events e using batch_rejudged j where e.landing_id = j.landing_id
                returning e.landing_id
            )
            insert into warehouse.event_duplicates
                (landing_id, tenant_id, batch_id, received_at, wire_format, payload, rule, duplicate_of_event_id)
            select r.id, r.tenant_id, %(batch)s, r.received_at, r.wire_format, {KEPT_PAYLOAD}, j.rule,
                   j.duplicate_of_event_id
            from moved m join batch_rejudged j using (landing_id) join landing.events_raw r on r.id = m.landing_id
            """,
            {"batch": batch_id},
        ).rowcount

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
            duplicates.select(
                "landing_id",
                pl.lit("duplicate").alias("kind"),
                pl.col("rule").alias("code"),
                pl.col("duplicate_of_event_id").alias("detail"),
            ),
        ]
    )
    _copy_frame(conn, "batch_judged", judged)
    # Those re-sends: out again.
    unkept = conn.execute(
        "delete from warehouse.events e using batch_judged j where j.kind = 'duplicate' and e.landing_id = j.landing_id"
    ).rowcount
    if unkept != resent:
        raise RuntimeError(f"batch {batch_id}: {unkept} events unkept, {resent} expected")
    for kind, table, columns in (
        ("reject", "warehouse.event_rejects", "reason_code, reason_detail"),
        ("duplicate", "warehouse.event_duplicates", "rule, duplicate_of_event_id"),
    ):
        conn.execute(
            f"""
            insert into {table} (landing_id, tenant_id, batch_id, received_at, wire_format, payload, {columns})
            select r.id, r.tenant_id, %(batch)s, r.received_at, r.wire_format, {KEPT_PAYLOAD}, j.code, j.detail
            from batch_judged j join landing.events_raw r on r.id = j.landing_id
            where j.kind = %(kind)s
            """,
            {"batch": batch_id, "kind": kind},
        )
    # The ids as one array literal: Polars builds it far faster than psycopg lists 10,000 ints.
    ids = "{" + claimed_ids.cast(pl.String).str.join(",").item() + "}"
    conn.execute("delete from landing.backlog where id = any(%s::bigint[])", (ids,))
    return Written(
        events=outcome.events.height - resent,
        duplicates=duplicates.select(list(dedup.VERDICT_SCHEMA)),
        reclassified=reclassified,
    )


def run_batch(
    conn: psycopg.Connection,
    plan: TrackingPlan,
    limits: Limits,
    size: int,
    run_id: str | None = None,
    only_ids: list[int] | None = None,
    enrichment: Enrichment | None = None,
) -> BatchResult | None:
    """Claim, process and write one batch in one transaction; None when the backlog is empty.

    `only_ids` restricts the claim to those landing ids (tests choose batches and their order)."""
    started = datetime.now(UTC)
    clock = time.perf_counter()
    with conn.transaction():
        raw = claim(conn, size, only_ids)
        if raw.height == 0:
            return None
        outcome = process(raw, plan, limits, enrichment)
        batch_id = conn.execute("select nextval(pg_get_serial_sequence('ops.batches', 'id'))").fetchone()[0]
        written = write(conn, batch_id, outcome, raw["landing_id"])
        duplicates = written.duplicates.height
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
                written.events,
                outcome.rejects.height,
                duplicates,
                raw["landing_id"].min(),
                raw["landing_id"].max(),
            ),
        )
    return BatchResult(
        batch_id=batch_id,
        claimed=raw.height,
        events=written.events,
        rejects=outcome.rejects.height,
        duplicates=duplicates,
        seconds=seconds,
        rejects_by_reason=_counts(outcome.rejects, "reason_code"),
        duplicates_by_rule=_counts(written.duplicates, "rule"),
        reclassified=written.reclassified,
    )


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    counted = frame.group_by(column).len()
    return dict(zip(counted[column].to_list(), counted["len"].to_list(), strict=True))


def process_backlog(
    conn: psycopg.Connection,
    plan: TrackingPlan,
    limits: Limits,
    size: int,
    run_id: str | None = None,
    enrichment: Enrichment | None = None,
    stop: threading.Event | None = None,
) -> Iterator[BatchResult]:
    """Run batches on one connection until nothing is left to claim (rows another run has locked are skipped)."""
    while not (stop and stop.is_set()):
        result = run_batch(conn, plan, limits, size, run_id, enrichment=enrichment)
        if result is None:
            return
        yield result


def drain(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    plan: TrackingPlan,
    limits: Limits,
    size: int,
    workers: int = 2,
    run_id: str | None = None,
    enrichment: Enrichment | None = None,
) -> Iterator[BatchResult]:
    """Process the backlog with `workers` connections at once, yielding each batch's result as it commits.

    Why: a batch keeps Python busy while it runs the rules and PostgreSQL busy while it is
    written, so with two at once both cores work. SKIP LOCKED keeps their claims apart, the
    tenant lock serialises their de-duplication, and the outcome does not depend on which
    batch ran first. The first error stops the other workers after their current batch."""
    results: queue.Queue[BatchResult | BaseException | None] = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            with connect() as conn:
                for result in process_backlog(conn, plan, limits, size, run_id, enrichment, stop):
                    results.put(result)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, re-raised there
            stop.set()
            results.put(error)
        finally:
            results.put(None)

    threads = [threading.Thread(target=work, name=f"tributary-batch-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    error: BaseException | None = None
    running = workers
    try:
        while running:
            item = results.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                error = error or item
            else:
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if error is not None:
        raise error


def backlog(conn: psycopg.Connection, at_most: int) -> int:
    """Landed events waiting to be processed, counted up to `at_most` (a count of a huge
    backlog would cost a scan of all of it)."""
    return conn.execute("select count(*) from (select from landing.backlog limit %s) b", (at_most,)).fetchone()[0]
