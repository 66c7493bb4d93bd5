"""Processing is safe under concurrent runs and under a run killed half way (real processes)."""

import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from orchestration.batches import process_backlog
from orchestration.processing.validate import Limits
from tributary import summary, tracking_plan
from tributary.services import PROJECT_DIR, child_env

PLAN = tracking_plan.load()


def land_many(conn: psycopg.Connection, tenant_id, n: int, resent_every: int = 10) -> None:
    """n events, every `resent_every`-th a re-send of an earlier eventId, landed in one COPY."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with conn.cursor().copy("copy landing.events_raw (tenant_id, wire_format, payload) from stdin") as copy:
        for i in range(n):
            event_id = ids[i - 1] if i and i % resent_every == 0 else ids[i]
            payload = f'{{"eventType": "page_viewed", "eventId": "{event_id}", "anonymousId": "a{i % 97}"}}'
            copy.write_row((tenant_id, "native", payload))


def assert_processed_once_and_conserved(conn: psycopg.Connection, tenant_id) -> None:
    counts = summary.counts(conn, tenant_id)
    assert counts.waiting == 0 and counts.conserved, counts
    twice = conn.execute(
        """
        select count(*) from (
            select landing_id from warehouse.events where tenant_id = %(t)s
            union all select landing_id from warehouse.event_rejects where tenant_id = %(t)s
            union all select landing_id from warehouse.event_duplicates where tenant_id = %(t)s
        ) o group by landing_id having count(*) > 1
        """,
        {"t": tenant_id},
    ).fetchall()
    assert not twice
    # ...and every landed row has its outcome: exactly once each.
    missing = conn.execute(
        """
        select count(*) from landing.events_raw r where r.tenant_id = %(t)s and not exists (
            select from warehouse.events o where o.landing_id = r.id
            union all select from warehouse.event_rejects o where o.landing_id = r.id
            union all select from warehouse.event_duplicates o where o.landing_id = r.id)
        """,
        {"t": tenant_id},
    ).fetchone()[0]
    assert missing == 0


@pytest.fixture
def drained(database_url):
    with psycopg.connect(database_url) as conn:
        list(process_backlog(conn, PLAN, Limits(), 10_000))
    return database_url


def test_two_pipeline_runs_at_once_never_process_a_row_twice(drained, settings, conn, tenant):
    land_many(conn, tenant[0].id, 20_000)
    command = [sys.executable, "-m", "tributary.cli", "pipeline", "run", "--quiet", "--no-dbt", "--batch-size", "1000"]
    runs = [
        subprocess.Popen(command, cwd=PROJECT_DIR, env=child_env(settings), stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert_processed_once_and_conserved(conn, tenant[0].id)
    assert summary.counts(conn, tenant[0].id).duplicates == 20_000 // 10 - 1


DOOMED = """
import sys, psycopg
from orchestration.batches import process_backlog
from orchestration.processing.validate import Limits
from tributary import tracking_plan
with psycopg.connect(sys.argv[1], application_name="tributary-doomed") as conn:
    for _ in process_backlog(conn, tracking_plan.load(), Limits(), 2_000, run_id="doomed"):
        pass
"""


def test_a_run_killed_half_way_leaves_its_rows_for_the_next_run(drained, conn, tenant):
    land_many(conn, tenant[0].id, 40_000)
    doomed = subprocess.Popen([sys.executable, "-c", DOOMED, drained], cwd=PROJECT_DIR)
    try:
        deadline = time.monotonic() + 120
        while conn.execute("select count(*) from ops.batches where run_id = 'doomed'").fetchone()[0] == 0:
            assert doomed.poll() is None and time.monotonic() < deadline, "the run never committed a batch"
            time.sleep(0.02)
        doomed.send_signal(signal.SIGKILL)
    finally:
        doomed.kill()
        doomed.wait()
    # The server notices the dead client at its next read or write; until then its rows stay locked.
    deadline = time.monotonic() + 60
    while conn.execute("select count(*) from pg_stat_activity where application_name = 'tributary-doomed'").fetchone()[
        0
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    committed = conn.execute("select coalesce(sum(claimed), 0) from ops.batches where run_id = 'doomed'").fetchone()[0]
    counts = summary.counts(conn, tenant[0].id)
    assert 0 < committed < 40_000 and counts.waiting == 40_000 - committed and counts.conserved

    with psycopg.connect(drained) as survivor:
        list(process_backlog(survivor, PLAN, Limits(), 10_000))
    assert_processed_once_and_conserved(conn, tenant[0].id)
    assert summary.counts(conn, tenant[0].id).duplicates == 40_000 // 10 - 1
