"""Events posted over real HTTP go through `tributary pipeline run` into the marts."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tributary import summary


def page_view(at: datetime, anonymous_id: str, **extra) -> dict:
    return {
        "eventType": "page_view",  # an alias: stored as page_viewed
        "eventId": str(uuid.uuid4()),
        "anonymousId": anonymous_id,
        "occurredAt": at.isoformat(),
        "context": {"page": {"url": f"https://example.com/{extra.pop('path', '')}"}},
        **extra,
    }


@pytest.fixture(scope="module")
def visited(api, settings, conn_module, tenant_module, pipeline_run):
    """A tiny hand-built visitor set, posted over HTTP and processed with the CLI."""
    tenant, key = tenant_module
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    session_b = str(uuid.uuid4())
    a_first = page_view(t0, "visitor-a", path="pricing")
    visitors = {
        # A: three page views five minutes apart, 40 minutes of silence, one more → 2 sessions
        "a": [
            a_first,
            page_view(t0 + timedelta(minutes=5), "visitor-a", path="docs"),
            page_view(t0 + timedelta(minutes=10), "visitor-a", path="signup"),
            page_view(t0 + timedelta(minutes=50), "visitor-a", path="app"),
        ],
        # B: the client's sessionId keeps a 45-minute pause in one session, with a click → no bounce
        "b": [
            page_view(t0, "visitor-b", sessionId=session_b),
            {
                "eventType": "button_clicked",
                "anonymousId": "visitor-b",
                "sessionId": session_b,
                "occurredAt": (t0 + timedelta(minutes=45)).isoformat(),
                "props": {"button": "buy"},
            },
        ],
        # C: one page view and gone → a bounce
        "c": [page_view(t0 + timedelta(minutes=1), "visitor-c")],
    }
    stale = page_view(t0 - timedelta(days=40), "visitor-d")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=api.url, headers=headers, timeout=10) as client:
        batch = client.post("/v1/events/batch", json={"events": visitors["a"] + visitors["c"] + [stale]})
        assert batch.status_code == 202, batch.text
        assert batch.json()["successful"] == 6
        for event in visitors["b"]:
            assert client.post("/v1/events", json=event).status_code == 202
        resent = client.post("/v1/events", json=a_first)  # a client retry of an acknowledged event
        assert resent.status_code == 202 and resent.json()["eventId"] == a_first["eventId"]
        refused = client.post("/v1/events", json={"eventType": "page_viewed", "sessionId": "not-a-uuid"})
        assert refused.status_code == 400
    run = pipeline_run()
    assert run.returncode == 0, run.stdout + run.stderr
    return tenant, run


def test_every_landed_event_is_accounted_for(visited, conn_module):
    tenant, _ = visited
    counts = summary.counts(conn_module, tenant.id)
    assert (counts.landed, counts.waiting) == (9, 0)
    assert (counts.events, counts.rejects, counts.duplicates) == (7, 1, 1)
    assert counts.conserved


def test_a_re_sent_event_id_counts_once(visited, conn_module):
    tenant, _ = visited
    rows = conn_module.execute(
        "select rule from warehouse.event_duplicates where tenant_id = %s", (tenant.id,)
    ).fetchall()
    assert rows == [("event_id",)]
    assert conn_module.execute(
        "select reason_code from warehouse.event_rejects where tenant_id = %s", (tenant.id,)
    ).fetchall() == [("too_old",)]


def test_the_hand_built_visitors_give_the_expected_sessions(visited, conn_module):
    tenant, _ = visited
    sessions = conn_module.execute(
        """
        select anonymous_id, events, page_views, is_bounce, duration_seconds, landing_page, exit_page
        from marts.fct_sessions where tenant_id = %s order by anonymous_id, started_at
        """,
        (tenant.id,),
    ).fetchall()
    assert sessions == [
        ("visitor-a", 3, 3, False, 600, "/pricing", "/signup"),
        ("visitor-a", 1, 1, True, 0, "/app", "/app"),
        ("visitor-b", 2, 1, False, 2700, "/", "/"),
        ("visitor-c", 1, 1, True, 0, "/", "/"),
    ]


def test_the_daily_aggregate_adds_up(visited, conn_module):
    tenant, _ = visited
    events, sessions, page_views = conn_module.execute(
        "select sum(events), sum(sessions), sum(page_views) from marts.agg_tenant_daily where tenant_id = %s",
        (tenant.id,),
    ).fetchone()
    assert (events, sessions, page_views) == (7, 4, 6)


def test_the_pipeline_prints_its_counts(visited):
    _, run = visited
    assert "succeeded" in run.stdout
    assert "conserved" in run.stdout and "yes" in run.stdout
