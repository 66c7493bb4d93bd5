"""The schema: migrations, and what the BI role may read."""

import psycopg
import pytest

from tributary import migrations


def test_re_running_migrations_is_a_no_op(conn: psycopg.Connection):
    assert migrations.migrate(conn) == []
    applied = [row[0] for row in conn.execute("select version from ops.schema_migrations order by version")]
    assert applied == [version for version, _ in migrations.available()]


def test_the_tables_design_names_exist(conn: psycopg.Connection):
    for table in (
        "landing.events_raw",
        "ops.tenants",
        "ops.write_keys",
        "ops.batches",
        "warehouse.events",
        "warehouse.event_rejects",
        "warehouse.event_duplicates",
    ):
        assert conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is not None, table


def test_the_reader_role_can_read_marts_and_nothing_else(conn: psycopg.Connection):
    conn.execute("create table if not exists marts.reader_probe (x int)")
    try:
        with conn.transaction():
            conn.execute("set local role tributary_reader")
            conn.execute("select count(*) from marts.reader_probe")
        for table in ("warehouse.events", "landing.events_raw", "ops.write_keys"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute("set local role tributary_reader")
                conn.execute(f"select count(*) from {table}")
    finally:
        conn.execute("drop table marts.reader_probe")
