"""De-duplication across batches: the outcome never depends on how the backlog was split or ordered."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.batches import process_backlog, run_batch
from orchestration.processing.validate import Limits
from tributary import tenants, tracking_plan

PLAN = tracking_plan.parse(
    """
categories:
  navigation:
    page_viewed: {aliases: [page_view]}
    button_clicked: {}
  system:
    heartbeat: {dedup: {fingerprint: false}}
"""
)
NOW = datetime.now(UTC).replace(microsecond=0)

event_strategy = st.fixed_dictionaries(
    {
        "eventId": st.sampled_from(["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"]),
        "eventType": st.sampled_from(["page_viewed", "button_clicked", "heartbeat", ""]),
        "anonymousId": st.sampled_from(["a1", "a2"]),
        "occurredAt": st.sampled_from([0, 0, 1, 2]).map(lambda s: (NOW - timedelta(seconds=s)).isoformat()),
    },
    optional={
        "idempotencyKey": st.sampled_from([str(uuid.UUID(int=i)) for i in range(1, 4)]),
        "userId": st.sampled_from(["u1"]),
    },
)


def land(conn: psycopg.Connection, tenant_id, payloads: list[dict]) -> list[int]:
    """Land payloads in order; return their landing ids."""
    return [
        conn.execute(
            "insert into landing.events_raw (tenant_id, wire_format, payload) values (%s, 'native', %s) returning id",
            (tenant_id, json.dumps(p)),
        ).fetchone()[0]
        for p in payloads
    ]


def outcomes(conn: psycopg.Connection, tenant_id) -> dict[int, tuple]:
    """landing id → (outcome, rule or reason, the event_id it duplicates)."""
    rows = conn.execute(
        """
        select landing_id, 'event', null, null from warehouse.events where tenant_id = %(t)s
        union all select landing_id, 'reject', reason_code, null from warehouse.event_rejects where tenant_id = %(t)s
        union all select landing_id, 'duplicate', rule, duplicate_of_event_id
                  from warehouse.event_duplicates where tenant_id = %(t)s
        """,
        {"t": tenant_id},
    ).fetchall()
    found = {landing_id: rest for landing_id, *rest in rows}
    assert len(found) == len(rows), "a landing row has two outcomes"
    return {k: tuple(v) for k, v in found.items()}


def run_in_batches(database_url: str, batches: list[list[int]]) -> None:
    with psycopg.connect(database_url) as worker:
        for ids in batches:
            assert run_batch(worker, PLAN, Limits(), len(ids), only_ids=ids) is not None


@st.composite
def split_and_order(draw, n: int) -> list[list[int]]:
    """Positions 0..n-1 cut into consecutive-or-not groups, run in any order."""
    positions = draw(st.permutations(list(range(n))))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=max(0, n - 1))))
    groups = [list(positions[a:b]) for a, b in zip([0, *cuts], [*cuts, n], strict=True) if positions[a:b]]
    return groups


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), events=st.lists(event_strategy, min_size=1, max_size=14))
def test_any_split_into_batches_in_any_order_gives_the_one_batch_outcome(database_url, conn, data, events):
    whole, _ = tenants.create(conn, f"dedup-whole-{uuid.uuid4().hex[:10]}")
    split, _ = tenants.create(conn, f"dedup-split-{uuid.uuid4().hex[:10]}")
    whole_ids = land(conn, whole.id, events)
    split_ids = land(conn, split.id, events)
    groups = data.draw(split_and_order(len(events)))

    run_in_batches(database_url, [whole_ids])
    run_in_batches(database_url, [[split_ids[i] for i in group] for group in groups])

    expected = {whole_ids.index(k): v for k, v in outcomes(conn, whole.id).items()}
    actual = {split_ids.index(k): v for k, v in outcomes(conn, split.id).items()}
    assert len(expected) == len(events)
    assert actual == expected
    kept = conn.execute(
        "select count(*), count(distinct event_id) from warehouse.events where tenant_id = %s", (split.id,)
    ).fetchone()
    assert kept[0] == kept[1]


@pytest.fixture
def drained(database_url):
    with psycopg.connect(database_url) as conn:
        list(process_backlog(conn, tracking_plan.load(), Limits(), 10_000))
    return database_url


def test_an_earlier_landed_copy_processed_later_takes_the_events_place(drained, conn, tenant):
    first, second = land(
        conn,
        tenant[0].id,
        [
            {"eventType": "x", "eventId": "late", "idempotencyKey": str(uuid.UUID(int=9))},
            {"eventType": "x", "eventId": "early", "idempotencyKey": str(uuid.UUID(int=9))},
        ],
    )
    run_in_batches(drained, [[second], [first]])
    assert outcomes(conn, tenant[0].id) == {
        first: ("event", None, None),
        second: ("duplicate", "idempotency_key", "late"),
    }


def test_a_same_second_re_send_is_a_fingerprint_duplicate_unless_the_plan_turns_it_off(drained, conn, tenant):
    at = NOW.isoformat()
    ids = land(
        conn,
        tenant[0].id,
        [
            {"eventType": "button_clicked", "eventId": "b1", "userId": "u", "occurredAt": at},
            {"eventType": "button_clicked", "eventId": "b2", "userId": "u", "occurredAt": at},
            {"eventType": "heartbeat", "eventId": "h1", "userId": "u", "occurredAt": at},
            {"eventType": "heartbeat", "eventId": "h2", "userId": "u", "occurredAt": at},
            {"eventType": "button_clicked", "eventId": "b3", "userId": "u"},  # no occurredAt: no fingerprint
            {"eventType": "button_clicked", "eventId": "b4", "userId": "u"},
        ],
    )
    run_in_batches(drained, [[i] for i in ids])
    got = outcomes(conn, tenant[0].id)
    assert got[ids[1]] == ("duplicate", "fingerprint", "b1")
    assert [got[i][0] for i in ids] == ["event", "duplicate", "event", "event", "event", "event"]
