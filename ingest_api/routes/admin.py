"""Admin routes: how the pipeline is doing, and a way to ask for processing now.

They need the admin token (`Authorization: Bearer <TRIBUTARY_ADMIN_TOKEN>`) and are
not open to browsers from other origins (see ingest_api/cors.py).
"""

from __future__ import annotations

import hmac

import httpx
from litestar import get, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from ingest_api.database import Database
from ingest_api.errors import Forbidden, Unavailable
from ingest_api.schemas import ErrorBody, FlushStarted, LastBatch, Stats, TenantStats
from tributary.settings import Settings

# The job the backlog sensor runs; the location name is fixed in workspace.yaml.
FLUSH_JOB = "process_and_build"
LOCATION = "tributary"

STATS_SQL = """
with landed as (
    select r.tenant_id,
           count(*) as landed,
           count(b.id) as backlog,
           min(r.received_at) filter (where b.id is not null) as oldest_waiting
    from landing.events_raw r left join landing.backlog b using (id) group by r.tenant_id
), events as (
    select tenant_id, count(*) as n, max(processed_at) as last from warehouse.events group by tenant_id
), rejects as (
    select tenant_id, count(*) as n, max(rejected_at) as last from warehouse.event_rejects group by tenant_id
), duplicates as (
    select tenant_id, count(*) as n, max(detected_at) as last from warehouse.event_duplicates group by tenant_id
)
select t.id, t.name, coalesce(l.landed, 0), coalesce(l.backlog, 0),
       extract(epoch from now() - l.oldest_waiting)::float8, greatest(e.last, r.last, d.last),
       coalesce(e.n, 0), coalesce(r.n, 0), coalesce(d.n, 0)
from ops.tenants t
left join landed l on l.tenant_id = t.id
left join events e on e.tenant_id = t.id
left join rejects r on r.tenant_id = t.id
left join duplicates d on d.tenant_id = t.id
order by t.name
"""

LAST_BATCH_SQL = """
select id, finished_at, claimed, events, rejects, duplicates,
       extract(epoch from finished_at - started_at)::float8
from ops.batches order by id desc limit 1
"""

_IN_FLIGHT_QUERY = """
query InFlight($job: String!) {
  runsOrError(filter: {pipelineName: $job, statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}, limit: 1) {
    ... on Runs { results { runId } }
  }
}"""

_LAUNCH_MUTATION = """
mutation Launch($job: String!, $location: String!) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: $location, repositoryName: "__repository__", jobName: $job}
  }) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


async def require_admin(settings: Settings, authorization: str | None = Parameter(header="authorization")) -> None:
    """The request carries the admin token (a dependency of every admin route)."""
    if not settings.admin_token:
        raise Forbidden("admin routes are disabled: set TRIBUTARY_ADMIN_TOKEN on the API to enable them")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.admin_token.encode()):
        raise Forbidden("this route needs the admin token: send Authorization: Bearer <TRIBUTARY_ADMIN_TOKEN>")


ADMIN = {
    "dependencies": {"admin": Provide(require_admin)},
    "responses": {
        403: ResponseSpec(ErrorBody, description="The admin token is missing or wrong.", generate_examples=False)
    },
    "security": [{"adminToken": []}],
}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


@get("/v1/admin/stats", operation_id="adminStats", **ADMIN)
async def stats(database: Database, admin: None) -> Stats:
    """Per tenant: landed, backlog, age of the oldest waiting event, reject and duplicate rates; and the last batch."""
    async with database.connection() as conn:
        rows = await (await conn.execute(STATS_SQL)).fetchall()
        last = await (await conn.execute(LAST_BATCH_SQL)).fetchone()
    tenants = [
        TenantStats(
            tenant_id=tenant_id,
            name=name,
            landed=landed,
            backlog=backlog,
            oldest_waiting_seconds=round(oldest, 3) if oldest is not None else None,
            last_processed_at=last_processed,
            events=events,
            rejects=rejects,
            duplicates=duplicates,
            reject_rate=_rate(rejects, events + rejects + duplicates),
            duplicate_rate=_rate(duplicates, events + rejects + duplicates),
        )
        for tenant_id, name, landed, backlog, oldest, last_processed, events, rejects, duplicates in rows
    ]
    return Stats(tenants=tenants, last_batch=LastBatch(*last) if last else None)


@post(
    "/v1/admin/flush",
    operation_id="adminFlush",
    status_code=202,
    **{
        **ADMIN,
        "responses": {
            **ADMIN["responses"],
            503: ResponseSpec(
                ErrorBody, description="Dagster is not reachable, so no run was started.", generate_examples=False
            ),
        },
    },
)
async def flush(settings: Settings, admin: None) -> FlushStarted:
    """Ask Dagster to process the backlog and build the marts now, instead of at the sensor's next tick."""
    try:
        async with httpx.AsyncClient(base_url=settings.dagster_url, timeout=10) as client:
            running = await _graphql(client, _IN_FLIGHT_QUERY, {"job": FLUSH_JOB})
            runs = running["runsOrError"].get("results") or []
            if runs:
                return FlushStarted(
                    run_id=runs[0]["runId"], started=False, detail="a run is already processing; it takes the backlog"
                )
            launched = (await _graphql(client, _LAUNCH_MUTATION, {"job": FLUSH_JOB, "location": LOCATION}))["launchRun"]
    except httpx.HTTPError as error:
        raise Unavailable(
            f"Dagster is not reachable at {settings.dagster_url} ({type(error).__name__}): start it with "
            "`make up`, or point TRIBUTARY_DAGSTER_URL at its webserver"
        ) from error
    if launched["__typename"] != "LaunchRunSuccess":
        problem = launched.get("message") or launched.get("errors") or launched["__typename"]
        raise Unavailable(f"Dagster did not start the run: {problem}")
    return FlushStarted(run_id=launched["run"]["runId"], started=True, detail="processing started")


async def _graphql(client: httpx.AsyncClient, query: str, variables: dict) -> dict:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    response.raise_for_status()
    answer = response.json()
    if answer.get("errors"):
        raise httpx.HTTPError(answer["errors"][0].get("message", "GraphQL error"))
    return answer["data"]
