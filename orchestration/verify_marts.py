"""Check that the incremental marts equal a full refresh.

`verify_marts` builds the whole dbt project from scratch into a second set of schemas
(`verify_staging`, `verify_intermediate`, `verify_marts`: the dbt var
`tributary__schema_prefix`), then compares every mart with its copy row for row, both
ways (`except all`), and returns the differences per table. The nightly schedule
(orchestration/schedules.py) and tests/integration/test_incremental_marts.py use it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from orchestration.dbt_cli import run_dbt
from tributary import db
from tributary.settings import Settings

VERIFY_PREFIX = "verify_"
MARTS_SCHEMA = "marts"
# Every mart, with the time its row is about, for comparing only recent rows: older rows
# may rightly differ once retention has deleted their events from the warehouse.
MARTS = {
    "fct_sessions": "started_at",
    "fct_page_views": "viewed_at",
    "fct_jobs": "greatest(created_at, started_at, completed_at, failed_at)",
    "dim_users": "last_seen_at",
    "agg_tenant_daily": "activity_date",
    "agg_jobs_daily": "activity_date",
}


class VerificationError(RuntimeError):
    """The full refresh could not be built."""


@dataclass(frozen=True)
class TableDifference:
    table: str
    incremental_rows: int
    full_refresh_rows: int
    only_in_incremental: int
    """Rows of the incremental mart missing from the full refresh (counted with multiplicity)."""
    only_in_full_refresh: int

    @property
    def equal(self) -> bool:
        return self.only_in_incremental == 0 and self.only_in_full_refresh == 0

    def __str__(self) -> str:
        return (
            f"{self.table}: {self.only_in_incremental} rows only in the incremental build, "
            f"{self.only_in_full_refresh} only in the full refresh "
            f"({self.incremental_rows} vs {self.full_refresh_rows} rows)"
        )


@dataclass(frozen=True)
class Verification:
    tables: list[TableDifference]
    days: int | None

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables)

    @property
    def differing(self) -> list[TableDifference]:
        return [t for t in self.tables if not t.equal]

    def summary(self) -> str:
        window = f"rows of the last {self.days} days" if self.days else "all rows"
        if self.equal:
            return f"the incremental marts equal a full refresh ({window} of {len(self.tables)} marts)"
        return f"the incremental marts differ from a full refresh ({window}): " + "; ".join(
            str(t) for t in self.differing
        )


def build_full_refresh(settings: Settings, prefix: str = VERIFY_PREFIX) -> None:
    """`dbt run --full-refresh` into the `prefix`ed schemas (its own target path, so the
    manifest Dagster loads is never overwritten)."""
    with tempfile.TemporaryDirectory(prefix="tributary-verify-") as target:
        result = run_dbt(
            settings,
            ["run", "--full-refresh"],
            target_path=Path(target),
            dbt_vars={"tributary__schema_prefix": prefix},
        )
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise VerificationError(f"the full refresh into {prefix}* failed:\n{tail}")


def compare(
    conn: psycopg.Connection, days: int | None = None, verify_schema: str = VERIFY_PREFIX + MARTS_SCHEMA
) -> list[TableDifference]:
    """Every mart against its copy in `verify_schema`, on the full refresh's columns;
    with `days`, only rows about the last `days` days."""
    differences = []
    for table, moment in MARTS.items():
        columns = [
            name
            for (name,) in conn.execute(
                "select column_name from information_schema.columns"
                " where table_schema = %s and table_name = %s order by ordinal_position",
                (verify_schema, table),
            ).fetchall()
        ]
        if not columns:
            raise VerificationError(f"{verify_schema}.{table} does not exist: build the full refresh first")
        where = sql.SQL("true")
        if days is not None:
            where = sql.SQL("{moment} >= current_date - {days}").format(moment=sql.SQL(moment), days=sql.Literal(days))

        def rows(schema: str, table: str = table, columns: list[str] = columns, where: sql.Composable = where):
            return sql.SQL("select {columns} from {table} where {where}").format(
                columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                table=sql.Identifier(schema, table),
                where=where,
            )

        incremental, full = rows(MARTS_SCHEMA), rows(verify_schema)
        query = sql.SQL(
            """
            select
                (select count(*) from ({incremental}) rows),
                (select count(*) from ({full}) rows),
                (select count(*) from ({incremental} except all {full}) only_incremental),
                (select count(*) from ({full} except all {incremental}) only_full)
            """
        ).format(incremental=incremental, full=full)
        differences.append(TableDifference(table, *conn.execute(query).fetchone()))
    return differences


def verify_marts(settings: Settings, days: int | None = None, prefix: str = VERIFY_PREFIX) -> Verification:
    """Build a full refresh into the `prefix`ed schemas and compare every mart with it.

    The incremental marts must be up to date with warehouse.events first (run the
    incremental build before), and nothing may process events in between, or the
    comparison sees those events on one side only."""
    build_full_refresh(settings, prefix)
    with psycopg.connect(db.database_url(settings), autocommit=True) as conn:
        return Verification(compare(conn, days, prefix + MARTS_SCHEMA), days)
