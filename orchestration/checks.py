"""Asset checks: each states one promise about the warehouse and tests it with SQL."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.assets.processing import DUPLICATES, EVENTS, REJECTS
from orchestration.resources import TributaryDatabase

CONSERVATION_SQL = """
with landed as (
    select tenant_id, count(*) as n from landing.events_raw r
    where not exists (select from landing.backlog b where b.id = r.id) group by 1
), outcomes as (
    select tenant_id, count(*) as n from (
        select tenant_id from warehouse.events
        union all select tenant_id from warehouse.event_rejects
        union all select tenant_id from warehouse.event_duplicates
    ) o group by 1
)
select coalesce(l.tenant_id, o.tenant_id)::text, coalesce(l.n, 0), coalesce(o.n, 0)
from landed l full join outcomes o using (tenant_id)
where coalesce(l.n, 0) <> coalesce(o.n, 0)
"""


@dg.asset_check(
    asset=EVENTS, blocking=True, description="For every tenant: processed landed rows = events + rejects + duplicates."
)
def landing_is_conserved(database: TributaryDatabase) -> dg.AssetCheckResult:
    with database.connect() as conn:
        broken = conn.execute(CONSERVATION_SQL).fetchall()
    return dg.AssetCheckResult(
        passed=not broken,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "tenants_out_of_balance": len(broken),
            "examples": dg.MetadataValue.json(
                [{"tenant_id": t, "landed": landed, "accounted": accounted} for t, landed, accounted in broken[:10]]
            ),
        },
    )


WINDOW_HOURS = 24
RECENT_FIGURES_SQL = """
select coalesce(sum(claimed), 0), coalesce(sum(rejects), 0), coalesce(sum(duplicates), 0)
from ops.batches where finished_at > %s
"""


def recent_figures(conn, since: datetime) -> tuple[int, int, int]:
    """(processed, rejects, duplicates) of the batches finished since `since`; ops.batches holds them
    per batch, so the check never scans the landing table."""
    processed, rejects, duplicates = conn.execute(RECENT_FIGURES_SQL, (since,)).fetchone()
    return int(processed), int(rejects), int(duplicates)


def rate_result(what: str, count: int, processed: int, threshold: float) -> dg.AssetCheckResult:
    """Passed when count/processed is at most the threshold (and when nothing was processed)."""
    rate = count / processed if processed else 0.0
    return dg.AssetCheckResult(
        passed=rate <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            f"{what}_rate": dg.MetadataValue.float(round(rate, 6)),
            "threshold": dg.MetadataValue.float(threshold),
            what: count,
            "processed": processed,
            "window_hours": WINDOW_HOURS,
        },
    )


@dg.asset_check(
    asset=REJECTS,
    description="Rejects are at most TRIBUTARY_MAX_REJECT_RATE of the rows processed in the last 24 hours.",
)
def reject_rate_is_below_threshold(database: TributaryDatabase) -> dg.AssetCheckResult:
    with database.connect() as conn:
        processed, rejects, _ = recent_figures(conn, datetime.now(UTC) - timedelta(hours=WINDOW_HOURS))
    return rate_result("rejects", rejects, processed, database.settings.max_reject_rate)


@dg.asset_check(
    asset=DUPLICATES,
    description="Duplicates are at most TRIBUTARY_MAX_DUPLICATE_RATE of the rows processed in the last 24 hours.",
)
def duplicate_rate_is_below_threshold(database: TributaryDatabase) -> dg.AssetCheckResult:
    with database.connect() as conn:
        processed, _, duplicates = recent_figures(conn, datetime.now(UTC) - timedelta(hours=WINDOW_HOURS))
    return rate_result("duplicates", duplicates, processed, database.settings.max_duplicate_rate)


# The oldest waiting row is among the lowest backlog ids (ids are taken as rows land;
# a transaction may commit a little out of order): look at those, not the whole backlog.
BACKLOG_SQL = """
select (select count(*) from landing.backlog),
       (select extract(epoch from now() - min(r.received_at))::float8
        from (select id from landing.backlog order by id limit 1000) b join landing.events_raw r using (id))
"""


def backlog_figures(conn) -> tuple[int, float | None]:
    """(landed events not yet processed, age in seconds of the oldest of them, or None when none
    waits), by the database's clock, which also stamped received_at."""
    waiting, oldest_age = conn.execute(BACKLOG_SQL).fetchone()
    return int(waiting), oldest_age


def freshness_result(waiting: int, oldest_age: float | None, threshold: float) -> dg.AssetCheckResult:
    """Passed when nothing waits or the oldest waiting event is at most `threshold` seconds old."""
    return dg.AssetCheckResult(
        passed=oldest_age is None or oldest_age <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "backlog": waiting,
            "oldest_waiting_seconds": dg.MetadataValue.float(round(oldest_age or 0.0, 3)),
            "threshold_seconds": dg.MetadataValue.float(float(threshold)),
        },
    )


@dg.asset_check(
    asset=EVENTS,
    description=(
        "No acknowledged event waits to be processed longer than TRIBUTARY_MAX_BACKLOG_AGE_SECONDS: "
        "the age of the oldest unprocessed row of landing.events_raw, across all tenants."
    ),
)
def backlog_is_fresh(database: TributaryDatabase) -> dg.AssetCheckResult:
    with database.connect() as conn:
        waiting, oldest_age = backlog_figures(conn)
    return freshness_result(waiting, oldest_age, database.settings.max_backlog_age_seconds)
