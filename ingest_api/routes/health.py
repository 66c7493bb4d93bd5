"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from litestar import get
from litestar.openapi.datastructures import ResponseSpec

from ingest_api.database import Database
from ingest_api.schemas import ErrorBody, Health

# Shorter than a request's wait: a probe that hangs is as bad as one that fails.
READY_TIMEOUT = 1.0


@get("/healthz", operation_id="liveness")
async def liveness() -> Health:
    """Liveness: the process answers, whatever the database does."""
    return Health("ok")


@get(
    "/readyz",
    operation_id="readiness",
    responses={503: ResponseSpec(ErrorBody, description="The database does not answer.", generate_examples=False)},
)
async def readiness(database: Database) -> Health:
    """Readiness: the database answers `select 1`."""
    async with database.connection(timeout=READY_TIMEOUT) as conn:
        await conn.execute("select 1")
    return Health("ok")
