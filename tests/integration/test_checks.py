"""The asset checks, against the real database."""

import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from orchestration.batches import process_backlog
from orchestration.checks import (
    backlog_figures,
    backlog_is_fresh,
    duplicate_rate_is_below_threshold,
    freshness_result,
    landing_is_conserved,
    rate_result,
    recent_figures,
    reject_rate_is_below_threshold,
)
from orchestration.processing.validate import Limits
from orchestration.resources import TributaryDatabase
from tributary import tracking_plan


def land(conn: psycopg.Connection, tenant_id, payloads: list[dict]) -> None:
    with conn.cursor().copy("copy landing.events_raw (tenant_id, wire_format, payload) from stdin") as copy:
        for payload in payloads:
            copy.write_row((tenant_id, "native", json.dumps(payload)))


def page_view(event_id: str | None = None) -> dict:
    return {"eventType": "page_viewed", "eventId": event_id or str(uuid.uuid4()), "anonymousId": "a1"}


@pytest.fixture
def drained(database_url):
    with psycopg.connect(database_url) as conn:
        list(process_backlog(conn, tracking_plan.load(), Limits(), 10_000))
    return database_url


def test_recent_figures_count_the_rejects_and_duplicates_of_recent_batches(drained, conn, tenant):
    since = datetime.now(UTC)
    repeated = str(uuid.uuid4())
    land(conn, tenant[0].id, [page_view(repeated), page_view(repeated), page_view(), {"eventId": "no-type"}])
    with psycopg.connect(drained) as worker:
        list(process_backlog(worker, tracking_plan.load(), Limits(), 10_000))
    assert recent_figures(conn, since) == (4, 1, 1)


def test_a_rate_above_its_threshold_fails_the_check():
    assert rate_result("rejects", 6, 100, 0.05).passed is False
    assert rate_result("rejects", 5, 100, 0.05).passed is True
    assert rate_result("duplicates", 0, 0, 0.10).passed is True


def test_the_checks_run_against_the_warehouse(drained):
    database = TributaryDatabase()
    assert landing_is_conserved(database=database).passed
    for check, rate in (
        (reject_rate_is_below_threshold, "rejects_rate"),
        (duplicate_rate_is_below_threshold, "duplicates_rate"),
    ):
        result = check(database=database)
        assert result.passed == (result.metadata[rate].value <= result.metadata["threshold"].value)


def test_the_freshness_check_passes_with_no_backlog_and_with_a_fresh_one(drained, conn, tenant):
    # `drained` processed every landed row of this session's database just now, and nothing
    # else writes to it while this test runs (tests run one at a time).
    database = TributaryDatabase()
    assert backlog_figures(conn) == (0, None)
    result = backlog_is_fresh(database=database)
    assert result.passed and result.metadata["backlog"].value == 0

    land(conn, tenant[0].id, [page_view(), page_view()])
    result = backlog_is_fresh(database=database)
    assert result.passed
    assert result.metadata["backlog"].value == 2
    assert 0 <= result.metadata["oldest_waiting_seconds"].value < result.metadata["threshold_seconds"].value
    with psycopg.connect(drained) as worker:
        list(process_backlog(worker, tracking_plan.load(), Limits(), 10_000))
    assert backlog_figures(conn) == (0, None)


def test_the_freshness_check_fails_when_a_landed_event_has_waited_too_long(drained, conn, tenant):
    # Global by design (the backlog is shared by all tenants); after `drained`, this row is the
    # whole backlog, so the check sees it whatever other tests landed before.
    threshold = TributaryDatabase().settings.max_backlog_age_seconds
    conn.execute(
        "insert into landing.events_raw (tenant_id, received_at, wire_format, payload)"
        " values (%s, now() - make_interval(secs => %s), 'native', %s)",
        (tenant[0].id, threshold + 3600, json.dumps(page_view())),
    )
    try:
        result = backlog_is_fresh(database=TributaryDatabase())
        assert result.passed is False
        assert result.metadata["backlog"].value >= 1
        assert result.metadata["oldest_waiting_seconds"].value >= threshold + 3600
        assert result.metadata["threshold_seconds"].value == threshold
    finally:
        with psycopg.connect(drained) as worker:  # leave no stale backlog to later tests
            list(process_backlog(worker, tracking_plan.load(), Limits(), 10_000))


def test_the_freshness_threshold_is_inclusive():
    assert freshness_result(0, None, 300).passed is True
    assert freshness_result(5, 300.0, 300).passed is True
    assert freshness_result(5, 300.5, 300).passed is False
