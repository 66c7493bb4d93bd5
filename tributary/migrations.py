"""Versioned SQL migrations: `tributary/migrations/NNNN_name.sql`, each applied once, in order.

Each file runs in its own transaction together with its row in
`ops.schema_migrations`, under an advisory lock, so two processes migrating at
once apply each file exactly once and a failed file leaves nothing half-done.
"""

from __future__ import annotations

from importlib import resources

import psycopg

# Arbitrary constant key for pg_advisory_xact_lock: "tributary migrate".
_LOCK_KEY = 0x7472_6962_7574


def available() -> list[tuple[str, str]]:
    """(version, sql) for every migration file, in version order."""
    folder = resources.files("tributary") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply what is missing; return the versions applied by this call."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("create schema if not exists ops")
        conn.execute(
            "create table if not exists ops.schema_migrations ("
            " version text primary key, applied_at timestamptz not null default now())"
        )
    for version, sql in available():
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            done = conn.execute("select 1 from ops.schema_migrations where version = %s", (version,)).fetchone()
            if done:
                continue
            conn.execute(sql)
            conn.execute("insert into ops.schema_migrations (version) values (%s)", (version,))
            applied_now.append(version)
    return applied_now
