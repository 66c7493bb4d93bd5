"""Asset checks: each states one promise about the warehouse and tests it with SQL."""

import dagster as dg

from orchestration.assets.processing import EVENTS
from orchestration.resources import TributaryDatabase

CONSERVATION_SQL = """
with landed as (
    select tenant_id, count(*) as n from landing.events_raw where processed_at is not null group by 1
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
