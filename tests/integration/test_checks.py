"""The asset checks, against the real database."""

import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from orchestration.batches import process_backlog
from orchestration.checks import (
    duplicate_rate_is_below_threshold,
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
