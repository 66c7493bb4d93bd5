"""An incremental dbt build after late and re-classified events gives exactly the marts a
full refresh gives, and recomputes only what those events touch."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from orchestration.batches import run_batch
from orchestration.dbt_cli import MARTS_BUILD_LOCK_KEY, marts_build_lock, run_dbt
from orchestration.definitions import defs
from orchestration.processing.validate import Limits
from orchestration.verify_marts import MARTS, verify_marts
from tributary import tenants, tracking_plan
from tributary.settings import Settings

T0 = (datetime.now(UTC) - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
SESSION_S2 = str(uuid.uuid4())
SESSION_S4 = str(uuid.uuid4())


def event(event_type: str, minutes: float, **fields) -> dict:
    return {
        "eventType": event_type,
        "eventId": str(uuid.uuid4()),
        "occurredAt": (T0 + timedelta(minutes=minutes)).isoformat(),
        **fields,
    }


def page(minutes: float, anonymous_id: str, path: str, **fields) -> dict:
    return event(
        "page_viewed",
        minutes,
        anonymousId=anonymous_id,
        context={"page": {"url": f"https://example.com{path}"}},
        **fields,
    )


def land(conn: psycopg.Connection, tenant_id, payloads: list[dict]) -> list[int]:
    return [
        conn.execute(
            "insert into landing.events_raw (tenant_id, wire_format, payload) values (%s, 'native', %s) returning id",
            (tenant_id, json.dumps(payload)),
        ).fetchone()[0]
        for payload in payloads
    ]


def process(database_url: str, landing_ids: list[int]) -> None:
    with psycopg.connect(database_url) as worker:
        assert run_batch(worker, tracking_plan.load(), Limits(), len(landing_ids), only_ids=landing_ids) is not None


def dbt_build(settings: Settings) -> float:
    started = time.perf_counter()
    result = run_dbt(settings, ["build"])
    assert result.returncode == 0, result.stdout[-4000:]
    return time.perf_counter() - started


def xmins(conn: psycopg.Connection, tenant_id) -> dict[str, str]:
    """The transaction that last wrote each of the tenant's sessions, by anonymous id and start."""
    rows = conn.execute(
        "select coalesce(anonymous_id, user_id) || ' ' || started_at::text, xmin::text"
        " from marts.fct_sessions where tenant_id = %s",
        (tenant_id,),
    ).fetchall()
    return dict(rows)


@pytest.fixture(scope="module")
def late(settings: Settings, database_url: str, conn_module: psycopg.Connection):
    """Build the marts, land late and re-classified events, process them, build incrementally."""
    tenant, _ = tenants.create(conn_module, f"incremental-{uuid.uuid4().hex[:8]}")
    # The earlier-landed copy of a fingerprint duplicate, processed only in the second round:
    # its later-landed copy (another anonymous id, so another session) is moved out then.
    earlier_copy = event("button_clicked", 10, userId="u3", anonymousId="a3-laptop")
    later_copy = {**earlier_copy, "eventId": str(uuid.uuid4()), "anonymousId": "a3-phone"}
    (held_back,) = land(conn_module, tenant.id, [earlier_copy])
    first_round = [
        # a1: two visits 45 minutes apart
        page(0, "a1", "/"),
        page(5, "a1", "/pricing"),
        page(50, "a1", "/docs"),
        page(55, "a1", "/signup"),
        # a2: the client's session, one page view and a click
        page(0, "a2", "/", sessionId=SESSION_S2),
        event("cta_clicked", 1, anonymousId="a2", sessionId=SESSION_S2),
        # a3-phone: the later-landed copy is processed first
        later_copy,
        # a4: an anonymous client session, identified later
        page(0, "a4", "/blog", sessionId=SESSION_S4),
        # a5: never touched again
        page(0, "a5", "/"),
        page(1, "a5", "/docs"),
        # a job created and started
        event("job_created", 0, userId="u6", props={"job_id": "j1", "queue": "transcribe"}),
        event("job_started", 1, userId="u6", props={"job_id": "j1"}),
    ]
    process(database_url, land(conn_module, tenant.id, first_round))
    dbt_build(settings)
    before = xmins(conn_module, tenant.id)

    second_round = [
        # into a1's 45-minute gap: the two visits become one
        page(27, "a1", "/blog"),
        # a1, the day before: a new session on another day
        page(-24 * 60, "a1", "/"),
        # a4 identified two hours later, outside any client session: stitches S4 to u4
        event("user_identified", 120, userId="u4", anonymousId="a4", props={"plan": "pro", "email": "a4@example.com"}),
        # the job completes
        event("job_completed", 6, userId="u6", props={"job_id": "j1"}),
        # a client retry of an event already built: a duplicate, nothing changes
        first_round[8],
    ]
    process(database_url, [held_back, *land(conn_module, tenant.id, second_round)])
    # Only the intermediate model builds (as when a mart fails after it): the marts must
    # still see these changes, together with the next ones, at their next build.
    partial = run_dbt(settings, ["run", "--select", "int_events_sessionized"])
    assert partial.returncode == 0, partial.stdout[-4000:]
    process(database_url, land(conn_module, tenant.id, [page(3, "a2", "/pricing", sessionId=SESSION_S2)]))
    seconds = dbt_build(settings)
    return tenant, before, seconds


def test_an_incremental_build_equals_a_full_refresh(late, settings):
    verification = verify_marts(settings)
    assert {t.table for t in verification.tables} == set(MARTS)
    assert verification.equal, verification.summary()
    assert all(t.incremental_rows > 0 for t in verification.tables)


def test_a_late_event_in_the_gap_merges_two_sessions(late, conn_module):
    tenant, _, _ = late
    sessions = conn_module.execute(
        "select started_at, events, landing_page, exit_page from marts.fct_sessions"
        " where tenant_id = %s and anonymous_id = 'a1' order by started_at",
        (tenant.id,),
    ).fetchall()
    assert sessions == [
        (T0 - timedelta(days=1), 1, "/", "/"),
        (T0, 5, "/", "/signup"),
    ]
    pages = conn_module.execute(
        "select page_path, previous_page_path, next_page_path, time_on_page_seconds from marts.fct_page_views"
        " where tenant_id = %s and anonymous_id = 'a1' and viewed_at >= %s order by viewed_at",
        (tenant.id, T0),
    ).fetchall()
    assert pages == [
        ("/", None, "/pricing", 300),
        ("/pricing", "/", "/blog", 1320),
        ("/blog", "/pricing", "/docs", 1380),
        ("/docs", "/blog", "/signup", 300),
        ("/signup", "/docs", None, None),
    ]


def test_marts_catch_up_on_every_change_since_their_last_build(late, conn_module):
    tenant, _, _ = late
    session = conn_module.execute(
        "select events, page_views, exit_page from marts.fct_sessions where tenant_id = %s and session_id = %s",
        (tenant.id, SESSION_S2),
    ).fetchone()
    assert session == (3, 2, "/pricing")


def test_a_late_identify_stitches_an_earlier_client_session(late, conn_module):
    tenant, _, _ = late
    session_user = conn_module.execute(
        "select user_id from marts.fct_sessions where tenant_id = %s and session_id = %s", (tenant.id, SESSION_S4)
    ).fetchone()
    assert session_user == ("u4",)
    user = conn_module.execute(
        "select traits, anonymous_ids, sessions, events from marts.dim_users where tenant_id = %s and user_id = 'u4'",
        (tenant.id,),
    ).fetchone()
    assert user == ({"plan": "pro", "email": "a4@example.com"}, ["a4"], 2, 2)


def test_an_event_moved_to_the_duplicates_leaves_the_marts(late, conn_module):
    tenant, _, _ = late
    moved = conn_module.execute(
        "select rule from warehouse.event_duplicates d join landing.events_raw r on r.id = d.landing_id"
        " where d.tenant_id = %s and r.payload ->> 'anonymousId' = 'a3-phone'",
        (tenant.id,),
    ).fetchall()
    assert moved == [("fingerprint",)]
    visitors = conn_module.execute(
        "select anonymous_id from marts.fct_sessions where tenant_id = %s and anonymous_id like 'a3%%'",
        (tenant.id,),
    ).fetchall()
    assert visitors == [("a3-laptop",)]


def test_a_late_completion_updates_the_job_and_its_days(late, conn_module):
    tenant, _, _ = late
    job = conn_module.execute(
        "select status, queue, run_seconds from marts.fct_jobs where tenant_id = %s and job_id = 'j1'", (tenant.id,)
    ).fetchone()
    assert job == ("completed", "transcribe", 300)
    daily = conn_module.execute(
        "select jobs_created, jobs_started, jobs_completed, jobs_failed, mean_run_seconds from marts.agg_jobs_daily"
        " where tenant_id = %s and queue = 'transcribe'",
        (tenant.id,),
    ).fetchall()
    assert daily == [(1, 1, 1, 0, 300)]


def test_the_incremental_build_rewrites_only_the_sessions_it_touched(late, conn_module):
    tenant, before, _ = late
    after = xmins(conn_module, tenant.id)
    untouched = f"a5 {conn_module.execute('select %s::timestamptz::text', (T0,)).fetchone()[0]}"
    assert after[untouched] == before[untouched]
    rewritten = [key for key in after if key.startswith("a1 ")]
    assert rewritten and all(after[key] not in before.values() for key in rewritten)


def test_the_incremental_build_is_quick(late):
    _, _, seconds = late
    # dbt's start-up, unit tests and data tests included; the freshness budget is a minute.
    assert seconds < 30


def test_one_marts_build_at_a_time(settings, conn):
    with marts_build_lock(settings):
        assert conn.execute("select pg_try_advisory_lock(%s)", (MARTS_BUILD_LOCK_KEY,)).fetchone() == (False,)
    assert conn.execute("select pg_try_advisory_lock(%s)", (MARTS_BUILD_LOCK_KEY,)).fetchone() == (True,)
    conn.execute("select pg_advisory_unlock(%s)", (MARTS_BUILD_LOCK_KEY,))


@pytest.fixture
def verify_job():
    def run(**config) -> dg.ExecuteInProcessResult:
        job = defs.resolve_job_def("verify_marts")
        return job.execute_in_process(
            run_config={"ops": {"incremental_marts_equal_a_full_refresh": {"config": config}}},
            raise_on_error=False,
        )

    return run


def test_the_nightly_verification_passes_when_the_marts_equal_a_full_refresh(late, verify_job):
    result = verify_job(days=7, build_incremental_first=True)
    assert result.success
    (materialized,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT and e.step_key]
    assert materialized.event_specific_data.metadata["equal"].value is True


def test_the_nightly_verification_fails_naming_a_tampered_mart(late, verify_job, conn_module):
    tenant, _, _ = late
    tampered = conn_module.execute(
        "update marts.fct_sessions set events = events + 1 where tenant_id = %s and anonymous_id = 'a5'"
        " returning session_key",
        (tenant.id,),
    ).fetchall()
    assert len(tampered) == 1
    try:
        result = verify_job(days=7, build_incremental_first=False)
    finally:
        conn_module.execute("update marts.fct_sessions set events = events - 1 where session_key = %s", tampered[0])
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = failure.event_specific_data
    assert "fct_sessions: 1 rows only in the incremental build, 1 only in the full refresh" in error.error.message
    assert error.user_failure_data.metadata["differing_tables"].value == ["fct_sessions"]
