"""Counts a person wants after a command: where every landed event went, and what the marts hold."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Counts:
    landed: int
    waiting: int
    events: int
    rejects: int
    duplicates: int
    sessions: int | None
    page_views: int | None
    jobs: int | None

    @property
    def conserved(self) -> bool:
        return self.landed - self.waiting == self.events + self.rejects + self.duplicates


def _count(conn: psycopg.Connection, table: str, tenant_id: uuid.UUID | None, where: str = "true") -> int | None:
    exists = conn.execute("select to_regclass(%s)", (table,)).fetchone()[0]
    if exists is None:
        return None
    tenant_filter = "tenant_id = %(t)s" if tenant_id else "true"
    return conn.execute(f"select count(*) from {table} where {tenant_filter} and {where}", {"t": tenant_id}).fetchone()[
        0
    ]


def counts(conn: psycopg.Connection, tenant_id: uuid.UUID | None = None) -> Counts:
    """For one tenant, or all when tenant_id is None. Mart counts are None before dbt first ran."""
    return Counts(
        landed=_count(conn, "landing.events_raw", tenant_id),
        waiting=_count(conn, "landing.events_raw", tenant_id, "id in (select id from landing.backlog)"),
        events=_count(conn, "warehouse.events", tenant_id),
        rejects=_count(conn, "warehouse.event_rejects", tenant_id),
        duplicates=_count(conn, "warehouse.event_duplicates", tenant_id),
        sessions=_count(conn, "marts.fct_sessions", tenant_id),
        page_views=_count(conn, "warehouse.events", tenant_id, "event_type in ('page_viewed', 'screen_viewed')"),
        jobs=_count(conn, "marts.fct_jobs", tenant_id),
    )


def render(c: Counts) -> str:
    def show(value: int | None) -> str:
        return "not built yet" if value is None else f"{value:,}"

    balance = "yes" if c.conserved else "NO: some landed events are unaccounted for"
    return "\n".join(
        [
            f"  landed       {c.landed:>10,}   (waiting to be processed: {c.waiting:,})",
            f"  events       {c.events:>10,}",
            f"  rejects      {c.rejects:>10,}",
            f"  duplicates   {c.duplicates:>10,}",
            f"  conserved    {balance:>10}   (landed - waiting = events + rejects + duplicates)",
            f"  sessions     {show(c.sessions):>10}",
            f"  page views   {show(c.page_views):>10}",
            f"  jobs         {show(c.jobs):>10}",
        ]
    )
