"""Validation and enrichment through the real PostgreSQL: landed rows in, warehouse rows and rejects out."""

import json
import uuid

import psycopg
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from orchestration.batches import process_backlog
from orchestration.processing.enrich import Enrichment
from orchestration.processing.validate import Limits
from tributary import tracking_plan

PLAN = tracking_plan.load()
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def land(conn: psycopg.Connection, tenant_id, rows: list[tuple[str | None, str | None, dict]]) -> None:
    """(client_ip, user-agent header, payload) rows, as the API lands them."""
    with conn.cursor().copy(
        "copy landing.events_raw (tenant_id, wire_format, client_ip, user_agent, payload) from stdin"
    ) as copy:
        for client_ip, user_agent, payload in rows:
            copy.write_row((tenant_id, "native", client_ip, user_agent, json.dumps(payload)))


def event(event_type: str = "page_viewed", **extra) -> dict:
    return {"eventType": event_type, "eventId": str(uuid.uuid4()), "anonymousId": "a1", **extra}


@pytest.fixture
def geoip_db(tmp_path):
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
    path = tmp_path / "tiny.mmdb"
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def drained(database_url):
    """Process whatever earlier tests left, so each test sees only its own rows in the backlog."""
    with psycopg.connect(database_url) as conn:
        list(process_backlog(conn, PLAN, Limits(), 10_000))
    return database_url


def test_warehouse_rows_carry_the_enrichment_and_never_the_full_ip(drained, conn, tenant, geoip_db):
    land(
        conn,
        tenant[0].id,
        [
            (
                "81.2.69.160",
                CHROME,
                event(
                    eventId="00000000-0000-4000-8000-000000000001",
                    context={"page": {"url": "https://shop.example/?utm_source=google&gclid=x"}},
                ),
            ),
            (
                "10.9.8.7",
                GOOGLEBOT,
                event(
                    eventId="00000000-0000-4000-8000-000000000002",
                    # the client vouches for its visitor's address: it beats the request's
                    context={
                        "ip": "2001:db8:85a3:1234::99",
                        "userAgent": IPHONE,
                        "page": {"url": "https://shop.example/p", "referrer": "https://t.co/x"},
                    },
                    attribution={"utmSource": "newsletter", "utmMedium": "email"},
                ),
            ),
            ("81.2.69.161", GOOGLEBOT, event(eventId="00000000-0000-4000-8000-000000000003")),
        ],
    )
    with psycopg.connect(drained) as worker:
        list(process_backlog(worker, PLAN, Limits(), 100, enrichment=Enrichment(geoip_db=geoip_db)))
    rows = conn.execute(
        """
        select event_id, browser, os, device_type, is_bot, ip_prefix, country, referrer_medium, utm_source, utm_medium
        from warehouse.events where tenant_id = %s order by event_id
        """,
        (tenant[0].id,),
    ).fetchall()
    assert rows == [
        ("00000000-0000-4000-8000-000000000001", "Chrome", "Windows", "desktop", False, "81.2.69.0/24", "GB", "paid", "google", None),
        ("00000000-0000-4000-8000-000000000002", "Mobile Safari", "iOS", "mobile", False, "2001:db8:85a3::/48", None, "email", "newsletter", "email"),
        ("00000000-0000-4000-8000-000000000003", "Googlebot", None, "bot", True, "81.2.69.0/24", "GB", "direct", None, None),
    ]  # fmt: skip
    stored = " ".join(
        text
        for (text,) in conn.execute(
            "select row_to_json(e)::text from warehouse.events e where tenant_id = %s", (tenant[0].id,)
        )
    )
    for full_ip in ("81.2.69.160", "81.2.69.161", "10.9.8.7", "2001:db8:85a3:1234::99"):
        assert full_ip not in stored


def test_rejects_carry_the_validation_reason_codes(drained, conn, tenant):
    conn.execute(
        "update ops.tenants set settings = %s where id = %s", (json.dumps({"tracking_plan": "strict"}), tenant[0].id)
    )
    land(
        conn,
        tenant[0].id,
        [
            (None, CHROME, event("payout_completed", props={"amount_cents": 100})),
            (None, CHROME, event("job_completed", entityType="job", entityId="j1")),
            (None, CHROME, event("job_failed")),
            (None, CHROME, event("made_up")),
            (None, CHROME, event(props={"blob": "x" * 200})),
            (None, "x" * 300, event()),
        ],
    )
    with psycopg.connect(drained) as worker:
        list(process_backlog(worker, PLAN, Limits(max_string_chars=256, max_props_bytes=100), 100))
    rejects = conn.execute(
        "select payload->>'eventType', reason_code, reason_detail from warehouse.event_rejects"
        " where tenant_id = %s order by landing_id",
        (tenant[0].id,),
    ).fetchall()
    assert [(t, code) for t, code, _ in rejects] == [
        ("payout_completed", "missing_required_props"),
        ("job_failed", "missing_required_props"),
        ("made_up", "unknown_event_type"),
        ("page_viewed", "oversized"),
        ("page_viewed", "oversized"),
    ]
    assert "payment_method" in rejects[0][2] and "strict" in rejects[2][2] and "userAgent" in rejects[4][2]
    kept = conn.execute("select event_type from warehouse.events where tenant_id = %s", (tenant[0].id,)).fetchall()
    assert kept == [("job_completed",)]
