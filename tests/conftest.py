"""Shared fixtures: one real embedded PostgreSQL per test session, in a temp TRIBUTARY_HOME."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tributary import db, migrations, tenants
from tributary.services import free_port
from tributary.settings import Settings, get_settings


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at a private embedded server (or DATABASE_URL when the caller set one)."""
    home = tmp_path_factory.mktemp("tributary-home")
    # Set in the environment itself: the API and CLI subprocesses of the e2e tests, and
    # the in-process Dagster run (which reads get_settings()), must all see this home.
    os.environ.update(
        {
            "TRIBUTARY_HOME": str(home),
            "TRIBUTARY_ADMIN_TOKEN": "test-admin-token",
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            # No flush from a test may reach a developer's running Dagster (port 9: discard).
            "TRIBUTARY_DAGSTER_URL": "http://127.0.0.1:9",
        }
    )
    # A port of its own, so a developer's running `make up` is never touched: one the OS says
    # is free now (a fixed pick could be a client connection's ephemeral port already).
    os.environ.setdefault("TRIBUTARY_DB_PORT", str(free_port()))
    get_settings.cache_clear()
    test_settings = get_settings()
    started = False
    if test_settings.embedded:
        started = db.embedded_server(test_settings).start()
    with db.connect(test_settings, autocommit=True) as conn:
        migrations.migrate(conn)
    yield test_settings
    if started:
        db.embedded_server(test_settings).stop()


@pytest.fixture(scope="session")
def database_url(settings: Settings) -> str:
    return db.database_url(settings)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def tenant(conn: psycopg.Connection) -> tuple[tenants.Tenant, str]:
    """A fresh tenant and its write key; tests assert per tenant, so they never see each other's rows."""
    return tenants.create(conn, f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def conn_module(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def tenant_module(conn_module: psycopg.Connection) -> tuple[tenants.Tenant, str]:
    return tenants.create(conn_module, f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def stoppable_server(settings: Settings, tmp_path) -> Iterator[tuple[Settings, db.EmbeddedServer, str]]:
    """An embedded server of the test's own (home, port), migrated, with a tenant: for tests
    that stop and start it. Yields (its settings, the server, the tenant's write key)."""
    if not settings.embedded:
        pytest.skip("needs an embedded server of its own to stop and start")
    own = dataclasses.replace(settings, home=tmp_path, db_port=free_port())
    server = db.embedded_server(own)
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            migrations.migrate(admin)
            _, key = tenants.create(admin, "stoppable")
        yield own, server, key
    finally:
        server.stop()
