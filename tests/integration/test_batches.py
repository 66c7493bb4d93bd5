"""Claiming and writing batches against the real PostgreSQL."""

import json
import uuid

import psycopg
import pytest

from orchestration.batches import claim, drain, process_backlog, run_batch
from orchestration.processing.validate import Limits
from tributary import summary, tracking_plan

PLAN = tracking_plan.load()


def land(conn: psycopg.Connection, tenant_id, payloads: list[dict], wire_format: str = "native") -> None:
    with conn.cursor().copy("copy landing.events_raw (tenant_id, wire_format, payload) from stdin") as copy:
        for payload in payloads:
            copy.write_row((tenant_id, wire_format, json.dumps(payload)))


def page_view(event_id: str | None = None, **extra) -> dict:
    return {"eventType": "page_viewed", "eventId": event_id or str(uuid.uuid4()), "anonymousId": "a1", **extra}


@pytest.fixture
def drained(database_url):
    """Process whatever earlier tests left, so each test sees only its own rows in the backlog."""
    with psycopg.connect(database_url) as conn:
        list(process_backlog(conn, PLAN, Limits(), 10_000))
    return database_url


def test_two_concurrent_claims_never_share_a_row(drained, conn, tenant):
    land(conn, tenant[0].id, [page_view() for _ in range(200)])
    with psycopg.connect(drained) as first, psycopg.connect(drained) as second:
        a = claim(first, 120)["landing_id"].to_list()
        b = claim(second, 120)["landing_id"].to_list()
        assert len(a) == 120 and len(b) == 80
        assert not set(a) & set(b)
        assert a == sorted(a) and max(a) < min(b)  # landing-id order
        first.rollback()
        second.rollback()


def test_concurrent_runs_process_every_row_exactly_once(drained, conn, tenant):
    land(conn, tenant[0].id, [page_view() for _ in range(3000)])
    list(drain(lambda: psycopg.connect(drained), PLAN, Limits(), 250, workers=3))
    counts = summary.counts(conn, tenant[0].id)
    assert (counts.landed, counts.waiting, counts.events, counts.duplicates) == (3000, 0, 3000, 0)
    # Every claimed row was written by the batch that claimed it: no batch counted a row
    # another batch wrote.
    claimed = conn.execute(
        "select sum(claimed) from ops.batches where id in (select batch_id from warehouse.events where tenant_id = %s)",
        (tenant[0].id,),
    ).fetchone()[0]
    assert claimed == 3000


def test_a_batch_rolled_back_half_way_leaves_its_rows_claimable(drained, conn, tenant):
    land(conn, tenant[0].id, [page_view() for _ in range(50)])
    with psycopg.connect(drained) as doomed:
        with pytest.raises(RuntimeError), doomed.transaction():
            claimed = claim(doomed, 50)
            assert claimed.height == 50
            doomed.execute("delete from landing.backlog where id = any(%s)", (claimed["landing_id"].to_list(),))
            raise RuntimeError("killed half way")
    assert summary.counts(conn, tenant[0].id).waiting == 50
    with psycopg.connect(drained) as survivor:
        results = list(process_backlog(survivor, PLAN, Limits(), 20))
    assert [r.claimed for r in results] == [20, 20, 10]
    counts = summary.counts(conn, tenant[0].id)
    assert counts.events == 50 and counts.conserved


def test_a_re_sent_event_id_counts_once_whatever_the_batches(drained, conn, tenant):
    repeated = str(uuid.uuid4())
    land(conn, tenant[0].id, [page_view(repeated), page_view(), page_view(repeated), page_view(repeated)])
    with psycopg.connect(drained) as worker:
        list(process_backlog(worker, PLAN, Limits(), 1))  # every copy in its own batch
    counts = summary.counts(conn, tenant[0].id)
    assert (counts.events, counts.duplicates, counts.rejects) == (2, 2, 0)
    first_landed = conn.execute(
        "select min(id) from landing.events_raw where tenant_id = %s and payload->>'eventId' = %s",
        (tenant[0].id, repeated),
    ).fetchone()[0]
    kept = conn.execute("select landing_id from warehouse.events where event_id = %s", (repeated,)).fetchone()[0]
    assert kept == first_landed
    rules = conn.execute(
        "select rule, duplicate_of_event_id from warehouse.event_duplicates where tenant_id = %s", (tenant[0].id,)
    ).fetchall()
    assert rules == [("event_id", repeated)] * 2


def test_the_same_event_id_in_two_tenants_is_two_events(drained, conn, tenant):
    from tributary import tenants

    other, _ = tenants.create(conn, f"other-{uuid.uuid4().hex[:8]}")
    shared = str(uuid.uuid4())
    land(conn, tenant[0].id, [page_view(shared)])
    land(conn, other.id, [page_view(shared)])
    with psycopg.connect(drained) as worker:
        list(process_backlog(worker, PLAN, Limits(), 100))
    assert summary.counts(conn, tenant[0].id).events == 1
    assert summary.counts(conn, other.id).events == 1


def test_rejects_keep_the_payload_and_a_reason(drained, conn, tenant):
    stale = page_view(occurredAt="2001-01-01T00:00:00Z", extra={"kept": True})
    land(conn, tenant[0].id, [stale, {"eventType": "x", "eventId": "e-bad", "occurredAt": "yesterday"}])
    with psycopg.connect(drained) as worker:
        run_batch(worker, PLAN, Limits(), 100)
    rows = conn.execute(
        "select payload, reason_code, reason_detail from warehouse.event_rejects where tenant_id = %s"
        " order by landing_id",
        (tenant[0].id,),
    ).fetchall()
    assert rows[0][0] == stale and rows[0][1] == "too_old" and "30 days" in rows[0][2]
    assert rows[1][1] == "invalid_timestamp" and "yesterday" in rows[1][2]


def test_segment_payloads_land_as_canonical_events(drained, conn, tenant):
    land(
        conn,
        tenant[0].id,
        [
            {
                "type": "page",
                "messageId": "m-page",
                "anonymousId": "a9",
                "timestamp": "2026-01-01T00:00:00Z",
                "sentAt": "2026-01-01T00:00:00Z",
                "properties": {"path": "/pricing"},
            },
            {"type": "identify", "messageId": "m-id", "userId": "u9", "anonymousId": "a9", "traits": {"plan": "pro"}},
            {"type": "track", "messageId": "m-track", "event": "page_view", "userId": 12345},
        ],
        wire_format="segment",
    )
    with psycopg.connect(drained) as worker:
        run_batch(worker, PLAN, Limits(), 100)
    rows = dict(
        (event_id, (event_type, user_id, props, path))
        for event_id, event_type, user_id, props, path in conn.execute(
            "select event_id, event_type, user_id, props, page_path from warehouse.events where tenant_id = %s",
            (tenant[0].id,),
        )
    )
    assert rows["m-page"] == ("page_viewed", None, {"path": "/pricing"}, "/pricing")
    assert rows["m-id"] == ("user_identified", "u9", {"plan": "pro"}, None)
    assert rows["m-track"] == ("page_viewed", "12345", {}, None)  # alias resolved, number kept as text


def test_no_whole_ip_reaches_the_warehouse_not_even_in_rejects_and_duplicates(drained, conn, tenant):
    with_ip = {"context": {"ip": "203.0.113.77", "locale": "en"}}
    repeated = str(uuid.uuid4())
    land(
        conn,
        tenant[0].id,
        [
            page_view(repeated, **with_ip),
            page_view(repeated, **with_ip),
            page_view(occurredAt="2001-01-01T00:00:00Z", **with_ip),
        ],
    )
    with psycopg.connect(drained) as worker:
        run_batch(worker, PLAN, Limits(), 100)
    for table in ("warehouse.events", "warehouse.event_rejects", "warehouse.event_duplicates"):
        rows = conn.execute(f"select t::text from {table} t where tenant_id = %s", (tenant[0].id,)).fetchall()
        assert len(rows) == 1, table
        assert "203.0.113.77" not in rows[0][0], table
    kept = conn.execute("select payload from warehouse.event_rejects where tenant_id = %s", (tenant[0].id,)).fetchone()[
        0
    ]
    assert kept["context"] == {"locale": "en"}
    assert (
        conn.execute(
            "select count(*) from landing.events_raw where tenant_id = %s and payload->'context'->>'ip' = '203.0.113.77'",
            (tenant[0].id,),
        ).fetchone()[0]
        == 3
    )  # landing keeps what the client sent


def test_a_payload_whose_context_is_not_an_object_is_still_judged_and_kept(drained, conn, tenant):
    """Segment SDKs are lenient: a `context` that is a list or a string must not fail the batch."""
    land(
        conn,
        tenant[0].id,
        [
            page_view(occurredAt="2001-01-01T00:00:00Z", context=["not", "an", "object"]),
            {"eventType": "", "eventId": str(uuid.uuid4()), "context": "text"},
        ],
    )
    with psycopg.connect(drained) as worker:
        run_batch(worker, PLAN, Limits(), 100)
    kept = conn.execute(
        "select reason_code, payload->'context' from warehouse.event_rejects where tenant_id = %s order by landing_id",
        (tenant[0].id,),
    ).fetchall()
    assert kept == [("too_old", ["not", "an", "object"]), ("missing_event_type", "text")]


def test_a_timestamp_past_the_year_9999_is_rejected_not_a_failed_batch(drained, conn, tenant):
    land(
        conn,
        tenant[0].id,
        [page_view(occurredAt="999999999999999"), page_view(sentAt="+22040-02-05T01:12:11.771Z"), page_view()],
    )
    with psycopg.connect(drained) as worker:
        run_batch(worker, PLAN, Limits(), 100)
    counts = summary.counts(conn, tenant[0].id)
    assert (counts.events, counts.rejects) == (1, 2)
    reasons = conn.execute(
        "select distinct reason_code from warehouse.event_rejects where tenant_id = %s", (tenant[0].id,)
    ).fetchall()
    assert reasons == [("invalid_timestamp",)]


def test_timestamps_reach_the_warehouse_to_the_microsecond(drained, conn, tenant):
    land(conn, tenant[0].id, [page_view(occurredAt="2026-11-25T10:00:00.123456+01:00")])
    with psycopg.connect(drained) as worker:
        run_batch(worker, PLAN, Limits(), 100)
    occurred = conn.execute(
        "select to_char(client_occurred_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        " from warehouse.events where tenant_id = %s",
        (tenant[0].id,),
    ).fetchone()[0]
    assert occurred == "2026-11-25 09:00:00.123456"


def test_concurrent_batches_keep_exactly_the_first_landed_copy_of_each_event(drained, conn, tenant):
    # Re-sends spread over many small batches that run at once: each batch writes its
    # survivors before it takes the tenant lock, so the loser of every race must leave again.
    originals = [str(uuid.uuid4()) for _ in range(300)]
    land(conn, tenant[0].id, [page_view(event_id) for event_id in originals])
    land(conn, tenant[0].id, [page_view(event_id) for event_id in reversed(originals)])
    land(conn, tenant[0].id, [page_view(event_id) for event_id in originals[::2]])
    list(drain(lambda: psycopg.connect(drained), PLAN, Limits(), 40, workers=3))
    counts = summary.counts(conn, tenant[0].id)
    assert (counts.events, counts.duplicates, counts.waiting) == (300, 450, 0) and counts.conserved
    kept = conn.execute(
        """
        select count(*) filter (where e.landing_id = first.id), count(distinct e.event_id), count(*)
        from warehouse.events e
        join (select payload->>'eventId' as event_id, min(id) as id from landing.events_raw
              where tenant_id = %(t)s group by 1) first using (event_id)
        where e.tenant_id = %(t)s
        """,
        {"t": tenant[0].id},
    ).fetchone()
    assert kept == (300, 300, 300)


def test_text_that_looks_like_a_null_marker_stays_text(drained, conn, tenant):
    # "\N" is COPY's null marker in its text format; "" an empty string. Neither may turn
    # into NULL on the way to the warehouse (an event type of "\N" once failed a batch).
    land(conn, tenant[0].id, [page_view(eventType="\\N", userId="\\N", sessionId="NULL", props={"s": ""})])
    with psycopg.connect(drained) as worker:
        run_batch(worker, PLAN, Limits(), 100)
    row = conn.execute(
        "select event_type, user_id, session_id, props from warehouse.events where tenant_id = %s", (tenant[0].id,)
    ).fetchone()
    assert row == ("\\N", "\\N", "NULL", {"s": ""})
