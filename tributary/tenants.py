"""Tenants and their write keys.

A write key is shown once, when it is made; only its SHA-256 hash is stored.
Keys are 32 random bytes, so a fast hash is as safe as a slow one here and keeps
the per-request lookup cheap.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg

KEY_PREFIX = "trb_"


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    created_at: datetime


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create(conn: psycopg.Connection, name: str) -> tuple[Tenant, str]:
    """Create a tenant with one write key; return both (the key in clear, once)."""
    with conn.transaction():
        row = conn.execute(
            "insert into ops.tenants (name) values (%s) returning id, name, created_at", (name,)
        ).fetchone()
        tenant = Tenant(*row)
        key = add_key(conn, tenant.id)
    return tenant, key


def add_key(conn: psycopg.Connection, tenant_id: uuid.UUID) -> str:
    key = new_key()
    conn.execute(
        "insert into ops.write_keys (key_hash, tenant_id, key_prefix) values (%s, %s, %s)",
        (hash_key(key), tenant_id, key[: len(KEY_PREFIX) + 4]),
    )
    return key


def get_by_name(conn: psycopg.Connection, name: str) -> Tenant | None:
    row = conn.execute("select id, name, created_at from ops.tenants where name = %s", (name,)).fetchone()
    return Tenant(*row) if row else None


def list_all(conn: psycopg.Connection) -> list[tuple[Tenant, int]]:
    """Every tenant with its number of active write keys."""
    rows = conn.execute(
        """
        select t.id, t.name, t.created_at, count(k.key_hash) filter (where k.revoked_at is null)
        from ops.tenants t left join ops.write_keys k on k.tenant_id = t.id
        group by t.id order by t.created_at, t.name
        """
    ).fetchall()
    return [(Tenant(*row[:3]), row[3]) for row in rows]


def tenant_for_key(conn: psycopg.Connection, key: str) -> uuid.UUID | None:
    row = conn.execute(
        "select tenant_id from ops.write_keys where key_hash = %s and revoked_at is null", (hash_key(key),)
    ).fetchone()
    return row[0] if row else None
