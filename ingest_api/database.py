"""The API's connection pool, and the one place where a database failure becomes a 503.

The pool is opened in the app's lifespan without waiting for a first connection, so the API
starts (and /healthz answers) while the database is down. Every way of not getting a working
connection is bounded: `connect_timeout` for one attempt, `timeout` for the wait on the pool.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import psycopg
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from ingest_api.errors import Unavailable
from tributary import db
from tributary.settings import Settings

logger = logging.getLogger(__name__)

# Seconds. A client waits at most this long for a connection, or for its place in a commit
# (ingest_api.landing), before it gets a 503.
POOL_WAIT_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2
# After failing to connect for this long the pool stops retrying in the background; the
# next request starts a fresh attempt. Kept short so that the retry back-off (1 s, 2 s,
# 4 s, ...) never grows long: the API serves again within seconds of the database's return.
RECONNECT_TIMEOUT = 5.0


class Database:
    """The pool, opened by the app's lifespan, and the connections drawn from it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pool: AsyncConnectionPool | None = None

    @asynccontextmanager
    async def lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        # Starts the embedded server when this is the one that serves (a blocking call).
        url = await anyio.to_thread.run_sync(db.database_url, self.settings)
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=self.settings.db_pool_size,
            timeout=POOL_WAIT_TIMEOUT,
            reconnect_timeout=RECONNECT_TIMEOUT,
            # A connection that died with the server is noticed here, on checkout, and
            # replaced, instead of failing the request that drew it after a restart.
            check=AsyncConnectionPool.check_connection,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT, "application_name": "tributary-ingest"},
            name="ingest",
            open=False,
        )
        await pool.open(wait=False)
        self._pool = pool
        try:
            yield
        finally:
            self._pool = None
            await pool.close()

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection (autocommit); any failure to reach the database raises `Unavailable`.

        `timeout` bounds the wait for a connection (default `POOL_WAIT_TIMEOUT`)."""
        if self._pool is None:
            raise Unavailable("the API is starting or stopping: retry in a second")
        try:
            async with self._pool.connection(timeout=timeout) as conn:
                yield conn
        except psycopg.OperationalError as error:
            # Also the pool's own PoolTimeout, TooManyRequests and PoolClosed. The detail goes
            # to the log, not to the client: it names hosts and socket paths.
            logger.warning("database unavailable: %s", error)
            raise Unavailable("the database is unavailable: nothing was stored; retry in a second") from error
