"""Every mart on a small hand-made set of events, against figures worked out by hand.

One tenant, on the day before yesterday (UTC) from 08:00 (T0), so nothing is in the future:
- a1: /, /pricing 10 min later, a click 2 min after, 38 min of silence, /docs → 2 sessions
- b: the client's session id keeps /, and /blog 90 min later, in one session
- bot: one client session id for 24 hours → cut in two
- c: /pricing anonymously, logs in as uc an hour later and is identified → stitched
- uj: two jobs from a server, one completed, one failed
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta

import psycopg
import pytest

from orchestration.batches import process_backlog
from orchestration.dbt_cli import run_dbt
from orchestration.processing.validate import Limits
from tributary import tenants, tracking_plan
from tributary.settings import Settings

DAY = datetime.now(UTC).date() - timedelta(days=2)
T0 = datetime.combine(DAY, time(8), tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def t(**delta: float) -> datetime:
    return T0 + timedelta(**delta)


def at(minutes: float) -> str:
    return t(minutes=minutes).isoformat()


def event(event_type: str, minutes: float, **fields) -> dict:
    return {"eventType": event_type, "eventId": str(uuid.uuid4()), "occurredAt": at(minutes), **fields}


def page(minutes: float, anonymous_id: str, path: str, referrer: str | None = None, **fields) -> dict:
    context: dict = {"page": {"url": f"https://example.com{path}", "referrer": referrer}, "userAgent": CHROME}
    return event("page_viewed", minutes, anonymousId=anonymous_id, context=context, **fields)


SESSION_B, SESSION_BOT = str(uuid.uuid4()), str(uuid.uuid4())
EVENTS = [
    page(0, "a1", "/?utm_source=google&utm_campaign=spring", referrer="https://www.google.com/"),
    page(10, "a1", "/pricing"),
    event("cta_clicked", 12, anonymousId="a1"),
    page(50, "a1", "/docs"),
    page(0, "b", "/", sessionId=SESSION_B),
    page(90, "b", "/blog", sessionId=SESSION_B),
    event("api_request", 0, anonymousId="bot", sessionId=SESSION_BOT),
    event("api_request", 12 * 60, anonymousId="bot", sessionId=SESSION_BOT),
    event("api_request", 24 * 60, anonymousId="bot", sessionId=SESSION_BOT),
    page(120, "c", "/pricing"),
    event("user_logged_in", 180, anonymousId="c", userId="uc"),
    event("user_identified", 181, anonymousId="c", userId="uc", props={"plan": "team"}),
    event("job_created", 60, userId="uj", props={"job_id": "j1", "queue": "fast"}),
    event("job_started", 61, userId="uj", props={"job_id": "j1"}),
    event("job_completed", 66, userId="uj", props={"job_id": "j1"}),
    event("job_created", 60, userId="uj", entityType="job", entityId="j2"),
    event("job_started", 62, userId="uj", entityType="job", entityId="j2"),
    event("job_failed", 63, userId="uj", entityType="job", entityId="j2", props={"error_message": "decode"}),
]


@pytest.fixture(scope="module")
def built(settings: Settings, database_url: str, conn_module: psycopg.Connection):
    tenant, _ = tenants.create(conn_module, f"by-hand-{uuid.uuid4().hex[:8]}")
    with conn_module.cursor().copy("copy landing.events_raw (tenant_id, wire_format, payload) from stdin") as copy:
        for payload in EVENTS:
            copy.write_row((tenant.id, "native", json.dumps(payload)))
    with psycopg.connect(database_url) as worker:
        list(process_backlog(worker, tracking_plan.load(), Limits(), 1000))
    result = run_dbt(settings, ["build"])
    assert result.returncode == 0, result.stdout[-4000:]
    return tenant.id


def rows(conn: psycopg.Connection, sql: str, tenant_id) -> list[tuple]:
    return conn.execute(sql, {"tenant": tenant_id}).fetchall()


def test_sessions_follow_gaps_client_ids_the_24_hour_cut_and_stitching(built, conn_module):
    sessions = rows(
        conn_module,
        """
        select coalesce(anonymous_id, user_id), session_source, user_id, started_at, duration_seconds, events,
               page_views, landing_page, exit_page, is_bounce
        from marts.fct_sessions where tenant_id = %(tenant)s order by 1, started_at
        """,
        built,
    )
    assert sessions == [
        ("a1", "inferred", None, T0, 720, 3, 2, "/", "/pricing", False),
        ("a1", "inferred", None, t(minutes=50), 0, 1, 1, "/docs", "/docs", True),
        ("b", "client", None, T0, 5400, 2, 2, "/", "/blog", False),
        ("bot", "client", None, T0, 43200, 2, 0, None, None, False),
        ("bot", "client", None, t(hours=24), 0, 1, 0, None, None, False),
        # the page view before the login carries the user it turned out to be
        ("c", "inferred", "uc", t(minutes=120), 0, 1, 1, "/pricing", "/pricing", True),
        ("c", "inferred", "uc", t(minutes=180), 60, 2, 0, None, None, False),
        ("uj", "inferred", "uj", t(minutes=60), 360, 6, 0, None, None, False),
    ]


def test_a_session_is_described_by_its_first_event(built, conn_module):
    first = rows(
        conn_module,
        """
        select referrer_medium, utm_source, utm_campaign, device_type, browser, os
        from marts.fct_sessions where tenant_id = %(tenant)s and anonymous_id = 'a1' order by started_at
        """,
        built,
    )
    assert first[0] == ("search", "google", "spring", "desktop", "Chrome", "Windows")


def test_page_views_know_their_neighbours_and_time_on_page(built, conn_module):
    views = rows(
        conn_module,
        """
        select anonymous_id, page_path, page_view_number, previous_page_path, next_page_path,
               time_on_page_seconds, is_exit, user_id
        from marts.fct_page_views where tenant_id = %(tenant)s order by anonymous_id, viewed_at
        """,
        built,
    )
    assert views == [
        # / lasts until /pricing; /pricing until the click; the session then ends
        ("a1", "/", 1, None, "/pricing", 600, False, None),
        ("a1", "/pricing", 2, "/", None, 120, True, None),
        ("a1", "/docs", 1, None, None, None, True, None),
        ("b", "/", 1, None, "/blog", 5400, False, None),
        ("b", "/blog", 2, "/", None, None, True, None),
        ("c", "/pricing", 1, None, None, None, True, "uc"),
    ]
    orphans = conn_module.execute(
        "select count(*) from marts.fct_page_views p left join marts.fct_sessions s using (session_key)"
        " where p.tenant_id = %s and s.session_key is null",
        (built,),
    ).fetchone()
    assert orphans == (0,)


def test_jobs_have_their_status_timings_and_error(built, conn_module):
    jobs = rows(
        conn_module,
        """
        select job_id, queue, status, queue_seconds, run_seconds, total_seconds, error_message
        from marts.fct_jobs where tenant_id = %(tenant)s order by job_id
        """,
        built,
    )
    assert jobs == [
        ("j1", "fast", "completed", 60, 300, 360, None),
        ("j2", "default", "failed", 120, 60, 180, "decode"),
    ]
    daily = rows(
        conn_module,
        """
        select activity_date, queue, jobs_created, jobs_started, jobs_completed, jobs_failed, failure_rate,
               mean_run_seconds, p50_run_seconds, p95_run_seconds
        from marts.agg_jobs_daily where tenant_id = %(tenant)s order by queue
        """,
        built,
    )
    assert daily == [
        (DAY, "default", 1, 1, 0, 1, 1.0, 60, 60, 60),
        (DAY, "fast", 1, 1, 1, 0, 0.0, 300, 300, 300),
    ]


def test_users_gather_their_stitched_activity_and_traits(built, conn_module):
    users = rows(
        conn_module,
        """
        select user_id, first_seen_at, last_seen_at, identified_at, traits, anonymous_ids, events, sessions, page_views
        from marts.dim_users where tenant_id = %(tenant)s order by user_id
        """,
        built,
    )
    assert users == [
        ("uc", t(minutes=120), t(minutes=181), t(minutes=181), {"plan": "team"}, ["c"], 3, 2, 1),
        ("uj", t(minutes=60), t(minutes=66), None, {}, [], 6, 1, 0),
    ]


def test_the_daily_totals_add_up(built, conn_module):
    daily = rows(
        conn_module,
        """
        select activity_date, events, active_users, sessions, page_views, bounce_rate, mean_session_seconds,
               jobs_created, jobs_completed, jobs_failed
        from marts.agg_tenant_daily where tenant_id = %(tenant)s order by activity_date
        """,
        built,
    )
    # day one: a1 4 events, b 2, bot 2, c 3, uj 6; visitors a1, b, bot, c, uc, uj; sessions of
    # 720 + 0 + 5400 + 43200 + 0 + 60 + 360 seconds, the two one-page-view ones bounced
    assert daily == [
        (DAY, 17, 6, 7, 6, 2 / 7, 49740 / 7, 2, 1, 1),
        (DAY + timedelta(days=1), 1, 1, 1, 0, 0.0, 0, 0, 0, 0),
    ]
    assert isinstance(daily[0][0], date)
